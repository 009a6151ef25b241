//! Scorecards: create, read, update, list, delete, reorder.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use vitals_server::ApiError;
use vitals_server::paging::OffsetPage;
use vitals_store::Store;
use vitals_store::profiles::{self as sp, ScorecardRecord};

use crate::convert::{ScorecardFields, parse_name, slug_id};
use crate::error::Result;

/// Scorecard ids that cannot be created (`profile` is the built-in profile score).
pub const RESERVED_IDS: [&str; 2] = ["profile", "global"];

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("scorecard \"scorecards/{id}\""))
}

/// Creates a scorecard with `id` (derived from its name when `None`) at the end of the
/// display order.
pub async fn create(
    store: &Store,
    id: Option<String>,
    fields: ScorecardFields,
) -> Result<ScorecardRecord> {
    let txn = store.begin_write().await?;
    let existing = sp::load_scorecards(&txn).await?;
    let taken: HashSet<&str> = existing.iter().map(|s| s.id.as_str()).collect();
    let id = match id {
        None => {
            let base = slug_id(&fields.display_name, 58);
            let free = |id: &str| !taken.contains(id) && !RESERVED_IDS.contains(&id);
            if free(&base) {
                base
            } else {
                (2..)
                    .map(|n| format!("{base}-{n}"))
                    .find(|id| free(id))
                    .unwrap_or(base)
            }
        }
        Some(id) if taken.contains(id.as_str()) => {
            return Err(ApiError::AlreadyExists(format!("scorecard \"scorecards/{id}\"")).into());
        }
        Some(id) => id,
    };
    let order = existing
        .iter()
        .map(|s| s.display_order + 1)
        .max()
        .unwrap_or(0);
    let now = Utc::now();
    let record = fields.into_record(id, order, now, now);
    sp::insert_scorecard(&txn, &record).await?;
    txn.commit().await?;
    Ok(record)
}

/// One scorecard by resource name.
pub async fn get(store: &Store, name: &str) -> Result<ScorecardRecord> {
    let id = parse_name("name", "scorecards", name)?;
    Ok(sp::get_scorecard(store, id)
        .await?
        .ok_or_else(|| not_found(id))?)
}

/// A page of scorecards in display order, filtered by tags (any of) and enabled.
pub async fn list(
    store: &Store,
    filter: &ScorecardFilter,
    page: OffsetPage,
) -> Result<(Vec<ScorecardRecord>, String)> {
    let all: Vec<ScorecardRecord> = sp::load_scorecards(store)
        .await?
        .into_iter()
        .filter(|s| !filter.enabled_only || s.enabled)
        .filter(|s| filter.tags.is_empty() || s.tags.iter().any(|t| filter.tags.contains(t)))
        .collect();
    Ok(page.of(&all))
}

/// Which scorecards ListScorecards returns.
#[derive(Clone, Debug, Default)]
pub struct ScorecardFilter {
    /// Only scorecards with any of these tags (all when empty).
    pub tags: Vec<String>,
    /// Only enabled scorecards.
    pub enabled_only: bool,
}

/// How an update changes a stored scorecard: its new fields (made by `convert` from the
/// request's fields under its mask, over the stored ones).
pub type ScorecardPatch =
    Box<dyn FnOnce(&ScorecardRecord) -> Result<ScorecardFields, ApiError> + Send>;

/// Updates scorecard `id` with `patch`.
pub async fn update(store: &Store, id: String, patch: ScorecardPatch) -> Result<ScorecardRecord> {
    let txn = store.begin_write().await?;
    let existing = sp::get_scorecard(&txn, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let fields = patch(&existing)?;
    let record = fields.into_record(id, existing.display_order, existing.created_at, Utc::now());
    sp::update_scorecard(&txn, &record).await?;
    txn.commit().await?;
    Ok(record)
}

/// Deletes a scorecard and closes the gap in the display order.
pub async fn delete(store: &Store, name: &str) -> Result<()> {
    let id = parse_name("name", "scorecards", name)?;
    let txn = store.begin_write().await?;
    if !sp::delete_scorecard(&txn, id).await? {
        return Err(not_found(id).into());
    }
    let rest: Vec<String> = sp::load_scorecards(&txn)
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    sp::set_display_order(&txn, &rest).await?;
    txn.commit().await?;
    Ok(())
}

/// Sets the display order of every scorecard.
pub async fn reorder(store: &Store, names: &[String]) -> Result<Vec<ScorecardRecord>> {
    let mut ids = Vec::with_capacity(names.len());
    let mut seen = HashSet::new();
    for (i, n) in names.iter().enumerate() {
        let id = parse_name(&format!("names[{i}]"), "scorecards", n)?;
        if !seen.insert(id) {
            return Err(
                ApiError::invalid(format!("names[{i}]"), format!("{n:?} is listed twice")).into(),
            );
        }
        ids.push(id.to_string());
    }
    let txn = store.begin_write().await?;
    let existing = sp::load_scorecards(&txn).await?;
    let known: HashMap<&str, ()> = existing.iter().map(|s| (s.id.as_str(), ())).collect();
    if let Some((i, id)) = ids
        .iter()
        .enumerate()
        .find(|(_, id)| !known.contains_key(id.as_str()))
    {
        return Err(
            ApiError::NotFound(format!("names[{i}]: scorecard \"scorecards/{id}\"")).into(),
        );
    }
    if let Some(missing) = existing.iter().find(|s| !seen.contains(s.id.as_str())) {
        return Err(ApiError::invalid(
            "names",
            format!(
                "must list every scorecard exactly once; scorecards/{} is missing",
                missing.id
            ),
        )
        .into());
    }
    sp::set_display_order(&txn, &ids).await?;
    let out = sp::load_scorecards(&txn).await?;
    txn.commit().await?;
    Ok(out)
}
