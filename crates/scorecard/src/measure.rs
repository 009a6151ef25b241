//! Scorecard measures: the raw value of a measure for each account, as of a time. A KPI
//! measure reads the store's scoring inputs ([`vitals_store::inputs::load_inputs`], the
//! loader scoring uses) and computes the KPI with scoring-core's catalogue, each account
//! with its profile's KPI window.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Days, NaiveDate, Utc};
use vitals_scoring_core as core;
use vitals_store::Store;
use vitals_store::inputs::{InputQuery, InputScope, LoadedInputs, load_inputs};
use vitals_store::profiles::{self as sp, AccountRecord, AttrValue, StoredMeasure};

use crate::ScorecardError;

/// Most accounts a KPI measure loads by id; a larger set loads every account and picks
/// its members (an id list that long would pass the databases' bound-parameter limits).
const MAX_LISTED_ACCOUNTS: usize = 1_000;

/// The first day of a trailing window of `days` ending on `to` (inclusive both ends).
fn window_start(to: NaiveDate, days: u32) -> NaiveDate {
    to.checked_sub_days(Days::new(u64::from(days.max(1)) - 1))
        .unwrap_or(NaiveDate::MIN)
}

/// The accounts that are scored (every status but churned).
pub fn scored(accounts: Vec<AccountRecord>) -> Vec<AccountRecord> {
    accounts
        .into_iter()
        .filter(|a| a.status != "churned")
        .collect()
}

/// The raw measure value of each account as of `as_of` (`None`: no value, the account is
/// not scored on this measure).
pub async fn measure_values(
    store: &Store,
    measure: &StoredMeasure,
    accounts: &[AccountRecord],
    as_of: DateTime<Utc>,
) -> Result<Vec<Option<f64>>, ScorecardError> {
    let today = as_of.date_naive();
    Ok(match measure {
        StoredMeasure::EventCount {
            event_type,
            window_days,
            aggregation,
        } => {
            let rows =
                sp::usage_rows(store, event_type, window_start(today, *window_days), today).await?;
            let mut per: HashMap<&str, Vec<core::DailyUsage>> = HashMap::new();
            for r in &rows {
                per.entry(r.account_id.as_str())
                    .or_default()
                    .push(core::DailyUsage {
                        day: r.day,
                        event_type: 0,
                        count: u32::try_from(r.count).unwrap_or(u32::MAX),
                        distinct_users: u32::try_from(r.distinct_users).unwrap_or(u32::MAX),
                        value_sum: r.value_sum,
                    });
            }
            accounts
                .iter()
                .map(|a| {
                    let usage = per.get(a.id.as_str()).map(Vec::as_slice).unwrap_or(&[]);
                    Some(match aggregation.as_str() {
                        "value_sum" => usage.iter().map(|u| u.value_sum).sum(),
                        "active_days" => usage
                            .iter()
                            .filter(|u| u.count > 0)
                            .map(|u| u.day)
                            .collect::<BTreeSet<_>>()
                            .len() as f64,
                        _ => core::event_count(usage, 0, today, *window_days) as f64,
                    })
                })
                .collect()
        }
        StoredMeasure::Attribute { attribute } => accounts
            .iter()
            .map(|a| match a.attributes.get(attribute) {
                Some(AttrValue::Number(n)) => Some(*n),
                Some(AttrValue::Bool(b)) => Some(f64::from(u8::from(*b))),
                Some(AttrValue::Timestamp(t)) => {
                    Some((as_of - *t).num_milliseconds() as f64 / 86_400_000.0)
                }
                Some(AttrValue::String(_)) | None => None,
            })
            .collect(),
        StoredMeasure::CustomMetric {
            name,
            aggregation,
            window_days,
        } => {
            let samples = sp::metric_samples(store, name, as_of).await?;
            let from = window_start(today, *window_days);
            let mut per: HashMap<&str, Vec<(DateTime<Utc>, f64)>> = HashMap::new();
            for s in &samples {
                per.entry(s.account_id.as_str())
                    .or_default()
                    .push((s.at, s.value));
            }
            accounts
                .iter()
                .map(|a| {
                    let all = per.get(a.id.as_str()).map(Vec::as_slice).unwrap_or(&[]);
                    if aggregation == "latest" {
                        // Samples come oldest first.
                        return all.last().map(|(_, v)| *v);
                    }
                    let win: Vec<f64> = all
                        .iter()
                        .filter(|(at, _)| at.date_naive() >= from)
                        .map(|(_, v)| *v)
                        .collect();
                    match aggregation.as_str() {
                        "count" => Some(win.len() as f64),
                        _ if win.is_empty() => None,
                        "sum" => Some(win.iter().sum()),
                        "mean" => Some(win.iter().sum::<f64>() / win.len() as f64),
                        "min" => win.iter().copied().reduce(f64::min),
                        "max" => win.iter().copied().reduce(f64::max),
                        _ => None,
                    }
                })
                .collect()
        }
        StoredMeasure::Kpi { kpi } => kpi_values(store, kpi, accounts, as_of).await?,
    })
}

/// The raw value of KPI `kpi` for each account, computed with scoring-core from the
/// store's scoring inputs, each account with its profile's KPI window.
async fn kpi_values(
    store: &Store,
    kpi: &str,
    accounts: &[AccountRecord],
    as_of: DateTime<Utc>,
) -> Result<Vec<Option<f64>>, ScorecardError> {
    let profiles = sp::load_profiles(store).await?;
    let window_of: HashMap<&str, u32> = profiles
        .iter()
        .map(|p| {
            let w = p
                .window_days
                .map_or(core::DEFAULT_WINDOW_DAYS, |w| w.clamp(1, 365) as u32);
            (p.id.as_str(), w)
        })
        .collect();
    let windows: Vec<u32> = accounts
        .iter()
        .map(|a| {
            a.profile_id
                .as_deref()
                .and_then(|p| window_of.get(p).copied())
                .unwrap_or(core::DEFAULT_WINDOW_DAYS)
        })
        .collect();
    let query = InputQuery {
        as_of: as_of.date_naive(),
        window_days: windows
            .iter()
            .copied()
            .max()
            .unwrap_or(core::DEFAULT_WINDOW_DAYS),
        history_windows: core::DEFAULT_HISTORY_WINDOWS,
        scope: if accounts.len() <= MAX_LISTED_ACCOUNTS {
            InputScope::Accounts(accounts.iter().map(|a| a.id.clone()).collect())
        } else {
            InputScope::All
        },
        include_churned: true,
    };
    let loaded = load_inputs(store, &query).await?;
    let rows: Vec<Option<usize>> = accounts.iter().map(|a| loaded.index_of(&a.id)).collect();
    let kpi = kpi.to_string();
    tokio::task::spawn_blocking(move || kpi_of_rows(&loaded, &kpi, &rows, &windows)).await?
}

/// KPI `kpi` of the loaded accounts `rows` (`None`: not loaded, no value), each with its
/// window; the accounts of one window are computed as one batch (CPU-bound).
fn kpi_of_rows(
    loaded: &LoadedInputs,
    kpi: &str,
    rows: &[Option<usize>],
    windows: &[u32],
) -> Result<Vec<Option<f64>>, ScorecardError> {
    let internal =
        |what: &str, e: core::ScoringError| ScorecardError::Internal(format!("{what}: {e}"));
    let catalogue = core::Catalogue::new(&loaded.spec).map_err(|e| internal("kpi catalogue", e))?;
    let mut out = vec![None; rows.len()];
    let Some(col) = catalogue.index_of(kpi) else {
        // A generated KPI with no data yet: nobody has a value.
        return Ok(out);
    };
    let mut by_window: HashMap<u32, Vec<(usize, usize)>> = HashMap::new();
    for (i, (row, w)) in rows.iter().zip(windows).enumerate() {
        if let Some(row) = row {
            by_window.entry(*w).or_default().push((i, *row));
        }
    }
    for (window, members) in by_window {
        let inputs: Vec<core::AccountInputs<'_>> = members
            .iter()
            .map(|&(_, r)| loaded.data[r].inputs())
            .collect();
        let config = core::KpiConfig {
            window_days: window,
            data_start: loaded.data_start,
            ..core::KpiConfig::default()
        };
        let batch = core::compute_kpis(&catalogue, &config, loaded.as_of, &inputs)
            .map_err(|e| internal("kpi computation", e))?;
        for (k, &(i, _)) in members.iter().enumerate() {
            out[i] = batch.matrix.get(k, col).filter(|v| !v.is_nan());
        }
    }
    Ok(out)
}
