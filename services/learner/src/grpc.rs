//! The tonic adapter of the learner service: proto in, domain call, proto out.

use chrono::{DateTime, Utc};
use tonic::{Request, Response, Status};
use vitals_proto::common::v1 as common;
use vitals_proto::learner::v1 as pb;
use vitals_server::ApiError;
use vitals_server::paging::{self, PageLimits};
use vitals_store::learner::{self as store, GLOBAL_MODEL, OutcomeFilter};

use crate::LearnerService;
use crate::convert::{self, decode};
use crate::domain::stored::{StoredBacktest, StoredEval};

type Reply<T> = Result<Response<T>, Status>;

/// Most backtest folds an Evaluate request may ask for.
pub const MAX_FOLDS: u32 = 10;
/// Backtest folds when the request leaves it at 0.
pub const DEFAULT_FOLDS: u32 = 2;

fn as_of(field: &str, t: Option<&prost_types::Timestamp>) -> Result<DateTime<Utc>, ApiError> {
    convert::as_of(field, t, Utc::now())
}

fn evaluation(e: &StoredEval, b: &StoredBacktest) -> pb::Evaluation {
    pb::Evaluation {
        metrics: Some(convert::metrics(e)),
        calibration: convert::calibration(e),
        backtest_folds: convert::folds(&b.folds),
        backtest_auc: b.mean_auc,
        backtest_top_decile_lift: b.mean_top_decile_lift,
    }
}

#[tonic::async_trait]
impl pb::learner_service_server::LearnerService for LearnerService {
    async fn record_outcomes(
        &self,
        request: Request<pb::RecordOutcomesRequest>,
    ) -> Reply<pb::RecordOutcomesResponse> {
        let items = convert::new_outcomes(&request.into_inner().outcomes, Utc::now())?;
        let w = self.record(items).await?;
        Ok(Response::new(pb::RecordOutcomesResponse {
            recorded_count: w.recorded,
            duplicate_count: w.duplicates,
        }))
    }

    async fn list_outcomes(
        &self,
        request: Request<pb::ListOutcomesRequest>,
    ) -> Reply<pb::ListOutcomesResponse> {
        let r = request.into_inner();
        let limit = PageLimits::STANDARD.size(r.page_size)?;
        if !r.account_id.is_empty() {
            convert::account_id("account_id", &r.account_id)?;
        }
        let mut filter = OutcomeFilter {
            account_id: (!r.account_id.is_empty()).then(|| r.account_id.clone()),
            kind: convert::kind_filter(r.kind)?,
            ..OutcomeFilter::default()
        };
        if let Some(range) = &r.time_range {
            filter.from = range
                .start_time
                .as_ref()
                .map(|t| convert::time("time_range.start_time", t))
                .transpose()?;
            filter.to = range
                .end_time
                .as_ref()
                .map(|t| convert::time("time_range.end_time", t))
                .transpose()?;
            if let (Some(a), Some(b)) = (filter.from, filter.to)
                && b < a
            {
                return Err(ApiError::invalid(
                    "time_range.end_time",
                    "must not be before start_time",
                )
                .into());
            }
        }
        let filters = paging::fingerprint(&[&format!("{filter:?}")]);
        let after = convert::outcome_cursor(&r.page_token, filters)?;
        let mut rows = store::list_outcomes(&self.store, &filter, after.as_ref(), limit + 1)
            .await
            .map_err(ApiError::from)?;
        let next = paging::next_after(&mut rows, limit, filters, convert::outcome_key);
        Ok(Response::new(pb::ListOutcomesResponse {
            outcomes: rows.iter().map(convert::outcome).collect(),
            next_page_token: next,
        }))
    }

    async fn train(&self, request: Request<pb::TrainRequest>) -> Reply<pb::TrainResponse> {
        let r = request.into_inner();
        let profile = convert::profile_name("profile", &r.profile)?;
        let settings = convert::settings(r.options.as_ref(), &self.args)?;
        let as_of = as_of("as_of", r.as_of.as_ref())?;
        let result = self.train(profile, settings, as_of).await;
        vitals_server::metrics::training_run(if result.is_ok() { "ok" } else { "failed" });
        let result = result?;
        Ok(Response::new(pb::TrainResponse {
            models: result
                .models
                .iter()
                .map(convert::model)
                .collect::<Result<_, _>>()?,
            skipped: result
                .skipped
                .into_iter()
                .map(|(id, reason)| pb::SkippedProfile {
                    profile: convert::profile_of_model(&id),
                    reason,
                })
                .collect(),
        }))
    }

    async fn get_weights(
        &self,
        request: Request<pb::GetWeightsRequest>,
    ) -> Reply<pb::GetWeightsResponse> {
        let r = request.into_inner();
        let profile = convert::profile_name("profile", &r.profile)?;
        let Some(row) = self.model_for(profile.as_deref()).await? else {
            return Ok(Response::new(pb::GetWeightsResponse {
                profile: r.profile,
                source: common::WeightsSource::Uniform as i32,
                ..Default::default()
            }));
        };
        let d = decode(&row)?;
        Ok(Response::new(pb::GetWeightsResponse {
            profile: r.profile,
            source: common::WeightsSource::Learned as i32,
            model: convert::model_name(&row),
            train_time: Some(convert::timestamp(row.trained_at)),
            kpi_weights: convert::kpi_weights(&d.kpi_weights),
            suggested_category_weights: d.category_weights.as_ref().map(convert::category_weights),
            intercept: d.coefficients.intercept,
            coefficients: convert::coefficients(&d.coefficients),
        }))
    }

    async fn get_model(
        &self,
        request: Request<pb::GetModelRequest>,
    ) -> Reply<pb::GetModelResponse> {
        let name = request.into_inner().name;
        if name.is_empty() {
            return Err(ApiError::invalid("name", "must be set").into());
        }
        let (profile, version) = convert::parse_model_name(&name)?;
        let row = store::get_model(&self.store, &profile, version)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::NotFound(format!("model {name}")))?;
        Ok(Response::new(pb::GetModelResponse {
            model: Some(convert::model(&row)?),
        }))
    }

    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Reply<pb::ListModelsResponse> {
        let r = request.into_inner();
        let limit = PageLimits::STANDARD.size(r.page_size)?;
        let profile = convert::profile_name("profile", &r.profile)?;
        let filters = paging::fingerprint(&[r.profile.as_str(), &r.latest_only.to_string()]);
        let before = convert::model_cursor(&r.page_token, filters)?;
        let mut rows = store::list_models(
            &self.store,
            profile.as_deref(),
            r.latest_only,
            before,
            limit + 1,
        )
        .await
        .map_err(ApiError::from)?;
        let next = paging::next_after(&mut rows, limit, filters, |m| [m.id.to_string()]);
        Ok(Response::new(pb::ListModelsResponse {
            models: rows.iter().map(convert::model).collect::<Result<_, _>>()?,
            next_page_token: next,
        }))
    }

    async fn evaluate(&self, request: Request<pb::EvaluateRequest>) -> Reply<pb::EvaluateResponse> {
        let r = request.into_inner();
        let profile = convert::profile_name("profile", &r.profile)?;
        let folds = match r.backtest_folds {
            0 => DEFAULT_FOLDS,
            n if n <= MAX_FOLDS => n,
            n => {
                return Err(ApiError::invalid(
                    "backtest_folds",
                    format!("must be in 0..10, got {n}"),
                )
                .into());
            }
        };
        // Validate the options against the server's defaults first so that a bad field is
        // INVALID_ARGUMENT even before a model exists.
        convert::settings(r.options.as_ref(), &self.args)?;
        let options = r.options;
        let settings = move |args: &crate::LearnerArgs| convert::settings(options.as_ref(), args);
        let (row, e) = self.evaluate(profile, settings, folds as usize).await?;
        Ok(Response::new(pb::EvaluateResponse {
            model: convert::model_name(&row),
            churn_probability: Some(evaluation(&e.churn, &e.churn_backtest)),
            health_score: Some(evaluation(&e.health, &e.health_backtest)),
        }))
    }

    async fn predict_churn(
        &self,
        request: Request<pb::PredictChurnRequest>,
    ) -> Reply<pb::PredictChurnResponse> {
        let r = request.into_inner();
        if r.account_ids.is_empty() || r.account_ids.len() > convert::MAX_PREDICT {
            return Err(ApiError::invalid(
                "account_ids",
                format!("must hold 1 to 1,000 ids, got {}", r.account_ids.len()),
            )
            .into());
        }
        for (i, id) in r.account_ids.iter().enumerate() {
            convert::account_id(&format!("account_ids[{i}]"), id)?;
        }
        let as_of = as_of("as_of", r.as_of.as_ref())?;
        let ids = r.account_ids.clone();
        let predictions = self.predict(r.account_ids, as_of).await?;
        Ok(Response::new(pb::PredictChurnResponse {
            predictions: ids
                .into_iter()
                .zip(predictions)
                .map(|(id, (p, m, profile))| pb::ChurnPrediction {
                    account_id: id,
                    probability: p,
                    model: convert::model_name(&m),
                    profile: profile
                        .filter(|p| p != GLOBAL_MODEL)
                        .map(|p| format!("profiles/{p}"))
                        .unwrap_or_default(),
                })
                .collect(),
        }))
    }
}
