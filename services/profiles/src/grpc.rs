//! The tonic adapter of the profiles service: proto in, domain call, proto out.

use tonic::{Request, Response, Status};
use vitals_proto::profiles::v1 as pb;
use vitals_server::ApiError;
use vitals_server::paging::{OffsetPage, PageLimits};

use crate::ProfilesService;
use crate::assign::{self, Move, RunOptions, Scope, Selector};
use crate::convert::{self, profile_pb, requests, scorecard_pb};
use crate::domain::{profiles, scorecards};
use crate::rules::Rule;

type Reply<T> = Result<Response<T>, Status>;

/// Most moves a ReassignAccounts response lists.
const MAX_LISTED_MOVES: usize = 100_000;

/// Exactly one of ids and filter, validated.
fn selector(ids: Vec<String>, filter: &str) -> Result<Selector, ApiError> {
    match (ids.is_empty(), filter.is_empty()) {
        (false, false) | (true, true) => Err(ApiError::invalid(
            "account_ids",
            "set exactly one of account_ids and filter",
        )),
        (false, true) => {
            profiles::check_account_ids("account_ids", &ids)?;
            Ok(Selector::Ids(ids))
        }
        (true, false) => Ok(Selector::Filter(Rule::compile("filter", filter)?)),
    }
}

fn move_pb(m: Move) -> pb::AccountMove {
    pb::AccountMove {
        account_id: m.account_id,
        from_profile: m.from.map(|p| format!("profiles/{p}")).unwrap_or_default(),
        to_profile: format!("profiles/{}", m.to),
    }
}

#[tonic::async_trait]
impl pb::profiles_service_server::ProfilesService for ProfilesService {
    async fn create_health_profile(
        &self,
        request: Request<pb::CreateHealthProfileRequest>,
    ) -> Reply<pb::CreateHealthProfileResponse> {
        let (id, fields) = requests::create_profile(request.into_inner())?;
        let p = profiles::create(&self.store, id, fields).await?;
        Ok(Response::new(pb::CreateHealthProfileResponse {
            health_profile: Some(profile_pb(&p)),
        }))
    }

    async fn get_health_profile(
        &self,
        request: Request<pb::GetHealthProfileRequest>,
    ) -> Reply<pb::GetHealthProfileResponse> {
        let p = profiles::get(&self.store, &request.into_inner().name).await?;
        Ok(Response::new(pb::GetHealthProfileResponse {
            health_profile: Some(profile_pb(&p)),
        }))
    }

    async fn list_health_profiles(
        &self,
        request: Request<pb::ListHealthProfilesRequest>,
    ) -> Reply<pb::ListHealthProfilesResponse> {
        let r = request.into_inner();
        let page = OffsetPage::decode(PageLimits::STANDARD, r.page_size, &r.page_token, 0)?;
        let (page, next) = profiles::list(&self.store, page).await?;
        Ok(Response::new(pb::ListHealthProfilesResponse {
            health_profiles: page.iter().map(profile_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn update_health_profile(
        &self,
        request: Request<pb::UpdateHealthProfileRequest>,
    ) -> Reply<pb::UpdateHealthProfileResponse> {
        let (id, patch) = requests::update_profile(request.into_inner())?;
        let p = profiles::update(&self.store, id, patch).await?;
        Ok(Response::new(pb::UpdateHealthProfileResponse {
            health_profile: Some(profile_pb(&p)),
        }))
    }

    async fn delete_health_profile(
        &self,
        request: Request<pb::DeleteHealthProfileRequest>,
    ) -> Reply<pb::DeleteHealthProfileResponse> {
        let n = profiles::delete(&self.store, &request.into_inner().name).await?;
        Ok(Response::new(pb::DeleteHealthProfileResponse {
            reassigned_count: n as u32,
        }))
    }

    async fn create_profile_cross_product(
        &self,
        request: Request<pb::CreateProfileCrossProductRequest>,
    ) -> Reply<pb::CreateProfileCrossProductResponse> {
        let planned = requests::cross_product(request.get_ref())?;
        let created = profiles::cross_product(&self.store, planned).await?;
        Ok(Response::new(pb::CreateProfileCrossProductResponse {
            health_profiles: created.iter().map(profile_pb).collect(),
        }))
    }

    async fn assign_accounts(
        &self,
        request: Request<pb::AssignAccountsRequest>,
    ) -> Reply<pb::AssignAccountsResponse> {
        let r = request.into_inner();
        let profile = profiles::profile_id_of("profile", &r.profile)?;
        let sel = selector(r.account_ids, &r.filter)?;
        let (assigned, moved) = assign::pin_accounts(&self.store, &profile, sel).await?;
        Ok(Response::new(pb::AssignAccountsResponse {
            assigned_count: assigned as u32,
            moved_count: moved as u32,
        }))
    }

    async fn unpin_accounts(
        &self,
        request: Request<pb::UnpinAccountsRequest>,
    ) -> Reply<pb::UnpinAccountsResponse> {
        let r = request.into_inner();
        let sel = selector(r.account_ids, &r.filter)?;
        let (unpinned, moved) = assign::unpin_accounts(&self.store, sel).await?;
        Ok(Response::new(pb::UnpinAccountsResponse {
            unpinned_count: unpinned as u32,
            moved_count: moved as u32,
        }))
    }

    async fn reassign_accounts(
        &self,
        request: Request<pb::ReassignAccountsRequest>,
    ) -> Reply<pb::ReassignAccountsResponse> {
        let r = request.into_inner();
        let max_moves = match r.max_moves {
            ..0 => {
                return Err(ApiError::invalid("max_moves", "must not be negative").into());
            }
            0 => 1000,
            n => (n as usize).min(MAX_LISTED_MOVES),
        };
        let report = assign::reassign(
            &self.store,
            RunOptions {
                scope: Scope::All,
                dry_run: r.dry_run,
                max_moves,
            },
        )
        .await?;
        Ok(Response::new(pb::ReassignAccountsResponse {
            evaluated_count: report.evaluated as u32,
            moved_count: report.moved as u32,
            pinned_count: report.pinned as u32,
            moves: report.moves.into_iter().map(move_pb).collect(),
            moves_truncated: report.truncated,
            dry_run: r.dry_run,
        }))
    }

    async fn get_account_profile(
        &self,
        request: Request<pb::GetAccountProfileRequest>,
    ) -> Reply<pb::GetAccountProfileResponse> {
        let id = requests::account_profile_request(request.get_ref())?;
        let a = profiles::account_profile(&self.store, id).await?;
        Ok(Response::new(requests::account_profile_pb(a)))
    }

    async fn get_population_report(
        &self,
        _request: Request<pb::GetPopulationReportRequest>,
    ) -> Reply<pb::GetPopulationReportResponse> {
        let p = profiles::population(&self.store).await?;
        Ok(Response::new(requests::population_pb(p)))
    }

    async fn create_scorecard(
        &self,
        request: Request<pb::CreateScorecardRequest>,
    ) -> Reply<pb::CreateScorecardResponse> {
        let (id, fields) = requests::create_scorecard(request.into_inner())?;
        let s = scorecards::create(&self.store, id, fields).await?;
        Ok(Response::new(pb::CreateScorecardResponse {
            scorecard: Some(scorecard_pb(&s)),
        }))
    }

    async fn get_scorecard(
        &self,
        request: Request<pb::GetScorecardRequest>,
    ) -> Reply<pb::GetScorecardResponse> {
        let s = scorecards::get(&self.store, &request.into_inner().name).await?;
        Ok(Response::new(pb::GetScorecardResponse {
            scorecard: Some(scorecard_pb(&s)),
        }))
    }

    async fn list_scorecards(
        &self,
        request: Request<pb::ListScorecardsRequest>,
    ) -> Reply<pb::ListScorecardsResponse> {
        let r = request.into_inner();
        let (filter, page) = convert::scorecard_list(r)?;
        let (page, next) = scorecards::list(&self.store, &filter, page).await?;
        Ok(Response::new(pb::ListScorecardsResponse {
            scorecards: page.iter().map(scorecard_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn update_scorecard(
        &self,
        request: Request<pb::UpdateScorecardRequest>,
    ) -> Reply<pb::UpdateScorecardResponse> {
        let (id, patch) = requests::update_scorecard(request.into_inner())?;
        let s = scorecards::update(&self.store, id, patch).await?;
        Ok(Response::new(pb::UpdateScorecardResponse {
            scorecard: Some(scorecard_pb(&s)),
        }))
    }

    async fn delete_scorecard(
        &self,
        request: Request<pb::DeleteScorecardRequest>,
    ) -> Reply<pb::DeleteScorecardResponse> {
        scorecards::delete(&self.store, &request.into_inner().name).await?;
        Ok(Response::new(pb::DeleteScorecardResponse {}))
    }

    async fn reorder_scorecards(
        &self,
        request: Request<pb::ReorderScorecardsRequest>,
    ) -> Reply<pb::ReorderScorecardsResponse> {
        let all = scorecards::reorder(&self.store, &request.into_inner().names).await?;
        Ok(Response::new(pb::ReorderScorecardsResponse {
            scorecards: all.iter().map(scorecard_pb).collect(),
        }))
    }

    async fn preview_scorecard(
        &self,
        request: Request<pb::PreviewScorecardRequest>,
    ) -> Reply<pb::PreviewScorecardResponse> {
        Ok(Response::new(self.preview(request.into_inner()).await?))
    }
}
