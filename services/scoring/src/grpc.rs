//! The tonic adapter of the scoring service: proto in, domain call, proto out.

use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};
use vitals_proto::scoring::v1 as pb;
use vitals_server::ApiError;

use crate::convert::{self, Scorecards};
use crate::domain::compute::{BandChange, Scope};
use crate::domain::read;
use crate::{ScoringService, WATCH_BUFFER};

type BoxStream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Buffer between the broadcast and one client's stream.
const CLIENT_BUFFER: usize = 256;

fn scope(req: &pb::ComputeScoresRequest) -> Result<Scope, ApiError> {
    Ok(match &req.scope {
        None => Scope::All,
        Some(pb::compute_scores_request::Scope::Profile(p)) => {
            match convert::profile("profile", p)? {
                Some(id) => Scope::Profile(id),
                None => return Err(ApiError::invalid("profile", "required when set")),
            }
        }
        Some(pb::compute_scores_request::Scope::AccountId(a)) => {
            Scope::Account(convert::account_id("account_id", a)?)
        }
    })
}

/// The WatchScores filter.
struct WatchFilter {
    profile: Option<String>,
    bands: Vec<String>,
    scorecard: Option<String>,
}

impl WatchFilter {
    fn matches(&self, c: &BandChange) -> bool {
        self.profile.as_ref().is_none_or(|p| *p == c.profile_id)
            && (self.bands.is_empty() || self.bands.contains(&c.new_band))
            && self.scorecard.as_ref().is_none_or(|s| *s == c.scorecard_id)
    }
}

fn change(c: &BandChange) -> pb::WatchScoresResponse {
    pb::WatchScoresResponse {
        account_id: c.account_id.clone(),
        profile: convert::profile_name(&c.profile_id),
        scorecard: convert::scorecard_name(&c.scorecard_id),
        old_band: convert::band(&c.old_band) as i32,
        new_band: convert::band(&c.new_band) as i32,
        old_value: c.old_value,
        new_value: c.new_value,
        change_time: Some(convert::to_timestamp(c.as_of)),
        run_id: c.run_id.to_string(),
    }
}

#[tonic::async_trait]
impl pb::scoring_service_server::ScoringService for ScoringService {
    type WatchScoresStream = BoxStream<pb::WatchScoresResponse>;

    async fn compute_scores(
        &self,
        request: Request<pb::ComputeScoresRequest>,
    ) -> Result<Response<pb::ComputeScoresResponse>, Status> {
        let req = request.into_inner();
        let scope = scope(&req)?;
        let as_of = match &req.as_of {
            Some(t) => Some(convert::run_as_of("as_of", t, chrono::Utc::now())?),
            None => None,
        };
        let r = self.compute(scope, as_of).await?;
        vitals_server::metrics::scores_computed("request", u64::from(r.scored));
        Ok(Response::new(pb::ComputeScoresResponse {
            run_id: r.run_id.to_string(),
            as_of: Some(convert::to_timestamp(r.as_of)),
            scored_count: r.scored,
            snapshot_count: r.snapshots,
            band_change_count: r.band_changes,
            duration: Some(convert::duration(r.duration)),
            profiles: r
                .profiles
                .iter()
                .map(|p| pb::ProfileRunSummary {
                    profile: convert::profile_name(&p.profile_id),
                    scored_count: p.scored,
                    weights_source: p.source.to_proto() as i32,
                    model: p.model.clone(),
                    population_fallback: p.fallback,
                })
                .collect(),
        }))
    }

    async fn get_score(
        &self,
        request: Request<pb::GetScoreRequest>,
    ) -> Result<Response<pb::GetScoreResponse>, Status> {
        Ok(Response::new(
            read::get_score(&self.inner, request.into_inner()).await?,
        ))
    }

    async fn list_scores(
        &self,
        request: Request<pb::ListScoresRequest>,
    ) -> Result<Response<pb::ListScoresResponse>, Status> {
        Ok(Response::new(
            read::list_scores(&self.inner, request.into_inner()).await?,
        ))
    }

    async fn get_score_history(
        &self,
        request: Request<pb::GetScoreHistoryRequest>,
    ) -> Result<Response<pb::GetScoreHistoryResponse>, Status> {
        Ok(Response::new(
            read::history(&self.inner, request.into_inner()).await?,
        ))
    }

    async fn get_distribution(
        &self,
        request: Request<pb::GetDistributionRequest>,
    ) -> Result<Response<pb::GetDistributionResponse>, Status> {
        Ok(Response::new(
            read::distribution(&self.inner, request.into_inner()).await?,
        ))
    }

    async fn explain_score(
        &self,
        request: Request<pb::ExplainScoreRequest>,
    ) -> Result<Response<pb::ExplainScoreResponse>, Status> {
        Ok(Response::new(
            read::explain(&self.inner, request.into_inner()).await?,
        ))
    }

    async fn watch_scores(
        &self,
        request: Request<pb::WatchScoresRequest>,
    ) -> Result<Response<Self::WatchScoresStream>, Status> {
        let req = request.into_inner();
        let filter = WatchFilter {
            profile: convert::profile("profile", &req.profile)?,
            bands: convert::bands("bands", &req.bands)?,
            scorecard: match convert::scorecard("scorecard", &req.scorecard, true)? {
                Scorecards::One(id) => Some(id),
                Scorecards::All => None,
            },
        };
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
                if filter.matches(&msg) && tx.send(Ok(change(&msg))).await.is_err() {
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
        Ok(Response::new(
            read::list_kpis(&self.inner, request.into_inner()).await?,
        ))
    }
}
