//! The tonic adapter of the scoring service: proto in, domain call, proto out.

use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};
use vitals_proto::scoring::v1 as pb;

use crate::convert;
use crate::domain::compute::BandChange;
use crate::domain::read;
use crate::{ScoringService, WATCH_BUFFER};

type BoxStream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Buffer between the broadcast and one client's stream.
const CLIENT_BUFFER: usize = 256;

#[tonic::async_trait]
impl pb::scoring_service_server::ScoringService for ScoringService {
    type WatchScoresStream = BoxStream<pb::WatchScoresResponse>;

    async fn compute_scores(
        &self,
        request: Request<pb::ComputeScoresRequest>,
    ) -> Result<Response<pb::ComputeScoresResponse>, Status> {
        let (scope, as_of) = convert::compute_request(request.get_ref(), chrono::Utc::now())?;
        let r = self.compute(scope, as_of).await?;
        vitals_server::metrics::scores_computed("request", u64::from(r.scored));
        Ok(Response::new(convert::compute_response(&r)))
    }

    async fn get_score(
        &self,
        request: Request<pb::GetScoreRequest>,
    ) -> Result<Response<pb::GetScoreResponse>, Status> {
        let q = convert::score_query(request.get_ref())?;
        let s = read::get_score(&self.inner, &q).await?;
        Ok(Response::new(convert::score_response(&s)))
    }

    async fn list_scores(
        &self,
        request: Request<pb::ListScoresRequest>,
    ) -> Result<Response<pb::ListScoresResponse>, Status> {
        let (q, full, fp) = convert::list_query(request.get_ref())?;
        let (rows, total) = read::list_scores(&self.inner, &q).await?;
        Ok(Response::new(convert::list_response(
            &q, full, fp, &rows, total,
        )))
    }

    async fn get_score_history(
        &self,
        request: Request<pb::GetScoreHistoryRequest>,
    ) -> Result<Response<pb::GetScoreHistoryResponse>, Status> {
        let (q, full, fp) = convert::history_query(request.get_ref())?;
        let rows = read::history(&self.inner, &q).await?;
        Ok(Response::new(convert::history_response(
            &q, full, fp, &rows,
        )))
    }

    async fn get_distribution(
        &self,
        request: Request<pb::GetDistributionRequest>,
    ) -> Result<Response<pb::GetDistributionResponse>, Status> {
        let q = convert::distribution_query(request.get_ref())?;
        let latest = read::distribution(&self.inner, q).await?;
        Ok(Response::new(convert::distribution_response(&latest)))
    }

    async fn explain_score(
        &self,
        request: Request<pb::ExplainScoreRequest>,
    ) -> Result<Response<pb::ExplainScoreResponse>, Status> {
        let q = convert::explain_query(request.get_ref())?;
        let e = read::explain(&self.inner, &q).await?;
        Ok(Response::new(convert::explain_response(&e)))
    }

    async fn watch_scores(
        &self,
        request: Request<pb::WatchScoresRequest>,
    ) -> Result<Response<Self::WatchScoresStream>, Status> {
        let filter = convert::watch_filter(request.get_ref())?;
        let mut rx = self.subscribe();
        let (tx, out) =
            tokio::sync::mpsc::channel::<Result<pb::WatchScoresResponse, Status>>(CLIENT_BUFFER);
        tokio::spawn(async move {
            loop {
                let msg = match rx.recv().await {
                    Ok(c) => c,
                    Err(RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Err(Status::resource_exhausted(format!(
                                "client fell more than {WATCH_BUFFER} band changes behind ({n} dropped); reconnect and catch up with ListScores"
                            ))))
                            .await;
                        return;
                    }
                    Err(RecvError::Closed) => {
                        let _ = tx
                            .send(Err(Status::unavailable(
                                "the scoring service is shutting down",
                            )))
                            .await;
                        return;
                    }
                };
                let msg: Arc<BandChange> = msg;
                if filter.matches(&msg) && tx.send(Ok(convert::change(&msg))).await.is_err() {
                    return; // the client went away
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }

    async fn list_kpis(
        &self,
        request: Request<pb::ListKpisRequest>,
    ) -> Result<Response<pb::ListKpisResponse>, Status> {
        let filter = convert::kpi_filter(request.get_ref())?;
        let kpis = read::list_kpis(&self.inner).await?;
        Ok(Response::new(convert::kpis_response(&kpis, filter)))
    }
}
