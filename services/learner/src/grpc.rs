//! The tonic adapter of the learner service: proto in, domain call, proto out.

use chrono::{DateTime, Utc};
use tonic::{Request, Response, Status};
use vitals_proto::common::v1 as common;
use vitals_proto::google::longrunning::Operation;
use vitals_proto::learner::v1 as pb;
use vitals_server::ApiError;
use vitals_server::auth::{Principal, Role};
use vitals_server::operations;

use crate::LearnerService;
use crate::convert::{self, decode};

type Reply<T> = Result<Response<T>, Status>;

/// Target of an operation over every profile and the global model.
const GLOBAL_TARGET: &str = "global";

impl LearnerService {
    /// Decodes a Train request (INVALID_ARGUMENT naming the field) and returns the call
    /// that trains and encodes the answer: run in place by Train, as an operation by
    /// StartTraining.
    fn train_call(
        &self,
        r: &pb::TrainRequest,
    ) -> Result<impl Future<Output = Result<pb::TrainResponse, Status>> + Send + 'static, ApiError>
    {
        let profile = convert::profile_name("profile", &r.profile)?;
        let settings = convert::settings(r.options.as_ref(), &self.args)?;
        let as_of = optional_as_of("as_of", r.as_of.as_ref())?;
        let this = self.clone();
        Ok(async move {
            let result = this.train(profile, settings, as_of).await;
            vitals_server::metrics::training_run(if result.is_ok() { "ok" } else { "failed" });
            let result = result?;
            Ok(pb::TrainResponse {
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
                window: result.window.as_ref().map(convert::window),
            })
        })
    }

    /// Decodes an Evaluate request and returns the call that evaluates and encodes the
    /// answer (Evaluate in place, StartEvaluation as an operation).
    fn evaluate_call(
        &self,
        r: pb::EvaluateRequest,
    ) -> Result<impl Future<Output = Result<pb::EvaluateResponse, Status>> + Send + 'static, ApiError>
    {
        let profile = convert::profile_name("profile", &r.profile)?;
        let folds = convert::backtest_folds(r.backtest_folds)?;
        let as_of = optional_as_of("as_of", r.as_of.as_ref())?;
        // Validate the options against the server's defaults first so that a bad field is
        // INVALID_ARGUMENT even before a model exists.
        convert::settings(r.options.as_ref(), &self.args)?;
        let options = r.options;
        let settings = move |args: &crate::LearnerArgs| convert::settings(options.as_ref(), args);
        let this = self.clone();
        Ok(async move {
            let (row, e, window) = this.evaluate(profile, settings, folds, as_of).await?;
            Ok(pb::EvaluateResponse {
                model: convert::model_name(&row),
                churn_probability: Some(convert::evaluation(&e.churn, &e.churn_backtest)),
                health_score: Some(convert::evaluation(&e.health, &e.health_backtest)),
                window: Some(convert::window(&window)),
            })
        })
    }
}

fn as_of(field: &str, t: Option<&prost_types::Timestamp>) -> Result<DateTime<Utc>, ApiError> {
    convert::as_of(field, t, Utc::now())
}

/// A Train or Evaluate `as_of`: validated when given; unset is left to the service (the
/// end of the data it holds).
fn optional_as_of(
    field: &str,
    t: Option<&prost_types::Timestamp>,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    t.map(|t| convert::as_of(field, Some(t), Utc::now()))
        .transpose()
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
        let (filter, page) = convert::list_outcomes_request(request.get_ref())?;
        let mut rows = self
            .list_outcomes(&filter, page.after.as_ref(), page.limit())
            .await?;
        let next = page.next(&mut rows, convert::outcome_key);
        Ok(Response::new(pb::ListOutcomesResponse {
            outcomes: rows.iter().map(convert::outcome).collect(),
            next_page_token: next,
        }))
    }

    async fn train(&self, request: Request<pb::TrainRequest>) -> Reply<pb::TrainResponse> {
        let r = request.into_inner();
        let call = self.train_call(&r)?;
        Ok(Response::new(call.await?))
    }

    async fn start_training(&self, request: Request<pb::StartTrainingRequest>) -> Reply<Operation> {
        let caller = request.extensions().get::<Principal>().cloned();
        let r = request.into_inner().request.unwrap_or_default();
        let target = if r.profile.is_empty() {
            GLOBAL_TARGET.to_string()
        } else {
            r.profile.clone()
        };
        let call = self
            .train_call(&r)
            .map_err(|e| operations::nested("request", e))?;
        let op = operations::start(
            &self.store,
            "train",
            &target,
            caller.as_ref(),
            Role::Admin,
            "vitals.learner.v1.TrainResponse",
            call,
        )
        .await?;
        Ok(Response::new(op))
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
            // The booster that serves the churn probability, when one does.
            booster_json: d.coefficients.gbm.clone().unwrap_or_default(),
        }))
    }

    async fn get_model(
        &self,
        request: Request<pb::GetModelRequest>,
    ) -> Reply<pb::GetModelResponse> {
        let name = request.into_inner().name;
        let (profile, version) = convert::model_name_request(&name)?;
        let row = self.get_model(&profile, version, &name).await?;
        Ok(Response::new(pb::GetModelResponse {
            model: Some(convert::model(&row)?),
        }))
    }

    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Reply<pb::ListModelsResponse> {
        let r = request.into_inner();
        let (profile, page) = convert::list_models_request(&r)?;
        let mut rows = self
            .list_models(profile.as_deref(), r.latest_only, page.after, page.limit())
            .await?;
        let next = page.next(&mut rows, |m| [m.id.to_string()]);
        Ok(Response::new(pb::ListModelsResponse {
            models: rows.iter().map(convert::model).collect::<Result<_, _>>()?,
            next_page_token: next,
        }))
    }

    async fn evaluate(&self, request: Request<pb::EvaluateRequest>) -> Reply<pb::EvaluateResponse> {
        let r = request.into_inner();
        let call = self.evaluate_call(r)?;
        Ok(Response::new(call.await?))
    }

    async fn start_evaluation(
        &self,
        request: Request<pb::StartEvaluationRequest>,
    ) -> Reply<Operation> {
        let caller = request.extensions().get::<Principal>().cloned();
        let r = request.into_inner().request.unwrap_or_default();
        let target = if r.profile.is_empty() {
            GLOBAL_TARGET.to_string()
        } else {
            r.profile.clone()
        };
        let call = self
            .evaluate_call(r)
            .map_err(|e| operations::nested("request", e))?;
        let op = operations::start(
            &self.store,
            "evaluate",
            &target,
            caller.as_ref(),
            Role::Read,
            "vitals.learner.v1.EvaluateResponse",
            call,
        )
        .await?;
        Ok(Response::new(op))
    }

    async fn predict_churn(
        &self,
        request: Request<pb::PredictChurnRequest>,
    ) -> Reply<pb::PredictChurnResponse> {
        let r = request.into_inner();
        convert::predict_request(&r.account_ids)?;
        let as_of = as_of("as_of", r.as_of.as_ref())?;
        let ids = r.account_ids.clone();
        let predictions = self.predict(r.account_ids, as_of).await?;
        Ok(Response::new(convert::predict_response(ids, predictions)))
    }

    async fn get_drift_report(
        &self,
        request: Request<pb::GetDriftReportRequest>,
    ) -> Reply<pb::GetDriftReportResponse> {
        let profile = convert::profile_name("profile", &request.get_ref().profile)?;
        let report = self.drift_report(profile).await?;
        Ok(Response::new(convert::drift_report(
            &report,
            self.args.retrain_after_outcomes,
            self.args.retrain_psi_threshold,
        )))
    }
}
