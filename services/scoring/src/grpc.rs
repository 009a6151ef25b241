//! The tonic adapter of the scoring service: proto in, domain call, proto out.

use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};
use vitals_proto::scoring::v1 as pb;

use crate::convert;
use crate::domain::compute::BandChange;
use crate::domain::{overrides, read};
use crate::{ScoringService, WATCH_BUFFER};
use vitals_proto::google::longrunning::Operation;
use vitals_server::auth::{Principal, Role};
use vitals_server::operations;

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

    async fn start_compute_scores(
        &self,
        request: Request<pb::StartComputeScoresRequest>,
    ) -> Result<Response<Operation>, Status> {
        let caller = request.extensions().get::<Principal>().cloned();
        let r = request.into_inner().request.unwrap_or_default();
        let (scope, as_of) = convert::compute_request(&r, chrono::Utc::now())
            .map_err(|e| operations::nested("request", e))?;
        // No account id in the operation (erasure keeps operations): its kind only.
        let target = match &r.scope {
            None => "all".to_string(),
            Some(pb::compute_scores_request::Scope::Profile(p)) => p.clone(),
            Some(pb::compute_scores_request::Scope::AccountId(_)) => "account".to_string(),
        };
        let this = self.clone();
        let op = operations::start(
            &self.inner.store,
            "compute_scores",
            &target,
            caller.as_ref(),
            Role::Admin,
            "vitals.scoring.v1.ComputeScoresResponse",
            async move {
                let r = this.compute(scope, as_of).await?;
                vitals_server::metrics::scores_computed("operation", u64::from(r.scored));
                Ok(convert::compute_response(&r))
            },
        )
        .await?;
        Ok(Response::new(op))
    }

    async fn get_score(
        &self,
        request: Request<pb::GetScoreRequest>,
    ) -> Result<Response<pb::GetScoreResponse>, Status> {
        let q = convert::score_query(request.get_ref())?;
        let s = read::get_score(&self.inner, &q).await?;
        let mut r = convert::score_response(&s);
        // The override in force now, next to the latest computed score (read and cached
        // with it).
        if q.at.is_none()
            && let Some(snap) = r.snapshot.as_mut()
        {
            snap.manual_override = s
                .override_at(overrides::now_ms())
                .map(convert::overrides::manual_override);
        }
        Ok(Response::new(r))
    }

    async fn list_scores(
        &self,
        request: Request<pb::ListScoresRequest>,
    ) -> Result<Response<pb::ListScoresResponse>, Status> {
        let (q, full, fp) = convert::list_query(request.get_ref())?;
        let (rows, total) = read::list_scores(&self.inner, &q).await?;
        let keys: Vec<(String, String)> = rows
            .iter()
            .map(|r| (r.account_id.clone(), r.scorecard_id.clone()))
            .collect();
        let active = overrides::active(&self.inner, &keys).await?;
        let mut r = convert::list_response(&q, full, fp, &rows, total);
        for (snap, key) in r.snapshots.iter_mut().zip(&keys) {
            snap.manual_override = active.get(key).map(convert::overrides::manual_override);
        }
        Ok(Response::new(r))
    }

    async fn set_override(
        &self,
        request: Request<pb::SetOverrideRequest>,
    ) -> Result<Response<pb::SetOverrideResponse>, Status> {
        let actor = convert::overrides::actor(request.extensions().get::<Principal>());
        let o = convert::overrides::set_request(request.get_ref(), actor)?;
        let o = overrides::set(&self.inner, o).await?;
        Ok(Response::new(pb::SetOverrideResponse {
            manual_override: Some(convert::overrides::manual_override(&o)),
        }))
    }

    async fn clear_override(
        &self,
        request: Request<pb::ClearOverrideRequest>,
    ) -> Result<Response<pb::ClearOverrideResponse>, Status> {
        let actor = convert::overrides::actor(request.extensions().get::<Principal>());
        let c = convert::overrides::clear_request(request.get_ref(), actor)?;
        overrides::clear(&self.inner, &c).await?;
        Ok(Response::new(pb::ClearOverrideResponse {}))
    }

    async fn list_override_audit(
        &self,
        request: Request<pb::ListOverrideAuditRequest>,
    ) -> Result<Response<pb::ListOverrideAuditResponse>, Status> {
        let (account, page) = convert::overrides::audit_request(request.get_ref())?;
        let (rows, total) =
            overrides::audit(&self.inner, account.as_deref(), page.offset, page.size).await?;
        Ok(Response::new(convert::overrides::audit_response(
            &page, &rows, total,
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
