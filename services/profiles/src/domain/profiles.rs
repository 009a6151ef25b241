//! Health profiles: create, read, update, list, cross products, population report and
//! the assignment of one account.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use vitals_server::ApiError;
use vitals_server::paging::OffsetPage;
use vitals_store::Store;
use vitals_store::profiles::{self as sp, AssignmentSource, ProfileRecord};

use crate::assign::{self, ensure_default_profile};
use crate::convert::{ProfileFields, check_id, parse_name, slug_id};
use crate::error::Result;

/// Most dimensions of a cross product.
pub const MAX_DIMENSIONS: usize = 4;
/// Most values per dimension.
pub const MAX_DIMENSION_VALUES: usize = 20;
/// Most profiles one cross product creates.
pub const MAX_COMBINATIONS: usize = 100;

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("profile \"profiles/{id}\""))
}

/// A free id derived from `name`, with a numeric suffix if taken.
fn derive_id(name: &str, taken: &HashSet<String>, reserved: &[&str]) -> String {
    let base = slug_id(name, 58);
    let free = |id: &str| !taken.contains(id) && !reserved.contains(&id);
    if free(&base) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|id| free(id))
        .unwrap_or(base)
}

/// Creates a profile with `id` (derived from its name when `None`).
pub async fn create(
    store: &Store,
    id: Option<String>,
    fields: ProfileFields,
) -> Result<ProfileRecord> {
    ensure_default_profile(store).await?;
    let txn = store.begin_write().await?;
    let existing = sp::load_profiles(&txn).await?;
    let taken: HashSet<String> = existing.iter().map(|p| p.id.clone()).collect();
    let id = match id {
        None => derive_id(&fields.display_name, &taken, &[]),
        Some(id) if taken.contains(&id) => {
            return Err(ApiError::AlreadyExists(format!("profile \"profiles/{id}\"")).into());
        }
        Some(id) => id,
    };
    let now = Utc::now();
    let record = fields.into_record(id, now, now);
    if record.is_default {
        sp::clear_default_except(&txn, &record.id).await?;
    }
    sp::insert_profile(&txn, &record).await?;
    txn.commit().await?;
    tracing::info!(profile = %record.id, "health profile created");
    Ok(record)
}

/// One profile by resource name.
pub async fn get(store: &Store, name: &str) -> Result<ProfileRecord> {
    let id = parse_name("name", "profiles", name)?;
    ensure_default_profile(store).await?;
    Ok(sp::get_profile(store, id)
        .await?
        .ok_or_else(|| not_found(id))?)
}

/// A page of profiles in evaluation order.
pub async fn list(store: &Store, page: OffsetPage) -> Result<(Vec<ProfileRecord>, String)> {
    ensure_default_profile(store).await?;
    let all = sp::load_profiles(store).await?;
    Ok(page.of(&all))
}

/// How an update changes a stored profile: its new fields (made by `convert` from the
/// request's fields under its mask, over the stored ones).
pub type ProfilePatch = Box<dyn FnOnce(&ProfileRecord) -> Result<ProfileFields, ApiError> + Send>;

/// Updates profile `id` with `patch`.
pub async fn update(store: &Store, id: String, patch: ProfilePatch) -> Result<ProfileRecord> {
    ensure_default_profile(store).await?;
    let txn = store.begin_write().await?;
    let existing = sp::get_profile(&txn, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let fields = patch(&existing)?;
    if existing.is_default && !fields.is_default {
        return Err(ApiError::invalid(
            "health_profile.is_default",
            "cannot be cleared on the default profile: set is_default on another profile instead",
        )
        .into());
    }
    let record = fields.into_record(id, existing.created_at, Utc::now());
    if record.is_default && !existing.is_default {
        sp::clear_default_except(&txn, &record.id).await?;
    }
    sp::update_profile(&txn, &record).await?;
    txn.commit().await?;
    Ok(record)
}

/// Deletes a profile and reassigns its members; returns how many were reassigned.
pub async fn delete(store: &Store, name: &str) -> Result<usize> {
    let id = parse_name("name", "profiles", name)?;
    ensure_default_profile(store).await?;
    assign::delete_profile(store, id).await
}

/// A profile a cross product creates: its id and fields.
pub type PlannedProfile = (String, ProfileFields);

/// Creates the profiles of a cross product (planned by `convert`) in one transaction;
/// none is created when any id is taken.
pub async fn cross_product(
    store: &Store,
    planned: Vec<PlannedProfile>,
) -> Result<Vec<ProfileRecord>> {
    ensure_default_profile(store).await?;
    let txn = store.begin_write().await?;
    let taken: HashSet<String> = sp::load_profiles(&txn)
        .await?
        .into_iter()
        .map(|p| p.id)
        .collect();
    if let Some((id, _)) = planned.iter().find(|(id, _)| taken.contains(id)) {
        return Err(ApiError::AlreadyExists(format!(
            "profile \"profiles/{id}\" (nothing was created)"
        ))
        .into());
    }
    let now = Utc::now();
    let mut out = Vec::with_capacity(planned.len());
    for (id, fields) in planned {
        let record = fields.into_record(id, now, now);
        sp::insert_profile(&txn, &record).await?;
        out.push(record);
    }
    txn.commit().await?;
    tracing::info!(profiles = out.len(), "cross-product profiles created");
    Ok(out)
}

/// How many accounts one profile has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfilePopulation {
    /// The profile.
    pub profile_id: String,
    /// Its display name.
    pub display_name: String,
    /// Its members.
    pub members: u32,
    /// Its pinned members.
    pub pinned: u32,
    /// Its minimum population (at least 1).
    pub min_population: u32,
}

/// The population report: members per profile, in evaluation order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Population {
    /// One entry per profile.
    pub profiles: Vec<ProfilePopulation>,
    /// Accounts with a profile.
    pub total: u32,
    /// Accounts with none yet.
    pub unassigned: u32,
}

/// The population report.
pub async fn population(store: &Store) -> Result<Population> {
    ensure_default_profile(store).await?;
    let profiles = sp::load_profiles(store).await?;
    let accounts = sp::load_accounts(store).await?;
    let (per, unassigned) = assign::population(&accounts);
    let mut total = 0u32;
    let entries = profiles
        .iter()
        .map(|p| {
            let (members, pinned) = per.get(&p.id).copied().unwrap_or((0, 0));
            total += members as u32;
            ProfilePopulation {
                profile_id: p.id.clone(),
                display_name: p.display_name.clone(),
                members: members as u32,
                pinned: pinned as u32,
                min_population: p.min_population.max(1) as u32,
            }
        })
        .collect();
    Ok(Population {
        profiles: entries,
        total,
        unassigned: unassigned as u32,
    })
}

/// The profile of one account and how it got it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountProfile {
    /// The account.
    pub account_id: String,
    /// Its profile.
    pub profile_id: String,
    /// Why it has this profile.
    pub source: AssignmentSource,
    /// Whether it is pinned there.
    pub pinned: bool,
    /// When it was assigned to this profile, when known.
    pub assigned_at: Option<DateTime<Utc>>,
}

/// The profile of one account and why.
pub async fn account_profile(store: &Store, account_id: &str) -> Result<AccountProfile> {
    let accounts = sp::load_accounts_by_id(store, &[account_id.to_string()]).await?;
    let Some(account) = accounts.into_iter().next() else {
        return Err(ApiError::NotFound(format!("account {account_id:?}")).into());
    };
    let Some(profile) = account.profile_id.clone() else {
        return Err(ApiError::NotFound(format!(
            "profile of account {account_id:?} (not assigned yet)"
        ))
        .into());
    };
    let row = sp::get_assignment(store, account_id).await?;
    let source = if account.pinned {
        AssignmentSource::Pinned
    } else {
        match row
            .as_ref()
            .and_then(|r| AssignmentSource::parse(&r.source))
        {
            Some(AssignmentSource::Pinned) | None => {
                // Assigned by someone else's write (or unpinned since): say what the
                // default flag implies.
                let is_default = sp::get_profile(store, &profile)
                    .await?
                    .is_some_and(|p| p.is_default);
                if is_default {
                    AssignmentSource::Default
                } else {
                    AssignmentSource::Rule
                }
            }
            Some(s) => s,
        }
    };
    Ok(AccountProfile {
        account_id: account.id,
        assigned_at: row
            .filter(|r| r.profile_id == profile)
            .map(|r| r.assigned_at),
        profile_id: profile,
        source,
        pinned: account.pinned,
    })
}

/// Checks a page of an id list request.
pub fn check_account_ids(field: &str, ids: &[String]) -> Result<(), ApiError> {
    if ids.is_empty() || ids.len() > 10_000 {
        return Err(ApiError::invalid(
            field,
            format!("need 1..10000 account ids, got {}", ids.len()),
        ));
    }
    for (i, id) in ids.iter().enumerate() {
        if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                format!("{field}[{i}]"),
                "must be 1..256 bytes without control characters",
            ));
        }
    }
    Ok(())
}

/// The id in a profile resource name (for assignment requests).
pub fn profile_id_of(field: &str, name: &str) -> Result<String, ApiError> {
    let id = parse_name(field, "profiles", name)?;
    check_id(field, id)?;
    Ok(id.to_string())
}
