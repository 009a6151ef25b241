//! A scoring run: inputs from the store, weights from the learner, scoring-core off the
//! async threads, snapshots written in one transaction, band changes broadcast.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use rayon::prelude::*;
use vitals_scorecard::measure;
use vitals_scorecard::rules::{self, Rule};
use vitals_scoring_core as core;
use vitals_server::{ApiError, CancelFlag, Work};
use vitals_store::inputs::{AccountData, InputQuery, InputScope, LoadedInputs, load_inputs};
use vitals_store::profiles::{self as sp, ProfileRecord, ScorecardRecord};
use vitals_store::scoring::{self as ss, LatestRecord, NewSnapshot, PROFILE_SCORECARD};
use vitals_store::snapshot::KpiNames;
use vitals_store::values::AccountStatus;

use super::read::Score;
use super::stored::{self, StoredCategory, StoredDetails, r6};
use crate::Inner;
use crate::error::Result;
use crate::weights::{Booster, Source, Weights};
use vitals_learn_core as learn;

/// What a run scores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every scored account.
    All,
    /// The members of one profile (id).
    Profile(String),
    /// One account (id).
    Account(String),
}

impl Scope {
    fn describe(&self) -> String {
        match self {
            Self::All => "all".into(),
            Self::Profile(p) => format!("profiles/{p}"),
            Self::Account(a) => format!("account:{a}"),
        }
    }
}

/// What one run did for one profile.
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileSummary {
    /// Profile id (empty: accounts with no profile and no default profile).
    pub profile_id: String,
    /// Accounts scored.
    pub scored: u32,
    /// Weights source.
    pub source: Source,
    /// Model, `models/{id}`.
    pub model: String,
    /// Compared with the whole portfolio.
    pub fallback: bool,
}

/// A band change committed by a run.
#[derive(Clone, Debug, PartialEq)]
pub struct BandChange {
    /// The account.
    pub account_id: String,
    /// Its profile id.
    pub profile_id: String,
    /// Scorecard id (`profile` for the profile score).
    pub scorecard_id: String,
    /// Band before.
    pub old_band: String,
    /// Band now.
    pub new_band: String,
    /// Score before.
    pub old_value: f64,
    /// Score now.
    pub new_value: f64,
    /// as_of of the new snapshot.
    pub as_of: DateTime<Utc>,
    /// The run.
    pub run_id: i64,
}

/// The result of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    /// Run id.
    pub run_id: i64,
    /// as_of.
    pub as_of: DateTime<Utc>,
    /// Accounts scored.
    pub scored: u32,
    /// Snapshots written.
    pub snapshots: u32,
    /// Band changes.
    pub band_changes: u32,
    /// Wall-clock time.
    pub duration: std::time::Duration,
    /// Per profile.
    pub profiles: Vec<ProfileSummary>,
}

/// A profile as scored in a run.
struct RunProfile {
    id: String,
    record: Option<ProfileRecord>,
    weights: Arc<Weights>,
}

/// The default KPI window.
const DEFAULT_WINDOW: u32 = core::DEFAULT_WINDOW_DAYS;

fn window_of(p: &ProfileRecord) -> u32 {
    p.window_days
        .map_or(DEFAULT_WINDOW, |w| w.clamp(1, 365) as u32)
}

fn impact(s: &str) -> core::Impact {
    match s {
        "none" => core::Impact::None,
        "low" => core::Impact::Low,
        "medium" => core::Impact::Medium,
        _ => core::Impact::High,
    }
}

/// The category weights a profile scores with under its weights mode (see
/// [`core::CategoryWeights::chosen`]); equal weights without a profile or suggestion.
fn category_weights(p: Option<&ProfileRecord>, w: &Weights) -> core::CategoryWeights {
    let manual = p.map(|p| {
        core::CategoryWeights::from_array([
            p.weights.usage,
            p.weights.conversations,
            p.weights.pulse,
            p.weights.contract,
            p.weights.custom_metrics,
        ])
    });
    let suggested = w.suggested_category.map(core::CategoryWeights::from_array);
    let mode = core::WeightsMode::from_name(p.map_or("manual", |p| p.weights_mode.as_str()));
    core::CategoryWeights::chosen(mode, manual.as_ref(), suggested.as_ref())
}

/// KPI weights (catalogue order): the learner's (a KPI it does not list weighs 0) or 1
/// each; 0 for a KPI outside the profile's KPI selection; a custom score field weighs its
/// entry in the profile's weights (1 when absent).
fn kpi_weights(
    catalogue: &core::Catalogue,
    spec: &core::CatalogueSpec,
    p: Option<&ProfileRecord>,
    w: &Weights,
) -> Vec<f64> {
    let mut field_of: HashMap<usize, &str> = HashMap::new();
    for (id, name) in spec.score_fields.iter().enumerate() {
        if let Some(k) = catalogue.score_field_kpi(id as u32) {
            field_of.insert(k, name.as_str());
        }
    }
    catalogue
        .kpis()
        .iter()
        .enumerate()
        .map(|(k, def)| {
            if def.category == core::Category::ScoreField {
                let name = field_of.get(&k).copied().unwrap_or_default();
                return p
                    .and_then(|p| p.weights.custom_score_fields.get(name).copied())
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .unwrap_or(1.0);
            }
            if let Some(p) = p
                && !p.kpis.is_empty()
                && !p.kpis.iter().any(|n| n == def.name.as_ref())
            {
                return 0.0;
            }
            if w.kpi_weights.is_empty() {
                1.0
            } else {
                w.kpi_weights.get(def.name.as_ref()).copied().unwrap_or(0.0)
            }
        })
        .collect()
}

/// The profile snapshot of one account before scorecards and the global score.
struct Scored {
    row: usize,
    snapshot: NewSnapshot,
    /// `sub_scores`, serialised once the global score is known.
    details: StoredDetails,
}

/// Output of the CPU part.
struct Computed {
    /// The snapshot of each row of `write`, none when it has no score.
    scored: Vec<Option<Scored>>,
    fallback: Vec<bool>,
    /// Every loaded account's profile score as stored (for the parents' roll-ups).
    values: Vec<Option<f64>>,
    /// Every loaded account's MRR when it has a parent (for the parents' roll-ups).
    mrr: Vec<f64>,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The scoring-core configuration of each run profile.
fn profile_configs(
    catalogue: &core::Catalogue,
    spec: &core::CatalogueSpec,
    profiles: &[RunProfile],
) -> Vec<core::ProfileConfig> {
    profiles
        .iter()
        .map(|p| core::ProfileConfig {
            category_weights: category_weights(p.record.as_ref(), &p.weights),
            kpi_weights: Some(kpi_weights(catalogue, spec, p.record.as_ref(), &p.weights)),
            min_population: p
                .record
                .as_ref()
                .map_or(10, |r| r.min_population.max(1) as usize),
            trend_weight: p
                .record
                .as_ref()
                .and_then(|r| r.trend_weight)
                .unwrap_or(1.0),
        })
        .collect()
}

/// Sub-scores of one account: the five categories, then each custom score field.
fn sub_scores(
    kpis: &[core::KpiDef],
    weights: &[f64],
    e: &core::Explanation,
) -> Vec<StoredCategory> {
    let mut categories = Vec::new();
    for (ci, c) in core::Category::WEIGHTED.iter().enumerate() {
        let total = kpis
            .iter()
            .zip(weights)
            .filter(|(d, w)| d.category == *c && **w > 0.0)
            .count() as u32;
        let present: Vec<_> = e
            .contributions
            .iter()
            .filter(|x| kpis[x.kpi].category == *c)
            .collect();
        categories.push(StoredCategory {
            c: stored::category_proto(*c),
            f: String::new(),
            v: e.score.categories[ci].map(r6),
            w: r6(present.iter().map(|x| x.weight).sum()),
            p: present.len() as u32,
            t: total,
        });
    }
    for x in e
        .contributions
        .iter()
        .filter(|x| kpis[x.kpi].category == core::Category::ScoreField)
    {
        categories.push(StoredCategory {
            c: stored::category_proto(core::Category::ScoreField),
            f: x.name.trim_start_matches("score_field_").to_string(),
            v: Some(r6(x.kpi_score)),
            w: r6(x.weight),
            p: 1,
            t: 1,
        });
    }
    categories
}

/// The churn probability of account `i` under the learner's model (none without one):
/// its gradient-boosted model when that serves (fed the KPI columns it names: peer
/// percentiles, log values and values, as the learner's training set holds them), else
/// its coefficients.
fn churn_probability(
    weights: &Weights,
    catalogue: &core::Catalogue,
    matrix: &core::KpiMatrix,
    scores: &core::PopulationScores,
    i: usize,
) -> Option<f64> {
    let kpis = catalogue.kpis();
    // A KPI's peer percentile, raw value and direction, as the learner's features read
    // them (the same for the booster and the logistic model).
    let kpi = |name: &str| {
        catalogue.index_of(name).map(|k| {
            let direction = match kpis[k].direction {
                core::Direction::HigherIsBetter => learn::Direction::HigherIsBetter,
                core::Direction::LowerIsBetter => learn::Direction::HigherIsWorse,
            };
            (scores.percentile(i, k), matrix.get(i, k), direction)
        })
    };
    if let Some(Booster(b)) = &weights.booster {
        let row = b.row(kpi);
        return match b.predict_rows(&[row]) {
            Ok(p) => p.first().map(|&p| r6(p)),
            Err(e) => {
                tracing::warn!(model = %weights.model, error = %e, "booster prediction failed");
                None
            }
        };
    }
    // The logistic model: each coefficient on its own column (a percentile, a log value
    // or a value), the column's missing value where the account lacks the KPI, as the
    // learner's PredictChurn computes it.
    (!weights.coefficients.is_empty()).then(|| {
        let eta = weights.intercept
            + weights
                .coefficients
                .iter()
                .map(|c| {
                    let v = learn::features::column_value(&c.column, kpi);
                    c.coefficient * if v.is_finite() { v } else { c.missing }
                })
                .sum::<f64>();
        r6(sigmoid(eta))
    })
}

/// The band thresholds of a profile (the defaults when it sets none or invalid ones).
fn profile_bands(record: Option<&ProfileRecord>) -> core::BandThresholds {
    core::BandThresholds::new(
        record
            .and_then(|r| r.yellow_from)
            .unwrap_or(core::DEFAULT_YELLOW_FROM),
        record
            .and_then(|r| r.green_from)
            .unwrap_or(core::DEFAULT_GREEN_FROM),
    )
    .unwrap_or_default()
}

/// What [`score_account`] reads: the scored population and the run's profiles.
struct Population<'a> {
    loaded: &'a LoadedInputs,
    profiles: &'a [RunProfile],
    configs: &'a [core::ProfileConfig],
    catalogue: &'a core::Catalogue,
    input: &'a core::PopulationInput<'a>,
    scores: &'a core::PopulationScores,
    signals: &'a [core::AccountSignals],
    /// Members of each profile.
    members: &'a [u32],
    as_of: DateTime<Utc>,
    /// The store's numbers of the KPI names (the rows' drivers refer to them).
    names: &'a KpiNames,
}

/// The profile snapshot of account `i` (none when it has no score).
fn score_account(pop: &Population<'_>, i: usize) -> Result<Option<Scored>> {
    let kpis = pop.catalogue.kpis();
    let e = core::explain_account(pop.input, pop.scores, i)?;
    let Some(value) = e.score.score else {
        return Ok(None);
    };
    let p = pop.input.profile_of[i] as usize;
    let prof = &pop.profiles[p];
    let config = &pop.configs[p];
    let drivers = stored::drivers_of(&e, |k| kpis[k].category);
    let categories = sub_scores(kpis, config.kpi_weights.as_deref().unwrap_or(&[]), &e);
    let signals = pop.signals[i];
    let momentum = signals.momentum;
    let churn = churn_probability(
        &prof.weights,
        pop.catalogue,
        pop.input.matrix,
        pop.scores,
        i,
    );
    let peer_count = if e.score.fallback {
        pop.input.profile_of.len() as u32
    } else {
        pop.members[p]
    };
    let details = StoredDetails {
        categories,
        global_band: String::new(),
        has_momentum: momentum.is_some(),
        trend_adjustment: r6(
            momentum.map_or(0.0, |m| core::trend_adjustment(m, config.trend_weight))
        ),
        signal_adjustment: r6(signals.webhook.unwrap_or(0.0)),
        usage_adjustment: r6(e.score.usage_adjustment),
        adjustment_contribution: r6(e.adjustment_contribution),
        model: prof.weights.model.clone(),
        peer_count,
        measure_value: None,
        rollup: None,
    };
    let bands = profile_bands(prof.record.as_ref());
    Ok(Some(Scored {
        row: i,
        snapshot: NewSnapshot {
            account_id: pop.loaded.accounts[i].id.clone(),
            scorecard_id: PROFILE_SCORECARD.to_string(),
            profile_id: prof.id.clone(),
            as_of: pop.as_of,
            value: r6(value),
            band: bands.band(value).as_str().to_string(),
            global_value: None,
            global_band: String::new(),
            sub_scores: String::new(),
            momentum: r6(momentum.unwrap_or(0.0)),
            coverage_present: i32::from(e.score.coverage.present),
            coverage_total: i32::from(e.score.coverage.total),
            drivers: stored::encode_drivers_with(&drivers, pop.names),
            churn_probability: churn,
            weights_source: prof.weights.source.as_str().to_string(),
            population_fallback: e.score.fallback,
        },
        details,
    }))
}

/// Runs scoring-core over the loaded population (`loaded` without its inputs, which are
/// `data`) and builds the profile snapshots of the rows in `write` (CPU-bound: call from
/// `spawn_blocking`). Stops with the flag's error after the KPIs, after the scores, and at
/// the next account once `cancel` is raised.
fn compute(
    (loaded, data): (&LoadedInputs, Vec<AccountData>),
    profiles: &[RunProfile],
    profile_of: &[u32],
    write: &[usize],
    (window, as_of): (u32, DateTime<Utc>),
    names: &KpiNames,
    cancel: &CancelFlag,
) -> Result<Computed> {
    let catalogue = core::Catalogue::new(&loaded.spec)?;
    let kpi_config = core::KpiConfig {
        window_days: window,
        data_start: loaded.data_start,
        ..core::KpiConfig::default()
    };
    let inputs: Vec<core::AccountInputs<'_>> = data.iter().map(AccountData::inputs).collect();
    let batch = core::compute_kpis(&catalogue, &kpi_config, loaded.as_of, &inputs)?;
    drop(inputs);
    // Nothing else reads the inputs: freed before the scores and snapshots are built (at
    // 1M accounts they are about 3 GB; docs/benchmarks.md, "a million accounts").
    let mrr = super::rollup::child_mrr(loaded, &data);
    drop(data);
    cancel.check()?;
    let configs = profile_configs(&catalogue, &loaded.spec, profiles);
    let input = core::PopulationInput {
        kpis: catalogue.kpis(),
        matrix: &batch.matrix,
        profile_of,
        profiles: &configs,
        signals: Some(&batch.signals),
    };
    let scores = core::score_population(&input, &core::ScoreOptions::default())?;
    cancel.check()?;
    let mut members = vec![0u32; profiles.len()];
    for &p in profile_of {
        members[p as usize] += 1;
    }
    let pop = Population {
        loaded,
        profiles,
        configs: &configs,
        catalogue: &catalogue,
        input: &input,
        scores: &scores,
        signals: &batch.signals,
        members: &members,
        as_of,
        names,
    };
    // Kept as options (not collected again without the `None`s: a second vector of every
    // snapshot while the matrix and the scores are still held, the run's peak at 1M).
    let scored: Vec<Option<Scored>> = write
        .par_iter()
        .map(|&i| {
            cancel.check()?;
            score_account(&pop, i)
        })
        .collect::<Result<_, _>>()?;
    let mut fallback = vec![false; profiles.len()];
    for s in scored.iter().flatten() {
        if s.snapshot.population_fallback {
            fallback[profile_of[s.row] as usize] = true;
        }
    }
    let values = scores.results().map(|a| a.score.map(r6)).collect();
    Ok(Computed {
        scored,
        fallback,
        values,
        mrr,
    })
}

/// A scorecard as evaluated in a run.
struct Card {
    record: ScorecardRecord,
    card: core::Scorecard,
    segment: Option<Rule>,
}

fn cards(records: Vec<ScorecardRecord>) -> Vec<Card> {
    records
        .into_iter()
        .filter(|s| s.enabled)
        .filter_map(|record| {
            let mapping = core::ScoreMapping::new(record.worst, record.best).ok()?;
            let bands = core::BandThresholds::new(record.yellow_from, record.green_from).ok()?;
            let segment = match Rule::compile_segment_optional("segment", &record.segment) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(scorecard = %record.id, error = %e, "scorecard segment does not compile; skipped");
                    return None;
                }
            };
            Some(Card {
                card: core::Scorecard {
                    mapping,
                    bands,
                    impact: impact(&record.impact),
                },
                record,
                segment,
            })
        })
        .collect()
}

/// Which population a run over `scope` loads, and the one account it writes (if any).
async fn input_scope(
    inner: &Inner,
    scope: &Scope,
    records: &[ProfileRecord],
    default: Option<&String>,
) -> Result<(InputScope, Option<String>)> {
    Ok(match scope {
        Scope::All => (InputScope::All, None),
        Scope::Profile(id) => {
            let p = records
                .iter()
                .find(|p| &p.id == id)
                .ok_or_else(|| ApiError::NotFound(format!("profile \"profiles/{id}\"")))?;
            (
                InputScope::Profile {
                    id: id.clone(),
                    include_unprofiled: p.is_default,
                },
                None,
            )
        }
        Scope::Account(a) => {
            let acc = sp::load_accounts_by_id(&inner.store, std::slice::from_ref(a))
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| ApiError::NotFound(format!("account \"{a}\"")))?;
            if acc.status == AccountStatus::Churned.as_str() {
                return Err(ApiError::FailedPrecondition(format!(
                    "account \"{a}\" is churned and is not scored"
                ))
                .into());
            }
            let profile = acc.profile_id.clone().or_else(|| default.cloned());
            let s = match profile {
                Some(id) => InputScope::Profile {
                    include_unprofiled: Some(&id) == default,
                    id,
                },
                None => InputScope::All,
            };
            (s, Some(a.clone()))
        }
    })
}

/// One KPI window per run: the profiles' when they agree, else the default.
fn run_window(records: &[ProfileRecord]) -> u32 {
    let windows: std::collections::BTreeSet<u32> = records.iter().map(window_of).collect();
    if windows.len() == 1 {
        windows.into_iter().next().unwrap_or(DEFAULT_WINDOW)
    } else {
        tracing::warn!("profiles set different KPI windows; this run uses {DEFAULT_WINDOW} days");
        DEFAULT_WINDOW
    }
}

/// Profiles of the loaded accounts (their own, else the default one, else an implicit
/// profile "" with default settings) with their weights, and each account's profile.
async fn run_profiles(
    inner: &Inner,
    loaded: &LoadedInputs,
    records: &[ProfileRecord],
    default: Option<&String>,
) -> (Vec<RunProfile>, Vec<u32>) {
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let mut run_profiles: Vec<(String, Option<ProfileRecord>)> = Vec::new();
    let mut profile_of = Vec::with_capacity(loaded.accounts.len());
    for a in &loaded.accounts {
        let id = a
            .profile_id
            .clone()
            .filter(|p| records.iter().any(|r| &r.id == p))
            .or_else(|| default.cloned())
            .unwrap_or_default();
        let next = run_profiles.len();
        let k = *index.entry(id.clone()).or_insert_with(|| {
            let rec = records.iter().find(|r| r.id == id).cloned();
            run_profiles.push((id.clone(), rec));
            next
        });
        profile_of.push(k as u32);
    }
    let weights =
        futures::future::join_all(run_profiles.iter().map(|(id, _)| inner.weights.weights(id)))
            .await;
    let profiles = run_profiles
        .into_iter()
        .zip(weights)
        .map(|((id, record), weights)| RunProfile {
            id,
            record,
            weights,
        })
        .collect();
    (profiles, profile_of)
}

/// The scorecard snapshots of the scored accounts, and the parts of each account's
/// global score (its profile score first, then the scorecards included in it).
async fn score_scorecards(
    inner: &Inner,
    snapshots: &[NewSnapshot],
    as_of: DateTime<Utc>,
) -> Result<(Vec<NewSnapshot>, Vec<Vec<(Option<f64>, core::Impact)>>)> {
    let store = &inner.store;
    let pos: HashMap<String, usize> = snapshots
        .iter()
        .enumerate()
        .map(|(j, s)| (s.account_id.clone(), j))
        .collect();
    let ids: Vec<String> = snapshots.iter().map(|s| s.account_id.clone()).collect();
    let mut global_parts: Vec<Vec<(Option<f64>, core::Impact)>> = snapshots
        .iter()
        .map(|s| vec![(Some(s.value), core::Impact::High)])
        .collect();
    let cards = cards(sp::load_scorecards(store).await?);
    let mut card_snaps = Vec::new();
    if cards.is_empty() || ids.is_empty() {
        return Ok((card_snaps, global_parts));
    }
    let accounts = sp::load_accounts_by_id(store, &ids).await?;
    for c in &cards {
        let members = match &c.segment {
            Some(rule) => {
                rules::select_stored(
                    &format!("scorecards/{}", c.record.id),
                    rule.clone(),
                    accounts.clone(),
                )
                .await?
            }
            None => accounts.clone(),
        };
        let values = measure::measure_values(store, &c.record.measure, &members, as_of)
            .await
            .map_err(ApiError::from)?;
        for (a, v) in members.iter().zip(values) {
            let (Some(v), Some(&j)) = (v, pos.get(&a.id)) else {
                continue;
            };
            let Some((score, band)) = c.card.evaluate(v) else {
                continue;
            };
            if c.record.include_in_global {
                global_parts[j].push((Some(score), c.card.impact));
            }
            let base = &snapshots[j];
            let details = StoredDetails {
                measure_value: Some(r6(v)),
                model: String::new(),
                ..StoredDetails::default()
            };
            card_snaps.push(NewSnapshot {
                account_id: a.id.clone(),
                scorecard_id: c.record.id.clone(),
                profile_id: base.profile_id.clone(),
                as_of,
                value: r6(score),
                band: band.as_str().to_string(),
                global_value: None,
                global_band: String::new(),
                sub_scores: serde_json::to_string(&details)?,
                momentum: 0.0,
                coverage_present: 0,
                coverage_total: 0,
                drivers: stored::encode_drivers(&[]),
                churn_probability: None,
                weights_source: base.weights_source.clone(),
                population_fallback: false,
            });
        }
    }
    Ok((card_snaps, global_parts))
}

/// Sets the global score and band of each profile snapshot, then serialises its
/// sub-scores (off the async threads: rayon would block this worker until it is done).
async fn finish_profile_snapshots(
    work: &Work,
    mut snapshots: Vec<NewSnapshot>,
    mut details: Vec<StoredDetails>,
    global_parts: &[Vec<(Option<f64>, core::Impact)>],
) -> Result<Vec<NewSnapshot>> {
    let global_bands = core::BandThresholds::default();
    for ((s, d), parts) in snapshots.iter_mut().zip(&mut details).zip(global_parts) {
        let g = core::global_score(parts).unwrap_or(s.value);
        s.global_value = Some(r6(g));
        s.global_band = global_bands.band(g).as_str().to_string();
        d.global_band = s.global_band.clone();
    }
    let snapshots = work
        .blocking(move |_| {
            snapshots
                .par_iter_mut()
                .zip(details.par_iter())
                .try_for_each(|(s, d)| {
                    s.sub_scores =
                        serde_json::to_string(d).map_err(|e| ApiError::Internal(e.to_string()))?;
                    Ok::<(), ApiError>(())
                })?;
            Ok::<_, ApiError>(snapshots)
        })
        .await?;
    Ok(snapshots)
}

/// What the run did per profile (`scored`: the run's profile snapshots).
fn profile_summaries(
    profiles: &[RunProfile],
    scored: &[NewSnapshot],
    fallback: &[bool],
) -> Vec<ProfileSummary> {
    profiles
        .iter()
        .enumerate()
        .map(|(k, p)| ProfileSummary {
            profile_id: p.id.clone(),
            scored: scored.iter().filter(|s| s.profile_id == p.id).count() as u32,
            source: p.weights.source,
            model: p.weights.model.clone(),
            fallback: fallback[k],
        })
        .filter(|s| s.scored > 0)
        .collect()
}

/// The `details` JSON of the run's row; `scored` are the run's profile snapshots. Each
/// profile's entry also keeps the run's mean score, mean KPI coverage (present / counted)
/// and mean churn probability (over the snapshots that have one), so the web UI's "mean
/// score over time" reads the runs' rows, never the snapshots.
fn run_details(
    as_of: DateTime<Utc>,
    snapshots: usize,
    summaries: &[ProfileSummary],
    scored: &[NewSnapshot],
) -> serde_json::Value {
    let means = |profile: &str| {
        let (mut n, mut value, mut coverage, mut churn_n, mut churn) = (0u64, 0.0, 0.0, 0u64, 0.0);
        for s in scored.iter().filter(|s| s.profile_id == profile) {
            n += 1;
            value += s.value;
            if s.coverage_total > 0 {
                coverage += f64::from(s.coverage_present) / f64::from(s.coverage_total);
            }
            if let Some(p) = s.churn_probability {
                churn_n += 1;
                churn += p;
            }
        }
        let n_f = n.max(1) as f64;
        (
            stored::r6(value / n_f),
            stored::r6(coverage / n_f),
            (churn_n > 0).then(|| stored::r6(churn / churn_n as f64)),
        )
    };
    serde_json::json!({
        "as_of": as_of.to_rfc3339(),
        "snapshots": snapshots,
        "profiles": summaries.iter().map(|s| {
            let (mean_score, mean_coverage, mean_churn) = means(&s.profile_id);
            serde_json::json!({
                "profile": s.profile_id,
                "scored": s.scored,
                "weights_source": s.source.as_str(),
                "model": s.model,
                "population_fallback": s.fallback,
                "mean_score": mean_score,
                "mean_coverage": mean_coverage,
                "mean_churn_probability": mean_churn,
            })
        }).collect::<Vec<_>>(),
    })
}

/// The band changes of the written snapshots against the latest rows before the run.
fn band_changes(
    snapshots: &[NewSnapshot],
    before: &HashMap<(String, String), LatestRecord>,
    run_id: i64,
) -> Vec<BandChange> {
    snapshots
        .iter()
        .filter_map(|s| {
            let old = before.get(&(s.account_id.clone(), s.scorecard_id.clone()))?;
            (old.as_of <= s.as_of && old.band != s.band).then(|| BandChange {
                account_id: s.account_id.clone(),
                profile_id: s.profile_id.clone(),
                scorecard_id: s.scorecard_id.clone(),
                old_band: old.band.clone(),
                new_band: s.band.clone(),
                old_value: old.value,
                new_value: s.value,
                as_of: s.as_of,
                run_id,
            })
        })
        .collect()
}

/// Gives GetScore's cache (crate::cache) the scores a run of this process has just
/// committed as `run_id`: those that are now the latest of their (account, scorecard),
/// by `before` (the latest rows before the run), up to the cache's capacity, with the
/// overrides in force. Called while the run still holds the run lease. Best effort: what
/// is not filled is read from the database at its first GetScore.
async fn fill_cache(
    inner: &Inner,
    snapshots: Vec<NewSnapshot>,
    before: HashMap<(String, String), LatestRecord>,
    run_id: i64,
    names: Arc<KpiNames>,
) {
    let cache = inner.latest.clone();
    let capacity = cache.capacity();
    if capacity == 0 || snapshots.is_empty() {
        return;
    }
    // No other run can commit while this one holds the lease: the runs counted now are
    // this one's and those the cache has seen, so the background task will not start a
    // new generation for this run (an override changed meanwhile still does).
    cache.observe(crate::cache::read_marker(&inner.store).await);
    let generation = cache.generation();
    let overrides = match vitals_store::overrides::overrides_in_force(
        &inner.store,
        super::overrides::now_ms(),
    )
    .await
    {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "score cache: cannot read the overrides; not filled by the run");
            return;
        }
    };
    let started = Instant::now();
    let filled = tokio::task::spawn_blocking(move || {
        // Each snapshot is freed once its score is built.
        let scores: Vec<_> = snapshots
            .into_par_iter()
            .filter_map(|s| {
                let key = (s.account_id.clone(), s.scorecard_id.clone());
                let latest = before.get(&key).is_none_or(|b| b.as_of <= s.as_of);
                latest.then_some((key, s))
            })
            .take_any(capacity)
            .map(|(key, s)| {
                let mut score = Score::of_written(&s, run_id, &names);
                score.manual_override = overrides.get(&key).cloned();
                (key, Arc::new(score))
            })
            .collect();
        cache.fill(generation, scores)
    })
    .await;
    match filled {
        Ok(n) => tracing::debug!(
            run = run_id,
            scores = n,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "score cache filled by the run"
        ),
        Err(e) => tracing::warn!(error = %e, "score cache: filling it after the run failed"),
    }
}

/// Runs one scoring run over `scope` as of `as_of` (serialised with every other run),
/// holding a heavy-work slot: when the caller goes away or the server drains, the run
/// stops and writes nothing (its transaction is never begun, or is rolled back).
pub(crate) async fn run(inner: &Inner, scope: Scope, as_of: DateTime<Utc>) -> Result<RunSummary> {
    let _serial = inner.run_lock.lock().await;
    // Runs of other replicas on the same database wait for this one, and this one for
    // them (docs/deploy.md).
    let cluster = inner.leases.lock(crate::RUN_LEASE).await?;
    let work = inner.work.start("scoring run").await?;
    let started = Instant::now();
    let store = &inner.store;
    let records = sp::load_profiles(store).await?;
    let default = records.iter().find(|p| p.is_default).map(|p| p.id.clone());

    // Which population to load, and which of its accounts to write.
    let (input_scope, only_account) =
        input_scope(inner, &scope, &records, default.as_ref()).await?;
    let window = run_window(&records);
    let query = InputQuery {
        as_of: as_of.date_naive(),
        window_days: window,
        history_windows: core::DEFAULT_HISTORY_WINDOWS,
        scope: input_scope,
        include_churned: false,
    };
    let mut loaded = load_inputs(&inner.store, &query).await?;
    // The inputs go to the CPU part, which frees them once the KPIs are computed; of the
    // accounts, a run reads only their ids, profiles and parents (the scorecards read
    // the accounts again).
    let data = std::mem::take(&mut loaded.data);
    for a in &mut loaded.accounts {
        a.attributes = serde_json::Value::Null;
        a.name = String::new();
    }
    let load_ms = started.elapsed().as_millis() as u64;
    let (profiles, profile_of) = run_profiles(inner, &loaded, &records, default.as_ref()).await;
    let write: Vec<usize> = match &only_account {
        Some(a) => loaded.index_of(a).into_iter().collect(),
        None => (0..loaded.accounts.len()).collect(),
    };

    // The previous latest rows of the accounts to write (for the band changes), read
    // while the CPU part runs: runs are serialised, so they are the same as after it.
    let write_ids: Vec<String> = write
        .iter()
        .map(|&i| loaded.accounts[i].id.clone())
        .collect();
    // The numbers the rows' drivers name their KPIs by (docs/scoring-service.md).
    let names = {
        let catalogue = core::Catalogue::new(&loaded.spec)?;
        let kpis: Vec<&str> = catalogue.kpis().iter().map(|k| k.name.as_ref()).collect();
        vitals_store::snapshot::kpi_names(store, &kpis).await?
    };
    let loaded = Arc::new(loaded);
    let profiles = Arc::new(profiles);
    let (computed, loaded, profiles, before) = {
        let (l, p, n) = (loaded.clone(), profiles.clone(), names.clone());
        let task = work.blocking(move |cancel| {
            compute(
                (&l, data),
                &p,
                &profile_of,
                &write,
                (window, as_of),
                &n,
                cancel,
            )
            .map_err(ApiError::from)
        });
        let (c, before) = tokio::join!(task, ss::latest_of_accounts(store, &write_ids));
        let c = c?;
        (c, loaded, profiles, before?)
    };
    // What webhook subscribers want, and the churn probabilities to compare with when
    // they want churn thresholds crossed.
    let interest = vitals_store::webhooks::interest(store).await?;
    let churn_before = if interest.wants(vitals_store::webhooks::KIND_CHURN_CROSSED) {
        ss::latest_churn(store, &write_ids).await?
    } else {
        HashMap::new()
    };
    drop(write_ids);

    let compute_ms = started.elapsed().as_millis() as u64 - load_ms;
    // Scorecards of the scored accounts, then the global score.
    let fallback = computed.fallback;
    let mut rollups =
        super::rollup::rollups(&loaded, &computed.values, &computed.mrr, inner.rollup);
    drop(loaded);
    let mut scored = computed.scored;
    for s in scored.iter_mut().flatten() {
        s.details.rollup = rollups.remove(&s.row);
    }
    let (snapshots, details): (Vec<NewSnapshot>, Vec<StoredDetails>) = scored
        .into_iter()
        .flatten()
        .map(|s| (s.snapshot, s.details))
        .unzip();
    let n_scored = snapshots.len();
    let (card_snaps, global_parts) = score_scorecards(inner, &snapshots, as_of).await?;
    let mut snapshots = finish_profile_snapshots(&work, snapshots, details, &global_parts).await?;
    snapshots.extend(card_snaps);

    let write_from = started.elapsed().as_millis() as u64;
    let started_at = Utc::now();
    let summaries = profile_summaries(&profiles, &snapshots[..n_scored], &fallback);
    let details = run_details(as_of, snapshots.len(), &summaries, &snapshots[..n_scored]);
    // One write transaction: the run, its snapshots, score_latest, the run's end. Nothing
    // is begun once the run is cancelled; a cancellation during it drops (rolls back) the
    // transaction with the call's future.
    // The band changes, and the webhook events, written in the run's transaction.
    let mut changes = band_changes(&snapshots, &before, 0);
    let events = super::events::of_run(&interest, &changes, &snapshots, &churn_before, &names);
    work.check()?;
    if cluster.is_lost() {
        return Err(ApiError::Unavailable(
            "the scoring-run lease could not be renewed (database unreachable?): the run is \
             not committed; retry"
                .into(),
        )
        .into());
    }
    let run_id = ss::write_run(
        store,
        &ss::RunRecord {
            scope: scope.describe(),
            started_at,
            accounts_scored: n_scored as i64,
            details,
            events,
        },
        &snapshots,
    )
    .await?;
    // GetScore's cached latest scores predate this run.
    inner.latest.invalidate();
    // Not to be sent again as another replica's run (`foreign`).
    if inner.store.backend() == vitals_store::sea_orm::DbBackend::Postgres
        && let Ok(mut own) = inner.own_runs.lock()
    {
        own.insert(run_id);
    }

    for c in &mut changes {
        c.run_id = run_id;
    }
    let band_changes = changes.len() as u32;
    for c in changes {
        // No subscriber is not an error.
        let _ = inner.changes.send(Arc::new(c));
    }
    let n_snapshots = snapshots.len();
    fill_cache(inner, snapshots, before, run_id, names).await;
    tracing::info!(
        run = run_id,
        scope = %scope.describe(),
        scored = n_scored,
        snapshots = n_snapshots,
        band_changes,
        load_ms,
        compute_ms,
        write_ms = started.elapsed().as_millis() as u64 - write_from,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "scoring run committed"
    );
    Ok(RunSummary {
        run_id,
        as_of,
        scored: n_scored as u32,
        snapshots: n_snapshots as u32,
        band_changes,
        duration: started.elapsed(),
        profiles: summaries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(mode: &str, usage: f64, pulse: f64) -> ProfileRecord {
        let now = Utc::now();
        ProfileRecord {
            id: "p".into(),
            display_name: "P".into(),
            description: String::new(),
            weights: sp::StoredWeights {
                usage,
                pulse,
                ..Default::default()
            },
            rule: String::new(),
            priority: 0,
            min_population: 10,
            weights_mode: mode.into(),
            kpis: vec!["active_days".into()],
            is_default: false,
            yellow_from: None,
            green_from: None,
            window_days: None,
            trend_weight: None,
            created_at: now,
            updated_at: now,
        }
    }

    fn learned() -> Weights {
        Weights {
            source: Source::Learned,
            suggested_category: Some([0.0, 0.0, 0.0, 1.0, 0.0]),
            kpi_weights: HashMap::from([("active_days".to_string(), 0.5)]),
            ..Weights::uniform()
        }
    }

    #[test]
    fn category_weights_follow_the_weights_mode() {
        let w = learned();
        let manual = category_weights(Some(&profile("manual", 3.0, 1.0)), &w);
        assert_eq!(
            (manual.usage, manual.pulse, manual.contract),
            (0.75, 0.25, 0.0)
        );
        let l = category_weights(Some(&profile("learned", 3.0, 1.0)), &w);
        assert_eq!((l.usage, l.contract), (0.0, 1.0));
        let b = category_weights(Some(&profile("blended", 3.0, 1.0)), &w);
        assert_eq!((b.usage, b.pulse, b.contract), (0.375, 0.125, 0.5));
        // Learned mode without a suggestion keeps the profile's own weights.
        let u = category_weights(Some(&profile("learned", 1.0, 1.0)), &Weights::uniform());
        assert_eq!((u.usage, u.pulse), (0.5, 0.5));
        assert_eq!(category_weights(None, &w), manual_default());
    }

    fn manual_default() -> core::CategoryWeights {
        core::CategoryWeights {
            usage: 0.0,
            conversations: 0.0,
            pulse: 0.0,
            contract: 1.0,
            custom: 0.0,
        }
    }

    #[test]
    fn kpi_weights_apply_selection_learned_weights_and_field_weights() {
        let spec = core::CatalogueSpec {
            event_types: vec!["login".into()],
            score_fields: vec!["nps".into()],
            ..Default::default()
        };
        let catalogue = core::Catalogue::new(&spec).expect("catalogue");
        let mut p = profile("manual", 1.0, 1.0);
        p.weights.custom_score_fields.insert("nps".into(), 2.5);
        let at = |name: &str| catalogue.index_of(name).expect(name);
        let w = kpi_weights(&catalogue, &spec, Some(&p), &learned());
        assert_eq!(w[at("active_days")], 0.5);
        assert_eq!(
            w[at("key_events")],
            0.0,
            "outside the profile's KPI selection"
        );
        assert_eq!(w[at("score_field_nps")], 2.5);
        p.kpis.clear();
        let w = kpi_weights(&catalogue, &spec, Some(&p), &Weights::uniform());
        assert!(w.iter().all(|x| *x > 0.0), "uniform: every KPI counts");
        let w = kpi_weights(&catalogue, &spec, Some(&p), &learned());
        assert_eq!(w[at("key_events")], 0.0, "a KPI the learner does not list");
    }
}
