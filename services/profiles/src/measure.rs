//! Scorecard measures over the current accounts, and the preview of a draft scorecard's
//! distribution (computed with scoring-core, as the scoring service computes scores).

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Days, NaiveDate, Utc};
use vitals_proto::common::v1 as cpb;
use vitals_proto::profiles::v1 as pb;
use vitals_scoring_core as core;
use vitals_server::ApiError;
use vitals_store::Store;
use vitals_store::profiles::{self as sp, AccountRecord, AttrValue, StoredMeasure};

use crate::convert::{self, scorecard_fields};
use crate::error::{ProfilesError, Result};
use crate::rules::{self, Rule};

/// Default KPI window when an account's profile sets none.
const DEFAULT_WINDOW: u32 = 28;

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
) -> Result<Vec<Option<f64>>> {
    let conn = store;
    let today = as_of.date_naive();
    Ok(match measure {
        StoredMeasure::EventCount {
            event_type,
            window_days,
            aggregation,
        } => {
            let rows =
                sp::usage_rows(conn, event_type, window_start(today, *window_days), today).await?;
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
            let samples = sp::metric_samples(conn, name, as_of).await?;
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

/// Interns names to dense ids in first-seen order.
#[derive(Default)]
struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.ids.insert(name.to_string(), id);
        self.names.push(name.to_string());
        id
    }
}

/// Per-account scoring-core inputs, owned.
#[derive(Default)]
struct Owned {
    usage: Vec<core::DailyUsage>,
    interactions: Vec<core::Interaction>,
    pulses: Vec<core::Pulse>,
    subscriptions: Vec<core::Subscription>,
    custom_metrics: Vec<core::CustomMetricValue>,
    score_fields: Vec<core::ScoreFieldValue>,
    webhook_signals: Vec<core::WebhookSignal>,
    contacts: u32,
}

/// The raw value of KPI `kpi` for each account, computed with scoring-core from the
/// store's roll-ups and records, each account with its profile's KPI window.
async fn kpi_values(
    store: &Store,
    kpi: &str,
    accounts: &[AccountRecord],
    as_of: DateTime<Utc>,
) -> Result<Vec<Option<f64>>> {
    let conn = store;
    let profiles = sp::load_profiles(conn).await?;
    let window_of: HashMap<&str, u32> = profiles
        .iter()
        .map(|p| {
            let w = p
                .window_days
                .map_or(DEFAULT_WINDOW, |w| w.clamp(1, 365) as u32);
            (p.id.as_str(), w)
        })
        .collect();
    let windows: Vec<u32> = accounts
        .iter()
        .map(|a| {
            a.profile_id
                .as_deref()
                .and_then(|p| window_of.get(p).copied())
                .unwrap_or(DEFAULT_WINDOW)
        })
        .collect();
    let config = core::KpiConfig::default();
    let longest = windows.iter().copied().max().unwrap_or(DEFAULT_WINDOW);
    let today = as_of.date_naive();
    let from = today
        .checked_sub_days(Days::new(
            u64::from(longest) * (u64::from(config.history_windows) + 2),
        ))
        .unwrap_or(NaiveDate::MIN);
    let data = sp::load_kpi_data(conn, from, as_of).await?;
    let keys = sp::key_event_types(conn).await.ok().flatten();
    let lower = sp::lower_is_better_metrics(conn).await.unwrap_or_default();

    let index: HashMap<&str, usize> = accounts
        .iter()
        .enumerate()
        .map(|(i, a)| (a.id.as_str(), i))
        .collect();
    let mut owned: Vec<Owned> = (0..accounts.len()).map(|_| Owned::default()).collect();
    let (mut events, mut metrics, mut fields, mut signals, mut contacts) = (
        Interner::default(),
        Interner::default(),
        Interner::default(),
        Interner::default(),
        Interner::default(),
    );
    // Intern in sorted order so ids (and so KPI columns) do not depend on row order.
    let mut names: Vec<&str> = data.usage.iter().map(|u| u.event_type.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    for n in names {
        events.id(n);
    }
    let mut names: Vec<&str> = data
        .custom_metrics
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    for n in names {
        metrics.id(n);
    }
    let mut names: Vec<&str> = data.score_fields.iter().map(|f| f.field.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    for n in names {
        fields.id(n);
    }
    let roles: HashMap<(&str, &str), &str> = data
        .contacts
        .iter()
        .map(|c| ((c.account_id.as_str(), c.id.as_str()), c.role.as_str()))
        .collect();
    for c in &data.contacts {
        if let Some(&i) = index.get(c.account_id.as_str()) {
            owned[i].contacts += 1;
        }
    }
    for u in &data.usage {
        if let Some(&i) = index.get(u.account_id.as_str()) {
            owned[i].usage.push(core::DailyUsage {
                day: u.day,
                event_type: events.id(&u.event_type),
                count: u32::try_from(u.count).unwrap_or(u32::MAX),
                distinct_users: u32::try_from(u.distinct_users).unwrap_or(u32::MAX),
                value_sum: u.value_sum,
            });
        }
    }
    for x in &data.interactions {
        let Some(&i) = index.get(x.account_id.as_str()) else {
            continue;
        };
        let channel = match x.channel.as_str() {
            "email" => core::Channel::Email,
            "call" => core::Channel::Call,
            "meeting" => core::Channel::Meeting,
            "ticket" => core::Channel::Ticket,
            _ => core::Channel::Chat,
        };
        let direction = if x.direction == "inbound" {
            core::InteractionDirection::Inbound
        } else {
            core::InteractionDirection::Outbound
        };
        let role = x.contact_id.as_deref().and_then(|c| {
            roles.get(&(x.account_id.as_str(), c)).map(|r| match *r {
                "decision_maker" => core::ContactRole::DecisionMaker,
                "champion" => core::ContactRole::Champion,
                _ => core::ContactRole::User,
            })
        });
        owned[i].interactions.push(core::Interaction {
            at: x.occurred_at.date_naive(),
            channel,
            direction,
            replied: (direction == core::InteractionDirection::Outbound).then_some(x.replied),
            contact: x
                .contact_id
                .as_deref()
                .map(|c| contacts.id(&format!("{}\u{0}{c}", x.account_id))),
            contact_role: role,
            sentiment: x.sentiment,
        });
    }
    for p in &data.pulses {
        if let Some(&i) = index.get(p.account_id.as_str()) {
            owned[i].pulses.push(core::Pulse {
                at: p.at.date_naive(),
                value: f64::from(p.value),
            });
        }
    }
    for s in &data.subscriptions {
        if let Some(&i) = index.get(s.account_id.as_str()) {
            owned[i].subscriptions.push(core::Subscription {
                start: s.starts_at.date_naive(),
                end: s.ends_at.map(|e| e.date_naive()),
                mrr: s.mrr,
                quantity: s.quantity,
                add_on: s.is_addon,
                discount: s.discount,
                billing_period_months: u16::try_from(s.bill_period_months.max(1))
                    .unwrap_or(u16::MAX),
            });
        }
    }
    for m in &data.custom_metrics {
        if let Some(&i) = index.get(m.account_id.as_str()) {
            owned[i].custom_metrics.push(core::CustomMetricValue {
                metric: metrics.id(&m.name),
                at: m.at.date_naive(),
                value: m.value,
            });
        }
    }
    for f in &data.score_fields {
        if let Some(&i) = index.get(f.account_id.as_str()) {
            owned[i].score_fields.push(core::ScoreFieldValue {
                field: fields.id(&f.field),
                value: f64::from(f.value),
            });
        }
    }
    for w in &data.webhook_signals {
        if let Some(&i) = index.get(w.account_id.as_str()) {
            owned[i].webhook_signals.push(core::WebhookSignal {
                signal: signals.id(&w.name),
                at: w.at.date_naive(),
                value: f64::from(w.value),
            });
        }
    }
    let spec = core::CatalogueSpec {
        key_event_types: keys.map(|k| {
            events
                .names
                .iter()
                .enumerate()
                .filter(|(_, n)| k.contains(*n))
                .map(|(i, _)| i as u32)
                .collect()
        }),
        event_types: events.names,
        custom_metrics: metrics
            .names
            .iter()
            .map(|n| core::CustomMetricSpec {
                name: n.clone(),
                direction: if lower.contains(n) {
                    core::Direction::LowerIsBetter
                } else {
                    core::Direction::HigherIsBetter
                },
            })
            .collect(),
        score_fields: fields.names,
    };
    let attrs: Vec<core::AccountAttributes> = accounts
        .iter()
        .zip(&owned)
        .map(|(a, o)| core::AccountAttributes {
            seats: match a.attributes.get("seats") {
                Some(AttrValue::Number(n)) => Some(*n),
                _ => None,
            },
            created_at: Some(a.created_at.date_naive()),
            contacts: Some(o.contacts),
        })
        .collect();
    let kpi = kpi.to_string();
    tokio::task::spawn_blocking(move || -> Result<Vec<Option<f64>>> {
        let catalogue = core::Catalogue::new(&spec)
            .map_err(|e| ProfilesError::Task(format!("kpi catalogue: {e}")))?;
        let Some(col) = catalogue.index_of(&kpi) else {
            // A generated KPI with no data yet: nobody has a value.
            return Ok(vec![None; owned.len()]);
        };
        let mut out = vec![None; owned.len()];
        let mut by_window: HashMap<u32, Vec<usize>> = HashMap::new();
        for (i, w) in windows.iter().enumerate() {
            by_window.entry(*w).or_default().push(i);
        }
        for (window, members) in by_window {
            let inputs: Vec<core::AccountInputs<'_>> = members
                .iter()
                .map(|&i| {
                    let o = &owned[i];
                    core::AccountInputs {
                        usage: &o.usage,
                        interactions: &o.interactions,
                        pulses: &o.pulses,
                        subscriptions: &o.subscriptions,
                        custom_metrics: &o.custom_metrics,
                        score_fields: &o.score_fields,
                        webhook_signals: &o.webhook_signals,
                        attributes: attrs[i],
                    }
                })
                .collect();
            let config = core::KpiConfig {
                window_days: window,
                ..core::KpiConfig::default()
            };
            let batch = core::compute_kpis(&catalogue, &config, today, &inputs)
                .map_err(|e| ProfilesError::Task(format!("kpi computation: {e}")))?;
            for (row, &i) in members.iter().enumerate() {
                out[i] = batch.matrix.get(row, col).filter(|v| !v.is_nan());
            }
        }
        Ok(out)
    })
    .await?
}

/// The distribution a draft scorecard gives over the current accounts.
pub async fn preview(
    store: &Store,
    req: pb::PreviewScorecardRequest,
) -> Result<pb::PreviewScorecardResponse> {
    let s = req
        .scorecard
        .ok_or_else(|| ApiError::invalid("scorecard", "required"))?;
    let as_of = match &req.as_of {
        Some(t) => convert::as_of("as_of", t)?,
        None => Utc::now(),
    };
    // Validation compiles the segment: CPU work (milliseconds for a long rule), kept off
    // the async workers as any request with a read token can send one.
    let (fields, segment) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let fields = scorecard_fields("scorecard", &s, true)?;
        let segment = Rule::compile_segment_optional("scorecard.segment", &fields.segment)?;
        Ok((fields, segment))
    })
    .await??;
    let mapping = core::ScoreMapping::new(fields.worst, fields.best)
        .map_err(|e| ApiError::invalid("scorecard.best_value", e.to_string()))?;
    let bands = core::BandThresholds::new(fields.yellow_from, fields.green_from)
        .map_err(|e| ApiError::invalid("scorecard.band_thresholds", e.to_string()))?;
    let card = core::Scorecard {
        mapping,
        bands,
        impact: core::Impact::Medium,
    };
    let accounts = scored(sp::load_accounts(store).await?);
    let accounts = match segment {
        Some(rule) => rules::select_for_request("scorecard.segment", rule, accounts).await?,
        None => accounts,
    };
    let values = measure_values(store, &fields.measure, &accounts, as_of).await?;
    let mut raw: Vec<f64> = values.iter().flatten().copied().collect();
    let scores: Vec<f64> = raw
        .iter()
        .filter_map(|v| card.evaluate(*v).map(|(s, _)| s))
        .collect();
    raw.sort_unstable_by(f64::total_cmp);
    let d = core::distribution(scores.iter().copied(), &bands);
    let bins = d
        .histogram
        .iter()
        .enumerate()
        .map(|(i, &count)| cpb::HistogramBin {
            lower: i as f64,
            upper: i as f64 + 1.0,
            count: count as u32,
        })
        .collect();
    let min = scores.iter().copied().reduce(f64::min).unwrap_or(0.0);
    let max = scores.iter().copied().reduce(f64::max).unwrap_or(0.0);
    Ok(pb::PreviewScorecardResponse {
        distribution: Some(cpb::Distribution {
            bins,
            band_counts: Some(cpb::BandCounts {
                red: d.bands[0] as u32,
                yellow: d.bands[1] as u32,
                green: d.bands[2] as u32,
            }),
            count: d.count as u32,
            mean: d.mean.unwrap_or(0.0),
            median: d.median.unwrap_or(0.0),
            p10: d.p10.unwrap_or(0.0),
            p90: d.p90.unwrap_or(0.0),
            std_dev: d.std.unwrap_or(0.0),
            min,
            max,
        }),
        segment_count: accounts.len() as u32,
        with_value_count: d.count as u32,
        measure_min: raw.first().copied().unwrap_or(0.0),
        measure_median: core::quantile_sorted(&raw, 0.5).unwrap_or(0.0),
        measure_max: raw.last().copied().unwrap_or(0.0),
    })
}
