//! The tonic adapter of the scoring service: proto in, domain call, proto out.

use std::pin::Pin;

use tonic::Status;
use vitals_proto::scoring::v1 as pb;
use vitals_server::not_yet;

use crate::ScoringService;

type BoxStream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::scoring_service_server::ScoringService for ScoringService {
    type WatchScoresStream = BoxStream<pb::WatchScoresResponse>;
    async fn compute_scores(
        &self,
        _request: tonic::Request<pb::ComputeScoresRequest>,
    ) -> std::result::Result<tonic::Response<pb::ComputeScoresResponse>, tonic::Status> {
        Err(not_yet("ComputeScores", "issue 7"))
    }
    async fn get_score(
        &self,
        _request: tonic::Request<pb::GetScoreRequest>,
    ) -> std::result::Result<tonic::Response<pb::GetScoreResponse>, tonic::Status> {
        Err(not_yet("GetScore", "issue 7"))
    }
    async fn list_scores(
        &self,
        _request: tonic::Request<pb::ListScoresRequest>,
    ) -> std::result::Result<tonic::Response<pb::ListScoresResponse>, tonic::Status> {
        Err(not_yet("ListScores", "issue 7"))
    }
    async fn get_score_history(
        &self,
        _request: tonic::Request<pb::GetScoreHistoryRequest>,
    ) -> std::result::Result<tonic::Response<pb::GetScoreHistoryResponse>, tonic::Status> {
        Err(not_yet("GetScoreHistory", "issue 7"))
    }
    async fn get_distribution(
        &self,
        _request: tonic::Request<pb::GetDistributionRequest>,
    ) -> std::result::Result<tonic::Response<pb::GetDistributionResponse>, tonic::Status> {
        Err(not_yet("GetDistribution", "issue 7"))
    }
    async fn explain_score(
        &self,
        _request: tonic::Request<pb::ExplainScoreRequest>,
    ) -> std::result::Result<tonic::Response<pb::ExplainScoreResponse>, tonic::Status> {
        Err(not_yet("ExplainScore", "issue 7"))
    }
    async fn watch_scores(
        &self,
        _request: tonic::Request<pb::WatchScoresRequest>,
    ) -> std::result::Result<tonic::Response<Self::WatchScoresStream>, tonic::Status> {
        Err(not_yet("WatchScores", "issue 7"))
    }
    async fn list_kpis(
        &self,
        _request: tonic::Request<pb::ListKpisRequest>,
    ) -> std::result::Result<tonic::Response<pb::ListKpisResponse>, tonic::Status> {
        Err(not_yet("ListKpis", "issue 7"))
    }
}
