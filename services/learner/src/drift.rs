//! The drift operations of the learner service: `GetDriftReport`, and the scheduled drift
//! check that reports a drift once per model version and level (`model.drift_detected`)
//! and then retrains (docs/learning.md, "Drift").

use chrono::{DateTime, NaiveDate, Utc};
use vitals_learn_core::DriftLevel;
use vitals_server::{CancelFlag, Work};
use vitals_store::learner::{self as store, GLOBAL_MODEL, ModelRow};

use crate::LearnerService;
use crate::convert::{DecodedModel, decode, model_name};
use crate::domain::{self, Drift};
use crate::error::LearnerError;
use crate::service::{TrainState, learn_cancel};

type Result<T, E = LearnerError> = std::result::Result<T, E>;

/// A drift report of one serving model.
#[derive(Debug, Clone)]
pub struct DriftReport {
    /// The serving model compared against.
    pub model: ModelRow,
    /// The last observation date of its training.
    pub model_as_of: NaiveDate,
    /// PSI per KPI and the AUC since training.
    pub drift: Drift,
    /// Outcomes recorded since the model was trained.
    pub outcomes_since: u64,
    /// Why an automatic retraining is due (`None`: not due).
    pub retrain: Option<String>,
}

impl DriftReport {
    /// Whether the PSI passes the threshold (0 = off) on data newer than the model's:
    /// what the drift check acts on.
    fn psi_due(&self, threshold: f64) -> Option<(String, f64)> {
        if threshold <= 0.0 || self.drift.as_of <= self.model_as_of {
            return None;
        }
        let top = self.drift.kpis.first()?;
        (top.psi > threshold).then(|| (top.kpi.clone(), top.psi))
    }
}

impl LearnerService {
    /// The drift report of the serving model of `profile` (its own, else the global one;
    /// `None`: the global one): NOT_FOUND for an unknown profile or when no model serves.
    pub(crate) async fn drift_report(&self, profile: Option<String>) -> Result<DriftReport> {
        if let Some(p) = &profile
            && !store::profile_exists(&self.store, p).await?
        {
            return Err(LearnerError::NotFound(format!("profile profiles/{p}")));
        }
        let row = self.model_for(profile.as_deref()).await?.ok_or_else(|| {
            LearnerError::NotFound("model (none trained yet: call Train first)".into())
        })?;
        let work = self.work.start("GetDriftReport").await?;
        let mut reports = self.drift_of(&work, vec![row]).await?;
        reports
            .pop()
            .ok_or_else(|| LearnerError::Internal("no drift report".into()))
    }

    /// The drift reports of `rows` (serving models), on one read of the history up to the
    /// latest data day.
    async fn drift_of(&self, work: &Work, rows: Vec<ModelRow>) -> Result<Vec<DriftReport>> {
        let decoded: Vec<DecodedModel> = rows.iter().map(decode).collect::<Result<_, _>>()?;
        let (until, _) = self.resolve_as_of(None, Utc::now()).await?;
        let mut since = Vec::with_capacity(rows.len());
        for r in &rows {
            since.push(store::count_recorded_after(&self.store, Some(r.trained_at)).await?);
        }
        let outcomes = store::outcomes_until(&self.store, until).await?;
        self.check_drift_size(work, &decoded, &outcomes, until)
            .await?;
        let history = store::load_history(&self.store, until).await?;
        let scopes: Vec<String> = rows.iter().map(|r| r.profile_id.clone()).collect();
        let as_of = until.date_naive();
        let drifts = work
            .blocking(move |flag: &CancelFlag| {
                let by_account = domain::outcomes_by_account(&outcomes);
                let pop = domain::features::Population::build(&history, &by_account)?;
                drop((history, outcomes));
                let cancel = learn_cancel(flag);
                scopes
                    .iter()
                    .zip(&decoded)
                    .map(|(scope, m)| {
                        // The model's own population: a profile's model on its members,
                        // the global one on every account.
                        let profile = (scope != GLOBAL_MODEL).then(|| {
                            pop.profiles
                                .iter()
                                .position(|p| p.id.as_deref() == Some(scope.as_str()))
                        });
                        let in_scope = |i: usize| match profile {
                            None => true,
                            Some(p) => Some(pop.accounts[i].profile) == p,
                        };
                        domain::drift(
                            &pop,
                            &by_account,
                            &m.metrics,
                            &m.coefficients,
                            &in_scope,
                            as_of,
                            &cancel,
                        )
                    })
                    .collect::<Result<Vec<Drift>>>()
            })
            .await?;
        let threshold = self.args.retrain_psi_threshold;
        let after = self.args.retrain_after_outcomes;
        Ok(rows
            .into_iter()
            .zip(drifts)
            .zip(since)
            .map(|((model, drift), outcomes_since)| {
                let model_as_of = decode(&model)
                    .map(|m| m.metrics.as_of)
                    .unwrap_or(drift.as_of);
                let mut r = DriftReport {
                    model,
                    model_as_of,
                    drift,
                    outcomes_since,
                    retrain: None,
                };
                r.retrain = if let Some((kpi, psi)) = r.psi_due(threshold) {
                    Some(format!(
                        "PSI of {kpi} {psi:.4} above the retrain threshold {threshold} \
                         (--retrain-psi-threshold)"
                    ))
                } else if after > 0 && outcomes_since >= after {
                    Some(format!(
                        "{outcomes_since} outcomes recorded since training, at least \
                         {after} (--retrain-after-outcomes)"
                    ))
                } else {
                    None
                };
                r
            })
            .collect())
    }

    /// Refuses a drift report whose KPI snapshots (each model's observation dates since
    /// its training, and the latest day) would pass `--max-dataset-cells`, counted from
    /// the store's cheap facts before the history is read, as Train and Evaluate do: a
    /// read token cannot start a load larger than a training's.
    async fn check_drift_size(
        &self,
        work: &Work,
        models: &[DecodedModel],
        outcomes: &[store::OutcomeRecord],
        until: DateTime<Utc>,
    ) -> Result<()> {
        let facts = store::history_facts(&self.store, until).await?;
        let outcomes = outcomes.to_vec();
        let as_of = until.date_naive();
        let limit = self.args.max_dataset_cells;
        let mut dates = Vec::with_capacity(models.len());
        for m in models {
            dates.push(domain::report_dates(&m.metrics, as_of)?);
        }
        // The interval of these settings is unused (the dates are given); no bound.
        let count = domain::Settings {
            max_dataset_cells: u64::MAX,
            ..crate::convert::settings(None, &self.args)?
        };
        work.blocking(move |_| {
            let mut cells = 0u64;
            let mut n_dates = 0;
            for d in &dates {
                cells = cells
                    .saturating_add(domain::check_facts_on(&facts, &outcomes, d, as_of, &count)?);
                n_dates += d.len();
            }
            if cells <= limit {
                return Ok(());
            }
            Err(LearnerError::TooLarge(format!(
                "drift report: {n_dates} observation dates since the model's training up to \
                 {as_of} give {cells} cells (accounts x features), over the limit of {limit} \
                 (VITALS_LEARNER_MAX_DATASET_CELLS); retrain the model (its dates start at \
                 its last training) or raise the limit"
            )))
        })
        .await
    }

    /// The scheduled drift check (every `--drift-check-interval-secs`, on the replica
    /// holding `schedule:learner-drift`): under the training lock and lease, the drift of
    /// every serving model; a PSI above `--retrain-psi-threshold` on data newer than the
    /// model's writes one `model.drift_detected` event per model version and level, and
    /// when any such event is new, trains every profile and the global model.
    pub(crate) async fn check_drift(&self) -> Result<()> {
        let threshold = self.args.retrain_psi_threshold;
        if threshold <= 0.0 {
            return Ok(());
        }
        let mut state = self.training.clone().lock_owned().await;
        let _cluster = self.leases.lock(crate::TRAIN_LEASE).await?;
        let mut rows = Vec::new();
        for latest in store::list_models(&self.store, None, true, None, 10_000).await? {
            if let Some(row) = self.serving_model(&latest.profile_id).await? {
                rows.push(row);
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        let work = self.work.start("drift check").await?;
        let reports = self.drift_of(&work, rows).await?;
        let mut detected = 0;
        let checked_at = Utc::now();
        for r in &reports {
            store::record_drift_check(
                &self.store,
                r.model.id,
                drift_check_data(r, threshold, checked_at),
            )
            .await?;
            let Some((kpi, psi)) = r.psi_due(threshold) else {
                continue;
            };
            let level = DriftLevel::of(psi).as_str();
            let data = drift_event_data(r, threshold);
            if store::record_drift_detected(&self.store, r.model.id, level, data).await? {
                detected += 1;
                tracing::info!(
                    model = %model_name(&r.model),
                    kpi = %kpi,
                    psi,
                    level,
                    "drift detected"
                );
            }
        }
        if detected == 0 {
            return Ok(());
        }
        drop(work);
        self.retrain_on_drift(&mut state).await
    }

    /// The automatic training a new drift detection starts (default options, up to the
    /// latest data, as the outcome-count trigger does).
    async fn retrain_on_drift(&self, state: &mut TrainState) -> Result<()> {
        let start = Utc::now();
        state.last_auto_start = Some(start);
        let settings = crate::convert::settings(None, &self.args)?;
        let work = self.work.start("automatic training").await?;
        let as_of = self.resolve_as_of(None, start).await?;
        tracing::info!(as_of = %as_of.0, "automatic training on drift started");
        match self.train_locked(&work, None, settings, as_of).await {
            Ok(r) => tracing::info!(models = r.models.len(), "automatic training on drift done"),
            Err(LearnerError::FailedPrecondition(m)) => {
                tracing::info!(reason = %m, "automatic training on drift fitted nothing")
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }
}

/// KPIs kept in a drift check's summary (highest PSI first).
const CHECK_KPIS: usize = 10;

/// The summary of a scheduled drift check of one model, kept on the model
/// (`vitals_store::learner::DRIFT_CHECK_KEY`) for the web UI's model page.
fn drift_check_data(
    r: &DriftReport,
    threshold: f64,
    checked_at: DateTime<Utc>,
) -> serde_json::Value {
    let kpis: Vec<serde_json::Value> = r
        .drift
        .kpis
        .iter()
        .take(CHECK_KPIS)
        .map(|k| serde_json::json!({"kpi": k.kpi, "psi": k.psi, "level": k.level.as_str()}))
        .collect();
    let (auc, auc_unavailable) = match &r.drift.auc {
        Ok(a) => (Some(*a), None),
        Err(why) => (None, Some(why.clone())),
    };
    serde_json::json!({
        "checked_at": rfc3339(checked_at),
        "as_of": r.drift.as_of.to_string(),
        "model_as_of": r.model_as_of.to_string(),
        "level": r.drift.level().as_str(),
        "psi": r.drift.max_psi(),
        "psi_threshold": threshold,
        "kpis": kpis,
        "kpis_measured": r.drift.kpis.len(),
        "unavailable": r.drift.unavailable,
        "outcomes_since": r.outcomes_since,
        "auc_since": auc,
        "auc_unavailable": auc_unavailable,
        "labelled": r.drift.labelled,
        "churned": r.drift.churned,
        "retrain": r.retrain,
    })
}

/// The `data` of a `model.drift_detected` event (the store adds the model, profile,
/// version and level): the PSI threshold, the latest data day, the model's last
/// observation date and the KPIs above the threshold.
fn drift_event_data(r: &DriftReport, threshold: f64) -> serde_json::Value {
    let kpis: Vec<serde_json::Value> = r
        .drift
        .kpis
        .iter()
        .filter(|k| k.psi > threshold)
        .map(|k| serde_json::json!({"kpi": k.kpi, "psi": k.psi, "level": k.level.as_str()}))
        .collect();
    serde_json::json!({
        "psi": r.drift.max_psi(),
        "psi_threshold": threshold,
        "as_of": r.drift.as_of.to_string(),
        "model_as_of": r.model_as_of.to_string(),
        "trained_at": rfc3339(r.model.trained_at),
        "kpis": kpis,
        "retraining": true,
    })
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
