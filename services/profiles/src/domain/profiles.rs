//! Health profiles: create, read, update, list, cross products, population report and
//! the assignment of one account.

use std::collections::HashSet;

use chrono::Utc;
use vitals_proto::profiles::v1 as pb;
use vitals_server::ApiError;
use vitals_server::paging::OffsetPage;
use vitals_store::Store;
use vitals_store::profiles::{self as sp, AssignmentSource, ProfileRecord};

use crate::assign::{self, ensure_default_profile};
use crate::convert::{self, ProfileFields, check_id, parse_name, profile_fields, slug_id};
use crate::error::Result;
use crate::rules::Rule;

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

/// Creates a profile.
pub async fn create(store: &Store, req: pb::CreateHealthProfileRequest) -> Result<ProfileRecord> {
    let p = req
        .health_profile
        .ok_or_else(|| ApiError::invalid("health_profile", "required"))?;
    let fields = profile_fields("health_profile", &p)?;
    ensure_default_profile(store).await?;
    let txn = store.begin_write().await?;
    let existing = sp::load_profiles(&txn).await?;
    let taken: HashSet<String> = existing.iter().map(|p| p.id.clone()).collect();
    let id = if req.profile_id.is_empty() {
        derive_id(&fields.display_name, &taken, &[])
    } else {
        check_id("profile_id", &req.profile_id)?;
        if taken.contains(&req.profile_id) {
            return Err(ApiError::AlreadyExists(format!(
                "profile \"profiles/{}\"",
                req.profile_id
            ))
            .into());
        }
        req.profile_id
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
    Ok(sp::get_profile(store.conn(), id)
        .await?
        .ok_or_else(|| not_found(id))?)
}

/// A page of profiles in evaluation order.
pub async fn list(store: &Store, page: OffsetPage) -> Result<(Vec<ProfileRecord>, String)> {
    ensure_default_profile(store).await?;
    let all = sp::load_profiles(store.conn()).await?;
    Ok(page.of(&all))
}

/// Updates the fields named in the mask.
pub async fn update(store: &Store, req: pb::UpdateHealthProfileRequest) -> Result<ProfileRecord> {
    let p = req
        .health_profile
        .ok_or_else(|| ApiError::invalid("health_profile", "required"))?;
    let id = parse_name("health_profile.name", "profiles", &p.name)?.to_string();
    let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
    ensure_default_profile(store).await?;
    let txn = store.begin_write().await?;
    let existing = sp::get_profile(&txn, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let mut merged = convert::profile_pb(&existing);
    convert::apply_profile_mask(&mut merged, &p, &paths)?;
    let fields: ProfileFields = profile_fields("health_profile", &merged)?;
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

/// Creates the cross product of dimensions in one transaction.
pub async fn cross_product(
    store: &Store,
    req: pb::CreateProfileCrossProductRequest,
) -> Result<Vec<ProfileRecord>> {
    let dims = &req.dimensions;
    if dims.is_empty() || dims.len() > MAX_DIMENSIONS {
        return Err(ApiError::invalid(
            "dimensions",
            format!("need 1..{MAX_DIMENSIONS} dimensions, got {}", dims.len()),
        )
        .into());
    }
    let mut combos: usize = 1;
    for (i, d) in dims.iter().enumerate() {
        let f = format!("dimensions[{i}]");
        if d.name.is_empty() || d.name.len() > 64 {
            return Err(ApiError::invalid(format!("{f}.name"), "must be 1..64 bytes").into());
        }
        if d.values.is_empty() || d.values.len() > MAX_DIMENSION_VALUES {
            return Err(ApiError::invalid(
                format!("{f}.values"),
                format!(
                    "need 1..{MAX_DIMENSION_VALUES} values, got {}",
                    d.values.len()
                ),
            )
            .into());
        }
        let mut labels = HashSet::new();
        for (j, v) in d.values.iter().enumerate() {
            let fv = format!("{f}.values[{j}]");
            if v.label.is_empty() || v.label.len() > 64 || v.label.contains('/') {
                return Err(ApiError::invalid(
                    format!("{fv}.label"),
                    "must be 1..64 bytes without \"/\"",
                )
                .into());
            }
            vitals_server::validate::no_nul(&format!("{fv}.label"), &v.label)?;
            vitals_server::validate::no_nul(&format!("{fv}.rule"), &v.rule)?;
            if !labels.insert(v.label.as_str()) {
                return Err(ApiError::invalid(
                    format!("{fv}.label"),
                    format!("duplicate label {:?} in the dimension", v.label),
                )
                .into());
            }
            Rule::compile(&format!("{fv}.rule"), &v.rule)?;
        }
        combos = combos.saturating_mul(d.values.len());
    }
    if combos > MAX_COMBINATIONS {
        return Err(ApiError::invalid(
            "dimensions",
            format!("{combos} combinations, more than {MAX_COMBINATIONS}"),
        )
        .into());
    }
    let last_priority = i64::from(req.base_priority) + combos as i64 - 1;
    if req.base_priority < 0 || last_priority > 1_000_000 {
        return Err(ApiError::invalid(
            "base_priority",
            format!(
                "the priorities {}..{last_priority} must lie in 0..1000000",
                req.base_priority
            ),
        )
        .into());
    }
    if !req.id_prefix.is_empty() && slug_id(&req.id_prefix, 63).is_empty() {
        return Err(ApiError::invalid("id_prefix", "has no letter or digit").into());
    }
    // The template's own name, rule, priority and default flag are ignored.
    let mut template = req.template.clone().unwrap_or_default();
    template.display_name = "template".into();
    template.assignment_rule.clear();
    template.priority = 0;
    template.is_default = false;
    let base = profile_fields("template", &template)?;

    // Odometer over the value indices, the last dimension varying fastest.
    let mut idx = vec![0usize; dims.len()];
    let mut planned = Vec::with_capacity(combos);
    for n in 0..combos {
        let values: Vec<&pb::DimensionValue> =
            dims.iter().zip(&idx).map(|(d, &j)| &d.values[j]).collect();
        let labels: Vec<&str> = values.iter().map(|v| v.label.as_str()).collect();
        let display_name = labels.join(" / ");
        let mut id_parts: Vec<&str> = Vec::new();
        if !req.id_prefix.is_empty() {
            id_parts.push(&req.id_prefix);
        }
        id_parts.extend(&labels);
        let id = slug_id(&id_parts.join("-"), 63);
        check_id("id_prefix", &id)?;
        let rule = values
            .iter()
            .map(|v| format!("({})", v.rule))
            .collect::<Vec<_>>()
            .join(" && ");
        Rule::compile("dimensions", &rule)?;
        let description = if base.description.is_empty() {
            let parts: Vec<String> = dims
                .iter()
                .zip(&labels)
                .map(|(d, l)| format!("{} = {l}", d.name))
                .collect();
            format!("Cross product: {}", parts.join(", "))
        } else {
            base.description.clone()
        };
        let mut fields = base.clone();
        fields.display_name = display_name;
        fields.description = description;
        fields.rule = rule;
        fields.priority = req.base_priority + n as i32;
        planned.push((id, fields));
        for k in (0..dims.len()).rev() {
            idx[k] += 1;
            if idx[k] < dims[k].values.len() {
                break;
            }
            idx[k] = 0;
        }
    }
    let mut ids = HashSet::new();
    for (id, _) in &planned {
        if !ids.insert(id.clone()) {
            return Err(ApiError::invalid(
                "dimensions",
                format!("two combinations give the same profile id {id:?}"),
            )
            .into());
        }
    }
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

/// The population report.
pub async fn population(store: &Store) -> Result<pb::GetPopulationReportResponse> {
    ensure_default_profile(store).await?;
    let profiles = sp::load_profiles(store.conn()).await?;
    let accounts = sp::load_accounts(store.conn()).await?;
    let (per, unassigned) = assign::population(&accounts);
    let mut total = 0u32;
    let entries = profiles
        .iter()
        .map(|p| {
            let (members, pinned) = per.get(&p.id).copied().unwrap_or((0, 0));
            total += members as u32;
            let min = p.min_population.max(1) as u32;
            pb::ProfilePopulation {
                profile: format!("profiles/{}", p.id),
                display_name: p.display_name.clone(),
                member_count: members as u32,
                pinned_count: pinned as u32,
                min_population: min,
                below_minimum: (members as u32) < min,
            }
        })
        .collect();
    Ok(pb::GetPopulationReportResponse {
        profiles: entries,
        total_count: total,
        unassigned_count: unassigned as u32,
    })
}

/// The profile of one account and why.
pub async fn account_profile(
    store: &Store,
    account_id: &str,
) -> Result<pb::GetAccountProfileResponse> {
    if account_id.is_empty() || account_id.len() > 256 || account_id.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "account_id",
            "must be 1..256 bytes without control characters",
        )
        .into());
    }
    let accounts = sp::load_accounts_by_id(store.conn(), &[account_id.to_string()]).await?;
    let Some(account) = accounts.into_iter().next() else {
        return Err(ApiError::NotFound(format!("account {account_id:?}")).into());
    };
    let Some(profile) = account.profile_id.clone() else {
        return Err(ApiError::NotFound(format!(
            "profile of account {account_id:?} (not assigned yet)"
        ))
        .into());
    };
    let row = sp::get_assignment(store.conn(), account_id).await?;
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
                let is_default = sp::get_profile(store.conn(), &profile)
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
    Ok(pb::GetAccountProfileResponse {
        account_id: account.id,
        profile: format!("profiles/{profile}"),
        source: match source {
            AssignmentSource::Rule => pb::AssignmentSource::Rule,
            AssignmentSource::Default => pb::AssignmentSource::Default,
            AssignmentSource::Pinned => pb::AssignmentSource::Pinned,
        } as i32,
        pinned: account.pinned,
        assign_time: row
            .filter(|r| r.profile_id == profile)
            .map(|r| convert::timestamp(r.assigned_at)),
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
