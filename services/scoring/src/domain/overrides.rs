//! Manual overrides (SetOverride, ClearOverride, ListOverrideAudit) and the override in
//! force next to a computed score (GetScore, ListScores). Overrides live in their own
//! table: snapshots, history, band changes and the learner keep the computed values.

use std::collections::HashMap;

use vitals_server::ApiError;
use vitals_store::overrides::{self as so, AuditEntry, Override};
use vitals_store::scoring as ss;

use crate::Inner;
use crate::error::Result;

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Sets `o` (account and scorecard inside): the account must have a score for the
/// scorecard.
pub(crate) async fn set(inner: &Inner, o: Override) -> Result<Override> {
    if ss::snapshot_at(&inner.store, &o.account_id, &o.scorecard_id, None)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound(format!(
            "score of account \"{}\" for scorecards/{}",
            o.account_id, o.scorecard_id
        ))
        .into());
    }
    so::set_override(&inner.store, &o).await?;
    // Cached scores hold the override read with them.
    inner.latest.invalidate();
    Ok(o)
}

/// What a ClearOverride asks.
#[derive(Clone, Debug, PartialEq)]
pub struct Clear {
    /// The account.
    pub account_id: String,
    /// The scorecard id.
    pub scorecard_id: String,
    /// Why.
    pub reason_code: String,
    /// Note.
    pub note: String,
    /// Who.
    pub actor: String,
}

/// Clears an override; NOT_FOUND when there is none.
pub(crate) async fn clear(inner: &Inner, c: &Clear) -> Result<()> {
    let found = so::clear_override(
        &inner.store,
        &c.account_id,
        &c.scorecard_id,
        &c.reason_code,
        &c.note,
        &c.actor,
        now_ms(),
    )
    .await?;
    inner.latest.invalidate();
    if !found {
        return Err(ApiError::NotFound(format!(
            "override of account \"{}\" for scorecards/{}",
            c.account_id, c.scorecard_id
        ))
        .into());
    }
    Ok(())
}

/// The overrides in force now of these (account, scorecard id) pairs.
pub(crate) async fn active(
    inner: &Inner,
    keys: &[(String, String)],
) -> Result<HashMap<(String, String), Override>> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(so::active_overrides(&inner.store, keys, now_ms()).await?)
}

/// A page of the audit trail and the total.
pub(crate) async fn audit(
    inner: &Inner,
    account: Option<&str>,
    offset: u64,
    limit: u64,
) -> Result<(Vec<AuditEntry>, u64)> {
    Ok(so::list_audit(&inner.store, account, offset, limit).await?)
}
