//! GetScore and ExplainScore: their requests validated into queries, their answers.

use vitals_proto::scoring::v1 as pb;
use vitals_server::ApiError;

use super::{account_id, driver, from_timestamp, one_scorecard, score, scorecard};
use crate::domain::read::{ExplainQuery, Explained, KpiChange, Score, ScoreQuery};

/// The query of a GetScore request.
pub fn score_query(req: &pb::GetScoreRequest) -> Result<ScoreQuery, ApiError> {
    Ok(ScoreQuery {
        account: account_id("account_id", &req.account_id)?,
        scorecard: one_scorecard(scorecard("scorecard", &req.scorecard, false)?),
        at: req
            .as_of
            .as_ref()
            .map(|t| from_timestamp("as_of", t))
            .transpose()?,
    })
}

/// The GetScore answer.
pub fn score_response(s: &Score) -> pb::GetScoreResponse {
    pb::GetScoreResponse {
        snapshot: Some(score(s, true)),
    }
}

/// The query of an ExplainScore request.
pub fn explain_query(req: &pb::ExplainScoreRequest) -> Result<ExplainQuery, ApiError> {
    Ok(ExplainQuery {
        account: account_id("account_id", &req.account_id)?,
        scorecard: one_scorecard(scorecard("scorecard", &req.scorecard, false)?),
        since: req
            .since
            .as_ref()
            .map(|t| from_timestamp("since", t))
            .transpose()?,
    })
}

/// The ExplainScore answer.
pub fn explain_response(e: &Explained) -> pb::ExplainScoreResponse {
    let mut resp = pb::ExplainScoreResponse {
        snapshot: Some(score(&e.score, true)),
        drivers: e.drivers.iter().map(driver).collect(),
        ..Default::default()
    };
    if let Some(c) = &e.change {
        resp.score_change = c.score_change;
        resp.kpi_changes = c.kpi_changes.iter().map(kpi_change).collect();
        resp.other_change = c.other_change;
        resp.baseline = Some(score(&c.baseline, true));
    }
    resp
}

fn kpi_change(c: &KpiChange) -> pb::KpiChange {
    pb::KpiChange {
        kpi: c.kpi.clone(),
        category: c.category,
        before_value: c.before_value,
        after_value: c.after_value,
        before_percentile: c.before_percentile,
        after_percentile: c.after_percentile,
        contribution_change: c.contribution_change,
    }
}
