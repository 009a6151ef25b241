//! Proto <-> domain conversion and request validation (field paths in every error).

use chrono::{DateTime, NaiveDate, Utc};
use prost_types::Timestamp;
use vitals_proto::common::v1 as common;
use vitals_proto::learner::v1 as pb;
use vitals_server::ApiError;
use vitals_server::paging::{self, PageLimits};
use vitals_server::validate as sv;
use vitals_store::learner::{
    GLOBAL_MODEL, ModelRow, NewOutcome, OutcomeCursor, OutcomeFilter, OutcomeRecord,
};
use vitals_store::values::OutcomeKind as StoredKind;

use crate::LearnerArgs;
use crate::domain::Settings;
use crate::domain::stored::{
    StoredBacktest, StoredCategoryWeights, StoredChallenger, StoredCoefficients, StoredEval,
    StoredFold, StoredKpiWeight, StoredMetrics, Window,
};
use vitals_learn_core::{Calibration, DriftLevel, ServedKind};

use crate::drift::DriftReport;

/// Largest batch of RecordOutcomes.
pub const MAX_OUTCOMES: usize = 10_000;
/// Largest batch of PredictChurn.
pub const MAX_PREDICT: usize = 1_000;
/// Longest outcome note in bytes.
pub const MAX_NOTE_BYTES: usize = 4_096;
/// Longest account id in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// Checks a customer-owned id: 1..256 bytes, no control characters.
pub fn account_id(field: &str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() {
        return Err(ApiError::invalid(field, "must not be empty"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(ApiError::invalid(field, "longer than 256 bytes"));
    }
    if id.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

fn valid_profile_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Parses `profiles/{id}`; `""` is `None` (global).
pub fn profile_name(field: &str, name: &str) -> Result<Option<String>, ApiError> {
    if name.is_empty() {
        return Ok(None);
    }
    match name.strip_prefix("profiles/") {
        Some(id) if valid_profile_id(id) => Ok(Some(id.to_owned())),
        _ => Err(ApiError::invalid(
            field,
            format!("{name:?} is not a profile name (profiles/{{profile_id}})"),
        )),
    }
}

/// `profiles/{id}`, or `""` for the global model.
pub fn profile_of_model(profile_id: &str) -> String {
    if profile_id == GLOBAL_MODEL {
        String::new()
    } else {
        format!("profiles/{profile_id}")
    }
}

/// `models/{profile_id}-{version}`.
pub fn model_name(row: &ModelRow) -> String {
    format!("models/{}-{}", row.profile_id, row.version)
}

/// Parses `models/{model_id}` into (stored profile id, version).
pub fn parse_model_name(name: &str) -> Result<(String, i32), ApiError> {
    let bad = || {
        ApiError::invalid(
            "name",
            format!("{name:?} is not a model name (models/{{model_id}}, e.g. models/global-1)"),
        )
    };
    let id = name.strip_prefix("models/").ok_or_else(bad)?;
    let (profile, version) = id.rsplit_once('-').ok_or_else(bad)?;
    let version: i32 = version.parse().map_err(|_| bad())?;
    if version < 1 || !(profile == GLOBAL_MODEL || valid_profile_id(profile)) {
        return Err(bad());
    }
    Ok((profile.to_owned(), version))
}

/// Timestamp -> UTC time, checked: well-formed (0001-01-01..9999-12-31; the filters of
/// ListOutcomes take any such time).
pub fn time(field: &str, t: &Timestamp) -> Result<DateTime<Utc>, ApiError> {
    sv::timestamp(field, t)
}

/// The `as_of` of Train or PredictChurn: `now` when unset, else from 2000-01-01 to 24 h
/// past `now` (the rule of every service, [`vitals_server::validate::data_time`]).
pub fn as_of(
    field: &str,
    t: Option<&Timestamp>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, ApiError> {
    match t {
        None => Ok(now),
        Some(t) => sv::data_time(field, t, now),
    }
}

/// UTC time -> Timestamp.
pub fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// Midnight UTC of a day -> Timestamp.
pub fn day_timestamp(d: NaiveDate) -> Timestamp {
    timestamp(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
}

fn kind_str(field: &str, k: i32) -> Result<&'static str, ApiError> {
    match pb::OutcomeKind::try_from(k) {
        Ok(pb::OutcomeKind::Churned) => Ok(StoredKind::Churned.as_str()),
        Ok(pb::OutcomeKind::Renewed) => Ok(StoredKind::Renewed.as_str()),
        Ok(pb::OutcomeKind::Inactive) => Ok(StoredKind::Inactive.as_str()),
        Ok(pb::OutcomeKind::Unspecified) => Err(ApiError::invalid(field, "must be set")),
        Err(_) => Err(ApiError::invalid(
            field,
            format!("unknown outcome kind {k}"),
        )),
    }
}

/// Kind filter of ListOutcomes (`None` = any).
pub fn kind_filter(k: i32) -> Result<Option<String>, ApiError> {
    if k == 0 {
        return Ok(None);
    }
    kind_str("kind", k).map(|s| Some(s.to_owned()))
}

/// Validates a RecordOutcomes batch: nothing is written unless every item is valid.
pub fn new_outcomes(
    items: &[pb::Outcome],
    now: DateTime<Utc>,
) -> Result<Vec<NewOutcome>, ApiError> {
    if items.is_empty() || items.len() > MAX_OUTCOMES {
        return Err(ApiError::invalid(
            "outcomes",
            format!("must hold 1 to 10,000 outcomes, got {}", items.len()),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let f = |name: &str| format!("outcomes[{i}].{name}");
            account_id(&f("account_id"), &o.account_id)?;
            let kind = kind_str(&f("kind"), o.kind)?;
            let t = o
                .occur_time
                .as_ref()
                .ok_or_else(|| ApiError::invalid(f("occur_time"), "must be set"))?;
            let at = sv::data_time(&f("occur_time"), t, now)?;
            if o.note.len() > MAX_NOTE_BYTES {
                return Err(ApiError::invalid(f("note"), "longer than 4,096 bytes"));
            }
            sv::no_nul(&f("note"), &o.note)?;
            Ok(NewOutcome {
                account_id: o.account_id.clone(),
                kind: kind.to_owned(),
                at,
                note: o.note.clone(),
            })
        })
        .collect()
}

/// A stored outcome as the API returns it.
pub fn outcome(r: &OutcomeRecord) -> pb::Outcome {
    let kind = match r.kind.parse::<StoredKind>() {
        Ok(StoredKind::Churned) => pb::OutcomeKind::Churned,
        Ok(StoredKind::Renewed) => pb::OutcomeKind::Renewed,
        Ok(StoredKind::Inactive) | Err(_) => pb::OutcomeKind::Inactive,
    };
    pb::Outcome {
        account_id: r.account_id.clone(),
        kind: kind as i32,
        occur_time: Some(timestamp(r.at)),
        note: r.note.clone(),
        record_time: Some(timestamp(r.recorded_at)),
    }
}

/// A decoded page of a learner list: its size, where it resumes (a decoded cursor) and
/// the fingerprint of the request's filters its token is bound to.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<C> {
    /// Rows per page.
    pub size: u64,
    /// Where the page resumes (`None` on the first page).
    pub after: Option<C>,
    /// The fingerprint of the request's filters.
    pub filters: u64,
}

impl<C> Page<C> {
    /// How many rows to read: one more than the page, to know whether another follows.
    pub fn limit(&self) -> u64 {
        self.size + 1
    }

    /// Keeps this page of `rows` and returns the next page's token.
    pub fn next<T, const N: usize>(
        &self,
        rows: &mut Vec<T>,
        key: impl FnOnce(&T) -> [String; N],
    ) -> String {
        paging::next_after(rows, self.size, self.filters, key)
    }
}

/// A ListOutcomes request: its filter and page (the token is bound to the filter).
pub fn list_outcomes_request(
    r: &pb::ListOutcomesRequest,
) -> Result<(OutcomeFilter, Page<OutcomeCursor>), ApiError> {
    let size = PageLimits::STANDARD.size(r.page_size)?;
    if !r.account_id.is_empty() {
        account_id("account_id", &r.account_id)?;
    }
    let mut filter = OutcomeFilter {
        account_id: (!r.account_id.is_empty()).then(|| r.account_id.clone()),
        kind: kind_filter(r.kind)?,
        ..OutcomeFilter::default()
    };
    if let Some(range) = &r.time_range {
        filter.from = range
            .start_time
            .as_ref()
            .map(|t| time("time_range.start_time", t))
            .transpose()?;
        filter.to = range
            .end_time
            .as_ref()
            .map(|t| time("time_range.end_time", t))
            .transpose()?;
        if let (Some(a), Some(b)) = (filter.from, filter.to)
            && b < a
        {
            return Err(ApiError::invalid(
                "time_range.end_time",
                "must not be before start_time",
            ));
        }
    }
    let filters = paging::fingerprint(&[&format!("{filter:?}")]);
    let after = outcome_cursor(&r.page_token, filters)?;
    Ok((
        filter,
        Page {
            size,
            after,
            filters,
        },
    ))
}

/// A ListModels request: the profile (`None` for any) and the page (resuming before a
/// model id; bound to the filters).
pub fn list_models_request(
    r: &pb::ListModelsRequest,
) -> Result<(Option<String>, Page<i64>), ApiError> {
    let size = PageLimits::STANDARD.size(r.page_size)?;
    let profile = profile_name("profile", &r.profile)?;
    let filters = paging::fingerprint(&[r.profile.as_str(), &r.latest_only.to_string()]);
    let after = model_cursor(&r.page_token, filters)?;
    Ok((
        profile,
        Page {
            size,
            after,
            filters,
        },
    ))
}

/// The (profile, version) of a GetModel request's name.
pub fn model_name_request(name: &str) -> Result<(String, i32), ApiError> {
    if name.is_empty() {
        return Err(ApiError::invalid("name", "must be set"));
    }
    parse_model_name(name)
}

/// Checks the account ids of a PredictChurn request.
pub fn predict_request(ids: &[String]) -> Result<(), ApiError> {
    if ids.is_empty() || ids.len() > MAX_PREDICT {
        return Err(ApiError::invalid(
            "account_ids",
            format!("must hold 1 to 1,000 ids, got {}", ids.len()),
        ));
    }
    for (i, id) in ids.iter().enumerate() {
        account_id(&format!("account_ids[{i}]"), id)?;
    }
    Ok(())
}

/// The PredictChurn response: one prediction per id, in the request's order.
pub fn predict_response(
    ids: Vec<String>,
    predictions: Vec<(f64, std::sync::Arc<ModelRow>, Option<String>)>,
) -> pb::PredictChurnResponse {
    pb::PredictChurnResponse {
        predictions: ids
            .into_iter()
            .zip(predictions)
            .map(|(id, (p, m, profile))| pb::ChurnPrediction {
                account_id: id,
                probability: p,
                model: model_name(&m),
                profile: profile
                    .filter(|p| p != GLOBAL_MODEL)
                    .map(|p| format!("profiles/{p}"))
                    .unwrap_or_default(),
            })
            .collect(),
    }
}

/// The page-token key of an outcome (ListOutcomes resumes after it).
pub fn outcome_key(o: &OutcomeRecord) -> [String; 3] {
    let nanos = o.at.timestamp_nanos_opt().unwrap_or_default().to_string();
    [nanos, o.account_id.clone(), o.kind.clone()]
}

/// The cursor of a ListOutcomes token (`None` for the first page).
pub fn outcome_cursor(token: &str, filters: u64) -> Result<Option<OutcomeCursor>, ApiError> {
    let Some([nanos, account_id, kind]) = paging::decode::<3>(token, filters)? else {
        return Ok(None);
    };
    let nanos: i64 = nanos
        .parse()
        .map_err(|_| ApiError::invalid(paging::PAGE_TOKEN_FIELD, paging::BAD_TOKEN))?;
    Ok(Some(OutcomeCursor {
        at: DateTime::from_timestamp_nanos(nanos),
        account_id,
        kind,
    }))
}

/// The model id a ListModels token resumes before (`None` for the first page).
pub fn model_cursor(token: &str, filters: u64) -> Result<Option<i64>, ApiError> {
    paging::decode::<1>(token, filters)?
        .map(|[id]| {
            id.parse()
                .map_err(|_| ApiError::invalid(paging::PAGE_TOKEN_FIELD, paging::BAD_TOKEN))
        })
        .transpose()
}

/// Resolves training options against the server's defaults, validating each set field.
pub fn settings(o: Option<&pb::TrainingOptions>, args: &LearnerArgs) -> Result<Settings, ApiError> {
    let d = pb::TrainingOptions::default();
    let o = o.unwrap_or(&d);
    let horizon = o.horizon_days.unwrap_or(args.horizon_days);
    if !(1..=365).contains(&horizon) {
        return Err(ApiError::invalid(
            "options.horizon_days",
            format!("must be in 1..365, got {horizon}"),
        ));
    }
    let interval = o
        .observation_interval_days
        .unwrap_or(args.observation_interval_days);
    if !(1..=365).contains(&interval) {
        return Err(ApiError::invalid(
            "options.observation_interval_days",
            format!("must be in 1..365, got {interval}"),
        ));
    }
    let prior = o.prior_strength.unwrap_or(args.prior_strength);
    if !(prior.is_finite() && prior >= 0.0) {
        return Err(ApiError::invalid(
            "options.prior_strength",
            "must be a finite number >= 0",
        ));
    }
    if let Some(l2) = o.l2_penalty
        && !(l2.is_finite() && l2 > 0.0)
    {
        return Err(ApiError::invalid(
            "options.l2_penalty",
            "must be a finite number > 0",
        ));
    }
    Ok(Settings {
        horizon_days: horizon,
        interval_days: interval,
        prior_strength: prior,
        l2_penalty: o.l2_penalty,
        max_dataset_cells: args.max_dataset_cells,
        borrow_from_global: args.profile_borrowing,
        challenger: o.challenger.unwrap_or(args.challenger),
    })
}

/// scoring-core category name -> API enum.
pub fn category(name: &str) -> i32 {
    (match name {
        "usage" => common::ScoreCategory::Usage,
        "conversations" => common::ScoreCategory::Conversations,
        "pulse" => common::ScoreCategory::Pulse,
        "contract" => common::ScoreCategory::Contract,
        "custom" => common::ScoreCategory::CustomMetrics,
        "score_field" => common::ScoreCategory::CustomScoreField,
        _ => common::ScoreCategory::Unspecified,
    }) as i32
}

fn direction(name: &str) -> i32 {
    (match name {
        "higher" => common::KpiDirection::HigherIsBetter,
        "lower" => common::KpiDirection::LowerIsBetter,
        _ => common::KpiDirection::Unspecified,
    }) as i32
}

/// Stored coefficients -> API.
pub fn coefficients(c: &StoredCoefficients) -> Vec<pb::Coefficient> {
    c.coefficients
        .iter()
        .map(|k| pb::Coefficient {
            // The feature column: `<kpi>` for a percentile, `<kpi>:log` for a log value,
            // `<kpi>:value` for a value.
            kpi: k.column(),
            category: category(&k.category),
            coefficient: k.coefficient,
            declared_direction: direction(&k.declared_direction),
            contradicted: k.contradicted,
            missing_value: Some(k.missing),
        })
        .collect()
}

/// Stored KPI weights -> API.
pub fn kpi_weights(w: &[StoredKpiWeight]) -> Vec<pb::KpiWeight> {
    w.iter()
        .map(|k| pb::KpiWeight {
            kpi: k.kpi.clone(),
            category: category(&k.category),
            weight: k.weight,
            learned_weight: k.learned,
            prior_weight: k.prior,
        })
        .collect()
}

/// Stored category weights -> API.
pub fn category_weights(w: &StoredCategoryWeights) -> common::CategoryWeights {
    common::CategoryWeights {
        usage: w.usage,
        conversations: w.conversations,
        pulse: w.pulse,
        contract: w.contract,
        custom_metrics: w.custom_metrics,
        custom_score_fields: Default::default(),
    }
}

/// Stored metrics -> API.
pub fn metrics(e: &StoredEval) -> pb::Metrics {
    pb::Metrics {
        auc: e.auc,
        top_decile_lift: e.top_decile_lift,
        log_loss: e.log_loss,
        brier_score: e.brier_score,
        observation_count: e.observations,
        positive_count: e.positives,
        expected_calibration_error: e.calibration_error.unwrap_or(0.0),
    }
}

/// An observation window -> API.
pub fn window(w: &Window) -> pb::ObservationWindow {
    pb::ObservationWindow {
        start_time: w.start.map(day_timestamp),
        end_time: Some(timestamp(
            w.end.and_hms_opt(23, 59, 59).unwrap_or_default().and_utc(),
        )),
        end_source: w.end_source.as_str().to_owned(),
        date_count: w.dates,
        observation_count: w.observations,
        censored_count: w.censored,
    }
}

/// A model's calibration -> API.
pub fn model_calibration(c: &Calibration) -> pb::ModelCalibration {
    pb::ModelCalibration {
        slope: c.platt.slope,
        offset: c.platt.offset,
        observation_count: c.observations as u32,
        expected_calibration_error_before: c.ece_before.unwrap_or(0.0),
        skipped_reason: c.skipped_reason.clone().unwrap_or_default(),
    }
}

/// Calibration bins -> API.
pub fn calibration(e: &StoredEval) -> Vec<pb::CalibrationBin> {
    e.calibration
        .iter()
        .map(|b| pb::CalibrationBin {
            predicted_lower: b.min_predicted,
            predicted_upper: b.max_predicted,
            mean_predicted: b.mean_predicted,
            observed_rate: b.observed_rate,
            count: b.count as u32,
        })
        .collect()
}

/// Backtest folds -> API.
pub fn folds(f: &[StoredFold]) -> Vec<pb::BacktestFold> {
    f.iter()
        .map(|f| pb::BacktestFold {
            train_end: Some(day_timestamp(f.train_end)),
            test_start: Some(day_timestamp(f.test_start)),
            test_end: Some(day_timestamp(f.test_end)),
            train_count: f.train_count,
            test_metrics: Some(metrics(&f.metrics)),
        })
        .collect()
}

/// The decoded JSON columns of a model row.
#[derive(Debug, Clone)]
pub struct DecodedModel {
    /// Coefficients.
    pub coefficients: StoredCoefficients,
    /// KPI weights.
    pub kpi_weights: Vec<StoredKpiWeight>,
    /// Suggested category weights.
    pub category_weights: Option<StoredCategoryWeights>,
    /// Metrics.
    pub metrics: StoredMetrics,
}

/// Decodes a model row's JSON (INTERNAL if it does not parse: the learner wrote it).
pub fn decode(row: &ModelRow) -> Result<DecodedModel, ApiError> {
    let bad = |what: &str, e: serde_json::Error| {
        ApiError::Internal(format!("model {} has bad {what}: {e}", row.id))
    };
    Ok(DecodedModel {
        coefficients: serde_json::from_value(row.coefficients.clone())
            .map_err(|e| bad("coefficients", e))?,
        kpi_weights: serde_json::from_value(row.kpi_weights.clone())
            .map_err(|e| bad("kpi_weights", e))?,
        category_weights: serde_json::from_value(row.category_weights.clone())
            .map_err(|e| bad("category_weights", e))?,
        metrics: serde_json::from_value(row.metrics.clone()).map_err(|e| bad("metrics", e))?,
    })
}

/// A model row -> API.
pub fn model(row: &ModelRow) -> Result<pb::Model, ApiError> {
    let d = decode(row)?;
    let o = d.metrics.options;
    Ok(pb::Model {
        name: model_name(row),
        profile: profile_of_model(&row.profile_id),
        version: u32::try_from(row.version).unwrap_or(0),
        train_time: Some(timestamp(row.trained_at)),
        options: Some(pb::TrainingOptions {
            horizon_days: Some(o.horizon_days),
            observation_interval_days: Some(o.observation_interval_days),
            prior_strength: Some(o.prior_strength),
            l2_penalty: Some(d.coefficients.l2_penalty),
            challenger: Some(o.challenger),
        }),
        l2_penalty: d.coefficients.l2_penalty,
        intercept: d.coefficients.intercept,
        coefficients: coefficients(&d.coefficients),
        kpi_weights: kpi_weights(&d.kpi_weights),
        contradicted_kpis: d.metrics.contradicted.clone(),
        suggested_category_weights: d.category_weights.as_ref().map(category_weights),
        training_metrics: Some(metrics(&d.metrics.training)),
        account_count: d.metrics.account_count,
        churn_count: d.metrics.churn_count,
        shrinkage: d.metrics.shrinkage,
        window: d.metrics.window.as_ref().map(window),
        calibration: d.metrics.calibration.as_ref().map(model_calibration),
        churn_backtest: Some(evaluation(&d.metrics.training, &d.metrics.churn_backtest)),
        candidate: d.metrics.candidate.is_some(),
        candidate_reason: d.metrics.candidate.clone().unwrap_or_default(),
        challenger: d.metrics.challenger.as_ref().map(challenger_decision),
    })
}

/// A stored challenger decision -> API.
pub fn challenger_decision(c: &StoredChallenger) -> pb::ChallengerDecision {
    let d = &c.decision;
    pb::ChallengerDecision {
        served: match d.served {
            ServedKind::Logistic => "logistic",
            ServedKind::Gbm => "gbm",
        }
        .to_owned(),
        logistic_fold_aucs: d.logistic_fold_aucs.clone(),
        gbm_fold_aucs: d.gbm_fold_aucs.clone(),
        logistic_mean_auc: d.logistic_mean_auc(),
        gbm_mean_auc: d.gbm_mean_auc(),
        reason: d.reason.clone(),
        min_mean_gain: c.rule.min_mean_gain,
        max_fold_loss: c.rule.max_fold_loss,
        budget: f64::from(c.budget),
        trees: c.trees,
        seconds: c.seconds,
    }
}

/// Most backtest folds an Evaluate request may ask for.
pub const MAX_FOLDS: u32 = 10;
/// Backtest folds when the request leaves it at 0.
pub const DEFAULT_FOLDS: u32 = 2;

/// The backtest folds of an Evaluate request: 0 is the default, at most [`MAX_FOLDS`].
pub fn backtest_folds(n: u32) -> Result<usize, ApiError> {
    match n {
        0 => Ok(DEFAULT_FOLDS as usize),
        n if n <= MAX_FOLDS => Ok(n as usize),
        n => Err(ApiError::invalid(
            "backtest_folds",
            format!("must be in 0..10, got {n}"),
        )),
    }
}

/// The proto evaluation of a stored metric and its backtest.
pub fn evaluation(e: &StoredEval, b: &StoredBacktest) -> pb::Evaluation {
    pb::Evaluation {
        metrics: Some(metrics(e)),
        calibration: calibration(e),
        backtest_folds: folds(&b.folds),
        backtest_auc: b.mean_auc,
        backtest_top_decile_lift: b.mean_top_decile_lift,
        backtest_expected_calibration_error: b.mean_calibration_error.unwrap_or(0.0),
    }
}

/// A drift level as the API says it.
pub fn drift_level(l: DriftLevel) -> pb::DriftLevel {
    match l {
        DriftLevel::Stable => pb::DriftLevel::Stable,
        DriftLevel::Moderate => pb::DriftLevel::Moderate,
        DriftLevel::Shift => pb::DriftLevel::Shift,
    }
}

/// A drift report with the server's retrain thresholds.
pub fn drift_report(
    r: &DriftReport,
    retrain_after_outcomes: u64,
    retrain_psi_threshold: f64,
) -> pb::GetDriftReportResponse {
    let d = &r.drift;
    pb::GetDriftReportResponse {
        model: model_name(&r.model),
        train_time: Some(timestamp(r.model.trained_at)),
        model_as_of: Some(day_timestamp(r.model_as_of)),
        as_of: Some(day_timestamp(d.as_of)),
        kpis: d
            .kpis
            .iter()
            .map(|k| pb::KpiDrift {
                kpi: k.kpi.clone(),
                psi: k.psi,
                level: drift_level(k.level) as i32,
                training_observations: k.training_observations,
                current_accounts: k.current_accounts,
            })
            .collect(),
        level: if d.kpis.is_empty() {
            pb::DriftLevel::Unspecified
        } else {
            drift_level(d.level())
        } as i32,
        drift_unavailable_reason: d.unavailable.clone().unwrap_or_default(),
        outcomes_since_training: r.outcomes_since,
        auc_since_training: d.auc.as_ref().ok().copied(),
        labelled_observations: d.labelled,
        churned_observations: d.churned,
        auc_unavailable_reason: d.auc.as_ref().err().cloned().unwrap_or_default(),
        retrain_after_outcomes,
        retrain_psi_threshold,
        retrain_due: r.retrain.is_some(),
        retrain_reason: r.retrain.clone().unwrap_or_default(),
    }
}
