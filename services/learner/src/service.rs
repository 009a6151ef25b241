//! The learner's operations: store reads and writes around the domain's CPU work, which
//! runs on blocking threads (`spawn_blocking`), never on the async ones.
//!
//! Train, Evaluate, PredictChurn and automatic training are heavy work: each holds a slot
//! of the process's [`vitals_server::WorkBudget`] and is cancelled when its caller goes
//! away (tonic drops the handler future and with it the [`Work`]) or the server drains;
//! the CPU part stops at its next check and nothing is committed after that.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Days, NaiveDate, Utc};
use vitals_learn_core::Cancel;
use vitals_server::{ApiError, CancelFlag, Work};
use vitals_store::learner::{
    self as store, GLOBAL_MODEL, ModelRow, NewModel, NewOutcome, OutcomeCursor, OutcomeFilter,
    OutcomeRecord, OutcomesWritten,
};
use vitals_store::values::OutcomeKind as StoredKind;

use crate::LearnerService;
use crate::convert::{DecodedModel, decode};
use crate::domain::stored::{StoredCoefficients, StoredOptions, Window, WindowEnd, is_candidate};
use crate::domain::{self, Evaluated, Fitted, Scope, Settings};
use crate::error::LearnerError;

type Result<T, E = LearnerError> = std::result::Result<T, E>;

/// State of the training runs of one process.
#[derive(Debug, Default)]
pub struct TrainState {
    /// When the last automatic training started (even if it fitted nothing), so that a
    /// run that could not fit a model is not retried on every new outcome.
    pub last_auto_start: Option<DateTime<Utc>>,
}

/// Guards against piling up automatic training tasks: set while one waits to start.
#[derive(Debug, Default)]
pub struct AutoPending(AtomicBool);

/// What the CPU part of a training run gives: the fitted scopes, (id, reason) of the
/// skipped ones and the observation window.
type Fitting = (Vec<(String, Fitted)>, Vec<(String, String)>, Window);

/// What a training run did.
#[derive(Debug, Default)]
pub struct TrainResult {
    /// The stored new model versions.
    pub models: Vec<ModelRow>,
    /// (profile id or [`GLOBAL_MODEL`], reason) of the scopes not fitted.
    pub skipped: Vec<(String, String)>,
    /// The observation window used.
    pub window: Option<Window>,
}

/// The learn-core check of a heavy operation's flag.
pub(crate) fn learn_cancel(flag: &CancelFlag) -> Cancel {
    let flag = flag.clone();
    Cancel::new(move || flag.is_cancelled())
}

fn json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value> {
    serde_json::to_value(v)
        .map_err(|e| LearnerError::Internal(format!("cannot encode a model: {e}")))
}

/// End of a day (last second), the time up to which data of an `as_of` date is read.
fn end_of_day(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(23, 59, 59).unwrap_or_default().and_utc()
}

/// Index of a profile in the population; `None` when the profile has no place in it.
fn profile_scope(prep: &domain::Prepared, profile_id: &str) -> Option<Scope> {
    prep.pop
        .profiles
        .iter()
        .position(|p| p.id.as_deref() == Some(profile_id))
        .map(Scope::Profile)
}

impl LearnerService {
    /// Records a validated batch in one transaction, then starts an automatic training
    /// run when enough new outcomes have accumulated.
    pub(crate) async fn record(&self, items: Vec<NewOutcome>) -> Result<OutcomesWritten> {
        let written = store::record_outcomes(&self.store, &items).await?;
        if written.recorded > 0 && self.args.retrain_after_outcomes > 0 {
            self.schedule_auto_train();
        }
        Ok(written)
    }

    /// Starts (at most one waiting) background task that trains every profile and the
    /// global model if `retrain_after_outcomes` outcomes were recorded since the last
    /// training (or automatic attempt).
    fn schedule_auto_train(&self) {
        if self.auto_pending.0.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let mut state = this.training.clone().lock_owned().await;
            this.auto_pending.0.store(false, Ordering::Release);
            if let Err(e) = this.auto_train(&mut state).await {
                tracing::warn!(error = %e, "automatic training failed");
            }
        });
    }

    /// Trains automatically when enough outcomes are new; takes a heavy-work slot only
    /// then (and gives up, logged, when none frees up in time or the server drains).
    async fn auto_train(&self, state: &mut TrainState) -> Result<()> {
        // Once per cluster: the count is read under the training lease, so a replica that
        // waited for another's training sees its models and finds nothing new to train on.
        let _cluster = self.leases.lock(crate::TRAIN_LEASE).await?;
        let last_model = store::last_trained_at(&self.store).await?;
        let since = match (last_model, state.last_auto_start) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let new = store::count_recorded_after(&self.store, since).await?;
        if new < self.args.retrain_after_outcomes {
            return Ok(());
        }
        let start = Utc::now();
        state.last_auto_start = Some(start);
        let settings = crate::convert::settings(None, &self.args)?;
        let work = self.work.start("automatic training").await?;
        // The same window as a Train request without `as_of`: up to the latest data.
        let as_of = self.resolve_as_of(None, start).await?;
        tracing::info!(new_outcomes = new, as_of = %as_of.0, "automatic training started");
        match self.train_locked(&work, None, settings, as_of).await {
            Ok(r) => tracing::info!(
                models = r.models.len(),
                skipped = r.skipped.len(),
                "automatic training done"
            ),
            Err(
                LearnerError::FailedPrecondition(m)
                | LearnerError::Api(ApiError::FailedPrecondition(m)),
            ) => {
                tracing::info!(reason = %m, "automatic training fitted nothing")
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Trains now: one profile, or every profile plus the global model, after the other
    /// runs of this process (the training lock) and once a heavy-work slot is free. When
    /// the caller gives up (deadline, request timeout) or the server drains, the run stops
    /// and stores nothing.
    /// `as_of` unset trains up to the end of the data the server holds
    /// ([`LearnerService::resolve_as_of`]).
    pub(crate) async fn train(
        &self,
        profile: Option<String>,
        settings: Settings,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<TrainResult> {
        let _guard = self.training.lock().await;
        let _cluster = self.leases.lock(crate::TRAIN_LEASE).await?;
        let work = self.work.start("Train").await?;
        let as_of = self.resolve_as_of(as_of, Utc::now()).await?;
        self.train_locked(&work, profile, settings, as_of).await
    }

    /// The `as_of` of a Train or Evaluate request and where it comes from: the request's
    /// own, else the end of the last day of data the server holds (its last usage day or
    /// subscription change, never after `now`), else `now` when it holds none.
    pub(crate) async fn resolve_as_of(
        &self,
        given: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(DateTime<Utc>, WindowEnd)> {
        if let Some(t) = given {
            return Ok((t, WindowEnd::AsOf));
        }
        Ok(match store::latest_data_day(&self.store, now).await? {
            Some(day) => (end_of_day(day).min(now), WindowEnd::LatestData),
            None => (now, WindowEnd::Now),
        })
    }

    pub(crate) async fn train_locked(
        &self,
        work: &Work,
        profile: Option<String>,
        settings: Settings,
        (as_of, end_source): (DateTime<Utc>, WindowEnd),
    ) -> Result<TrainResult> {
        if let Some(p) = &profile
            && !store::profile_exists(&self.store, p).await?
        {
            return Err(LearnerError::NotFound(format!("profile profiles/{p}")));
        }
        let outcomes = store::outcomes_until(&self.store, as_of).await?;
        if !outcomes
            .iter()
            .any(|o| o.kind == StoredKind::Churned.as_str())
        {
            return Err(LearnerError::FailedPrecondition(
                "no churn outcome recorded (up to as_of): record outcomes with RecordOutcomes \
                 first"
                    .into(),
            ));
        }
        let date = as_of.date_naive();
        self.check_size(work, &outcomes, as_of, date, &settings)
            .await?;
        let history = self.history(as_of, "training").await?;
        let (fitted, skipped, window) = work
            .blocking(move |flag| {
                fit_scopes(
                    history, outcomes, profile, date, end_source, &settings, flag,
                )
            })
            .await?;
        let trained_at = Utc::now();
        let mut new = Vec::with_capacity(fitted.len());
        for (id, mut f) in fitted {
            // Champion/challenger: worse than the serving version's backtest, the new
            // version is kept as a candidate and does not serve.
            if let Some(row) = self.serving_model(&id).await? {
                let serving = decode(&row)?;
                f.metrics.candidate = domain::candidate_reason(
                    &f.metrics.churn_backtest,
                    &serving.metrics.churn_backtest,
                    &crate::convert::model_name(&row),
                );
            }
            new.push(NewModel {
                profile_id: id,
                trained_at,
                n_observations: f.observations as i64,
                n_churned: f.churned as i64,
                kpi_weights: json(&f.kpi_weights)?,
                category_weights: json(&f.category_weights)?,
                coefficients: json(&f.coefficients)?,
                metrics: json(&f.metrics)?,
            });
        }
        // Every version in one transaction, committed only if the run is still wanted
        // (checked inside it, right before the commit).
        let models = match store::insert_models(&self.store, new, || !work.is_cancelled()).await? {
            Some(rows) => rows,
            None => {
                work.check()?;
                return Err(LearnerError::Unavailable("training cancelled".into()));
            }
        };
        Ok(TrainResult {
            models,
            skipped,
            window: Some(window),
        })
    }

    /// The store's history up to `until`, with the time its read took logged.
    async fn history(&self, until: DateTime<Utc>, purpose: &'static str) -> Result<store::History> {
        let started = std::time::Instant::now();
        let history = store::load_history(&self.store, until).await?;
        tracing::info!(
            purpose,
            usage_rows = history
                .usage_by_account
                .iter()
                .map(|(_, u)| u.len())
                .sum::<usize>(),
            ms = started.elapsed().as_millis() as u64,
            "history read"
        );
        Ok(history)
    }

    /// Refuses a training set over the cell bound from the store's cheap facts (aggregate
    /// queries, no history row), before the history is read: a refused request costs
    /// almost nothing. `prepare` checks the same count again on the population it builds.
    async fn check_size(
        &self,
        work: &Work,
        outcomes: &[store::OutcomeRecord],
        until: DateTime<Utc>,
        as_of: NaiveDate,
        settings: &Settings,
    ) -> Result<()> {
        let facts = store::history_facts(&self.store, until).await?;
        let outcomes = outcomes.to_vec();
        let settings = *settings;
        work.blocking(move |_| domain::check_facts(&facts, &outcomes, as_of, &settings))
            .await?;
        Ok(())
    }

    /// The model whose weights a profile uses: its own serving version, else the global
    /// one's.
    pub(crate) async fn model_for(&self, profile: Option<&str>) -> Result<Option<ModelRow>> {
        if let Some(p) = profile
            && let Some(m) = self.serving_model(p).await?
        {
            return Ok(Some(m));
        }
        self.serving_model(GLOBAL_MODEL).await
    }

    /// The newest version of a profile's (or the global) model that serves: versions
    /// kept as candidates are passed over.
    pub(crate) async fn serving_model(&self, profile_id: &str) -> Result<Option<ModelRow>> {
        let mut before = None;
        loop {
            let rows = store::list_models(&self.store, Some(profile_id), false, before, 20).await?;
            let Some(last) = rows.last() else {
                return Ok(None);
            };
            before = Some(last.id);
            if let Some(r) = rows.into_iter().find(|r| !is_candidate(&r.metrics)) {
                return Ok(Some(r));
            }
        }
    }

    /// At most `limit` outcomes matching `filter` after `after`, newest first.
    pub(crate) async fn list_outcomes(
        &self,
        filter: &OutcomeFilter,
        after: Option<&OutcomeCursor>,
        limit: u64,
    ) -> Result<Vec<OutcomeRecord>> {
        Ok(store::list_outcomes(&self.store, filter, after, limit).await?)
    }

    /// Model `version` of `profile` (`name` is its resource name, for NOT_FOUND).
    pub(crate) async fn get_model(
        &self,
        profile: &str,
        version: i32,
        name: &str,
    ) -> Result<ModelRow> {
        store::get_model(&self.store, profile, version)
            .await?
            .ok_or_else(|| LearnerError::NotFound(format!("model {name}")))
    }

    /// At most `limit` models (of `profile` when set, the latest of each only when
    /// `latest_only`) before the model id `before`, newest first.
    pub(crate) async fn list_models(
        &self,
        profile: Option<&str>,
        latest_only: bool,
        before: Option<i64>,
        limit: u64,
    ) -> Result<Vec<ModelRow>> {
        Ok(store::list_models(&self.store, profile, latest_only, before, limit).await?)
    }

    /// Evaluates the model a profile uses (or the global one) on the observations up to
    /// `as_of` (unset: the end of the data, as Train), with a `folds`-fold time-split
    /// backtest. `settings` resolves the request's training options against defaults:
    /// unset options take the model's own.
    pub(crate) async fn evaluate(
        &self,
        profile: Option<String>,
        settings: impl FnOnce(&crate::LearnerArgs) -> Result<Settings, ApiError> + Send,
        folds: usize,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<(ModelRow, Evaluated, Window)> {
        if let Some(p) = &profile
            && !store::profile_exists(&self.store, p).await?
        {
            return Err(LearnerError::NotFound(format!("profile profiles/{p}")));
        }
        let row = self.model_for(profile.as_deref()).await?.ok_or_else(|| {
            LearnerError::NotFound("model (none trained yet: call Train first)".into())
        })?;
        let model = decode(&row)?;
        let settings = settings(&self.model_args(&model.metrics.options))?;
        let work = self.work.start("Evaluate").await?;
        let (until, end_source) = self.resolve_as_of(as_of, Utc::now()).await?;
        let as_of = until.date_naive();
        let outcomes = store::outcomes_until(&self.store, until).await?;
        self.check_size(&work, &outcomes, until, as_of, &settings)
            .await?;
        let history = self.history(until, "evaluation").await?;
        let (evaluated, window) = work
            .blocking(move |flag| {
                evaluate_model(
                    history, outcomes, profile, as_of, &model, folds, &settings, flag,
                )
            })
            .await?;
        Ok((
            row,
            evaluated,
            Window {
                end_source,
                ..window
            },
        ))
    }

    /// The server's defaults replaced by a model's settings.
    fn model_args(&self, o: &StoredOptions) -> crate::LearnerArgs {
        crate::LearnerArgs {
            horizon_days: o.horizon_days,
            observation_interval_days: o.observation_interval_days,
            prior_strength: o.prior_strength,
            ..self.args.clone()
        }
    }

    /// Churn probabilities of accounts as of a time, each with the model of its profile
    /// (else the global one): (probability, model row, profile id) in request order.
    pub(crate) async fn predict(
        &self,
        ids: Vec<String>,
        as_of: DateTime<Utc>,
    ) -> Result<Vec<(f64, Arc<ModelRow>, Option<String>)>> {
        let accounts = store::load_accounts(&self.store, &ids).await?;
        let profile_of: HashMap<String, Option<String>> =
            accounts.into_iter().map(|a| (a.id, a.profile_id)).collect();
        if let Some((i, id)) = ids
            .iter()
            .enumerate()
            .find(|(_, id)| !profile_of.contains_key(*id))
        {
            return Err(LearnerError::NotFound(format!(
                "account {id:?} (account_ids[{i}])"
            )));
        }
        let mut by_profile: HashMap<Option<String>, Option<Arc<ModelRow>>> = HashMap::new();
        for p in profile_of.values() {
            if let std::collections::hash_map::Entry::Vacant(e) = by_profile.entry(p.clone()) {
                e.insert(self.model_for(p.as_deref()).await?.map(Arc::new));
            }
        }
        let mut rows = Vec::with_capacity(ids.len());
        for id in &ids {
            let p = &profile_of[id];
            let m = by_profile[p].clone().ok_or_else(|| {
                LearnerError::FailedPrecondition(
                    "no model trained yet (neither the account's profile nor the global one): \
                     call Train first"
                        .into(),
                )
            })?;
            rows.push((m, p.clone()));
        }
        let mut decoded: HashMap<i64, StoredCoefficients> = HashMap::new();
        for (m, _) in &rows {
            if let std::collections::hash_map::Entry::Vacant(e) = decoded.entry(m.id) {
                e.insert(decode(m)?.coefficients);
            }
        }
        let work = self.work.start("PredictChurn").await?;
        let outcomes = store::outcomes_until(&self.store, as_of).await?;
        let history = store::load_history(&self.store, as_of).await?;
        // Features see data strictly before the observation date: the day after `as_of`
        // includes the data of `as_of`'s day.
        let day = as_of
            .date_naive()
            .checked_add_days(Days::new(1))
            .ok_or_else(|| LearnerError::Api(ApiError::invalid("as_of", "out of range")))?;
        let model_ids: Vec<i64> = rows.iter().map(|(m, _)| m.id).collect();
        let ids2 = ids.clone();
        let probabilities = work
            .blocking(move |_| {
                predict_accounts(history, outcomes, &ids2, day, &model_ids, &decoded)
            })
            .await?;
        Ok(probabilities
            .into_iter()
            .zip(rows)
            .map(|(p, (m, profile))| (p, m, profile))
            .collect())
    }
}

/// The CPU part of a training run: the population and training set as of `date`, then
/// one fit per scope (the profile asked for, or every profile and the global model).
fn fit_scopes(
    history: store::History,
    outcomes: Vec<OutcomeRecord>,
    profile: Option<String>,
    date: NaiveDate,
    end_source: WindowEnd,
    settings: &Settings,
    flag: &CancelFlag,
) -> Result<Fitting> {
    // The population holds what the training set needs: free the history's
    // rows before the observations are built.
    let started = std::time::Instant::now();
    let by_account = domain::outcomes_by_account(&outcomes);
    let pop = domain::features::Population::build(&history, &by_account)?;
    drop((history, outcomes));
    let built = started.elapsed();
    let prep = domain::prepare_population(pop, &by_account, date, settings, &learn_cancel(flag))?;
    tracing::info!(
        population_ms = built.as_millis() as u64,
        observations_ms = (started.elapsed() - built).as_millis() as u64,
        observations = prep.data.len(),
        dates = prep.dates.len(),
        "training: observations built"
    );
    let scopes: Vec<(String, Option<Scope>)> = match profile {
        Some(p) => {
            let scope = profile_scope(&prep, &p);
            vec![(p, scope)]
        }
        None => prep
            .pop
            .profiles
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.id.clone().map(|id| (id, Some(Scope::Profile(i)))))
            .chain([(GLOBAL_MODEL.to_owned(), Some(Scope::Global))])
            .collect(),
    };
    // Profiles borrow from the global model: it is fitted first (for one profile alone,
    // in memory only), and its fits are shared by every profile of the run.
    let borrowing = if settings.borrow_from_global {
        Some(domain::Borrowing::new(&prep)?)
    } else {
        None
    };
    let mut order: Vec<usize> = (0..scopes.len()).collect();
    order.sort_by_key(|&i| !matches!(scopes[i].1, Some(Scope::Global)));
    let mut results: Vec<Option<std::result::Result<Fitted, String>>> = vec![None; scopes.len()];
    for i in order {
        flag.check().map_err(ApiError::from)?;
        let Some(scope) = scopes[i].1 else {
            results[i] = Some(Err("the profile has no member".to_owned()));
            continue;
        };
        let started = std::time::Instant::now();
        results[i] = Some(
            match domain::fit_scope(&prep, scope, settings, borrowing.as_ref()) {
                Ok(f) => Ok(f),
                Err(Ok(reason)) => Err(reason),
                Err(Err(e)) => return Err(e),
            },
        );
        tracing::info!(
            scope = %scopes[i].0,
            ms = started.elapsed().as_millis() as u64,
            "training: scope fitted"
        );
    }
    drop(borrowing);
    let mut fitted: Vec<(String, Fitted)> = Vec::new();
    let mut skipped = Vec::new();
    for ((id, _), result) in scopes.into_iter().zip(results) {
        match result {
            Some(Ok(mut f)) => {
                f.metrics.window = Some(prep.window(end_source));
                fitted.push((id, f));
            }
            Some(Err(reason)) => skipped.push((id, reason)),
            None => {}
        }
    }
    let window = prep.window(end_source);
    Ok((fitted, skipped, window))
}

/// The CPU part of an evaluation: the training set as of the model's date, then the
/// stored model's metrics and a `folds`-fold backtest on the scope's observations.
#[allow(clippy::too_many_arguments)]
fn evaluate_model(
    history: store::History,
    outcomes: Vec<OutcomeRecord>,
    profile: Option<String>,
    as_of: NaiveDate,
    model: &DecodedModel,
    folds: usize,
    settings: &Settings,
    flag: &CancelFlag,
) -> Result<(Evaluated, Window)> {
    // The population holds what the evaluation needs: free the history's
    // rows before the observations are built.
    let by_account = domain::outcomes_by_account(&outcomes);
    let pop = domain::features::Population::build(&history, &by_account)?;
    drop((history, outcomes));
    let mut prep =
        domain::prepare_population(pop, &by_account, as_of, settings, &learn_cancel(flag))?;
    let scope = match &profile {
        Some(p) => profile_scope(&prep, p).ok_or_else(|| {
            LearnerError::FailedPrecondition(format!("profile profiles/{p} has no member"))
        })?,
        None => Scope::Global,
    };
    // Counted before `evaluate` frees the dataset.
    let window = prep.window(WindowEnd::AsOf);
    let evaluated = domain::evaluate(
        &mut prep,
        scope,
        &model.coefficients,
        &model.kpi_weights,
        model.category_weights.as_ref(),
        folds,
        settings,
    )?;
    Ok((evaluated, window))
}

/// The CPU part of PredictChurn: the population as of `day`, then each account's churn
/// probability with its model's coefficients.
fn predict_accounts(
    history: store::History,
    outcomes: Vec<OutcomeRecord>,
    ids: &[String],
    day: NaiveDate,
    model_ids: &[i64],
    decoded: &HashMap<i64, StoredCoefficients>,
) -> Result<Vec<f64>> {
    let by_account = domain::outcomes_by_account(&outcomes);
    let pop = domain::features::Population::build(&history, &by_account)?;
    let indices: Vec<usize> = ids
        .iter()
        .map(|id| {
            pop.index.get(id).copied().ok_or_else(|| {
                LearnerError::NotFound(format!("account {id:?} (created after as_of)"))
            })
        })
        .collect::<Result<_>>()?;
    // One serving model per stored version (a booster is parsed once).
    let order: Vec<i64> = decoded.keys().copied().collect();
    let models = order
        .iter()
        .map(|id| domain::ChurnModel::of(&decoded[id]))
        .collect::<Result<Vec<_>>>()?;
    let model_of: Vec<usize> = model_ids
        .iter()
        .map(|id| order.iter().position(|o| o == id).unwrap_or(0))
        .collect();
    domain::predict(&pop, day, &indices, &models, &model_of)
}
