//! Proto <-> domain of the overrides: SetOverride, ClearOverride, ListOverrideAudit and
//! the `manual_override` of a snapshot.

use vitals_proto::common::v1 as cpb;
use vitals_proto::scoring::v1 as pb;
use vitals_server::ApiError;
use vitals_server::auth::Principal;
use vitals_server::paging::{self, PageLimits};
use vitals_store::overrides::{self as so, AuditEntry, Override};
use vitals_store::values::Band;

use super::{account_id, band, one_scorecard, scorecard, scorecard_name};
use crate::domain::overrides::{Clear, now_ms};

/// Most bytes of a note.
pub const MAX_NOTE_BYTES: usize = 2048;
/// Most characters of a reason code.
pub const MAX_REASON_CHARS: usize = 64;

/// Who made the call: the token's label, `anonymous` with auth off.
pub fn actor(p: Option<&Principal>) -> String {
    p.map_or_else(|| "anonymous".to_string(), |p| p.label.clone())
}

fn reason(field: &str, r: &str) -> Result<String, ApiError> {
    if r.is_empty() || r.len() > MAX_REASON_CHARS {
        return Err(ApiError::invalid(
            field,
            format!("1..{MAX_REASON_CHARS} characters required"),
        ));
    }
    if !r
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(ApiError::invalid(field, "only a-z, 0-9 and _"));
    }
    Ok(r.to_string())
}

fn note(field: &str, n: &str) -> Result<String, ApiError> {
    if n.len() > MAX_NOTE_BYTES {
        return Err(ApiError::invalid(
            field,
            format!("longer than {MAX_NOTE_BYTES} bytes"),
        ));
    }
    vitals_server::validate::no_nul(field, n)?;
    Ok(n.to_string())
}

fn ms(t: &prost_types::Timestamp) -> i64 {
    t.seconds.saturating_mul(1000) + i64::from(t.nanos / 1_000_000)
}

fn ts(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// The override a SetOverride request asks for, set by `actor` now.
pub fn set_request(r: &pb::SetOverrideRequest, actor: String) -> Result<Override, ApiError> {
    let account_id = account_id("account_id", &r.account_id)?;
    let scorecard_id = one_scorecard(scorecard("scorecard", &r.scorecard, false)?);
    let o = r
        .manual_override
        .as_ref()
        .ok_or_else(|| ApiError::invalid("manual_override", "is required"))?;
    let value = match o.value {
        Some(v) if v.is_finite() && (0.0..=10.0).contains(&v) => Some(v),
        Some(_) => {
            return Err(ApiError::invalid(
                "manual_override.value",
                "must be within 0..10",
            ));
        }
        None => None,
    };
    let band_text = match cpb::Band::try_from(o.band) {
        Ok(cpb::Band::Unspecified) => String::new(),
        Ok(cpb::Band::Red) => Band::Red.as_str().to_string(),
        Ok(cpb::Band::Yellow) => Band::Yellow.as_str().to_string(),
        Ok(cpb::Band::Green) => Band::Green.as_str().to_string(),
        Err(_) => return Err(ApiError::invalid("manual_override.band", "unknown band")),
    };
    if value.is_none() && band_text.is_empty() {
        return Err(ApiError::invalid(
            "manual_override",
            "set a value, a band or both",
        ));
    }
    let now = now_ms();
    let expires_ms = match &o.expire_time {
        Some(t) => {
            vitals_server::validate::timestamp("manual_override.expire_time", t)?;
            let at = ms(t);
            if at <= now {
                return Err(ApiError::invalid(
                    "manual_override.expire_time",
                    "must be in the future",
                ));
            }
            Some(at)
        }
        None => None,
    };
    Ok(Override {
        account_id,
        scorecard_id,
        band: band_text,
        value,
        reason_code: reason("manual_override.reason_code", &o.reason_code)?,
        note: note("manual_override.note", &o.note)?,
        set_by: actor,
        set_ms: now,
        expires_ms,
    })
}

/// The ClearOverride a request asks for, by `actor`.
pub fn clear_request(r: &pb::ClearOverrideRequest, actor: String) -> Result<Clear, ApiError> {
    Ok(Clear {
        account_id: account_id("account_id", &r.account_id)?,
        scorecard_id: one_scorecard(scorecard("scorecard", &r.scorecard, false)?),
        reason_code: reason("reason_code", &r.reason_code)?,
        note: note("note", &r.note)?,
        actor,
    })
}

/// An override as proto.
pub fn manual_override(o: &Override) -> pb::ScoreOverride {
    pb::ScoreOverride {
        value: o.value,
        band: band(&o.band) as i32,
        reason_code: o.reason_code.clone(),
        note: o.note.clone(),
        set_by: o.set_by.clone(),
        set_time: Some(ts(o.set_ms)),
        expire_time: o.expires_ms.map(ts),
    }
}

/// The account filter and page of a ListOverrideAudit request.
pub fn audit_request(
    r: &pb::ListOverrideAuditRequest,
) -> Result<(Option<String>, paging::OffsetPage), ApiError> {
    let account = if r.account_id.is_empty() {
        None
    } else {
        Some(account_id("account_id", &r.account_id)?)
    };
    let page = paging::OffsetPage::decode(
        PageLimits::STANDARD,
        r.page_size,
        &r.page_token,
        paging::fingerprint(&[&r.account_id]),
    )?;
    Ok((account, page))
}

/// The ListOverrideAudit answer.
pub fn audit_response(
    page: &paging::OffsetPage,
    rows: &[AuditEntry],
    total: u64,
) -> pb::ListOverrideAuditResponse {
    let end = page.offset.saturating_add(page.size);
    pb::ListOverrideAuditResponse {
        entries: rows
            .iter()
            .map(|e| pb::OverrideAuditEntry {
                account_id: e.account_id.clone(),
                scorecard: scorecard_name(&e.scorecard_id),
                action: if e.action == so::CLEAR {
                    pb::OverrideAction::Clear
                } else {
                    pb::OverrideAction::Set
                } as i32,
                manual_override: Some(pb::ScoreOverride {
                    value: e.value,
                    band: band(&e.band) as i32,
                    reason_code: e.reason_code.clone(),
                    note: e.note.clone(),
                    set_by: e.actor.clone(),
                    set_time: Some(ts(e.at_ms)),
                    expire_time: e.expires_ms.map(ts),
                }),
                actor: e.actor.clone(),
                time: Some(ts(e.at_ms)),
            })
            .collect(),
        next_page_token: if end < total {
            paging::encode_offset(page.filters, end)
        } else {
            String::new()
        },
        total_size: i32::try_from(total).unwrap_or(i32::MAX),
    }
}
