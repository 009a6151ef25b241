//! The tonic adapter of the learner service: proto in, domain call, proto out.

use vitals_proto::learner::v1 as pb;
use vitals_server::not_yet;

use crate::LearnerService;

#[tonic::async_trait]
impl pb::learner_service_server::LearnerService for LearnerService {
    async fn record_outcomes(
        &self,
        _request: tonic::Request<pb::RecordOutcomesRequest>,
    ) -> std::result::Result<tonic::Response<pb::RecordOutcomesResponse>, tonic::Status> {
        Err(not_yet("RecordOutcomes", "issue 6"))
    }
    async fn list_outcomes(
        &self,
        _request: tonic::Request<pb::ListOutcomesRequest>,
    ) -> std::result::Result<tonic::Response<pb::ListOutcomesResponse>, tonic::Status> {
        Err(not_yet("ListOutcomes", "issue 6"))
    }
    async fn train(
        &self,
        _request: tonic::Request<pb::TrainRequest>,
    ) -> std::result::Result<tonic::Response<pb::TrainResponse>, tonic::Status> {
        Err(not_yet("Train", "issue 6"))
    }
    async fn get_weights(
        &self,
        _request: tonic::Request<pb::GetWeightsRequest>,
    ) -> std::result::Result<tonic::Response<pb::GetWeightsResponse>, tonic::Status> {
        Err(not_yet("GetWeights", "issue 6"))
    }
    async fn get_model(
        &self,
        _request: tonic::Request<pb::GetModelRequest>,
    ) -> std::result::Result<tonic::Response<pb::GetModelResponse>, tonic::Status> {
        Err(not_yet("GetModel", "issue 6"))
    }
    async fn list_models(
        &self,
        _request: tonic::Request<pb::ListModelsRequest>,
    ) -> std::result::Result<tonic::Response<pb::ListModelsResponse>, tonic::Status> {
        Err(not_yet("ListModels", "issue 6"))
    }
    async fn evaluate(
        &self,
        _request: tonic::Request<pb::EvaluateRequest>,
    ) -> std::result::Result<tonic::Response<pb::EvaluateResponse>, tonic::Status> {
        Err(not_yet("Evaluate", "issue 6"))
    }
    async fn predict_churn(
        &self,
        _request: tonic::Request<pb::PredictChurnRequest>,
    ) -> std::result::Result<tonic::Response<pb::PredictChurnResponse>, tonic::Status> {
        Err(not_yet("PredictChurn", "issue 6"))
    }
}
