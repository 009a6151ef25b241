//! The profiles service's requests decoded into the domain's terms, and its domain
//! answers encoded as responses (the messages of `convert` are the resources).

use std::collections::HashSet;

use vitals_proto::profiles::v1 as pb;
use vitals_server::ApiError;
use vitals_store::profiles::{AssignmentSource, ProfileRecord, ScorecardRecord};

use super::{
    ProfileFields, ScorecardFields, apply_profile_mask, apply_scorecard_mask, check_id, parse_name,
    profile_fields, profile_pb, scorecard_fields, scorecard_pb, slug_id, timestamp,
};
use crate::domain::profiles::{
    AccountProfile, MAX_COMBINATIONS, MAX_DIMENSION_VALUES, MAX_DIMENSIONS, PlannedProfile,
    Population, ProfilePatch,
};
use crate::domain::scorecards::{RESERVED_IDS, ScorecardPatch};
use crate::rules::Rule;

/// A CreateHealthProfile request: the id asked for (derived from the name when `None`)
/// and the validated fields.
pub fn create_profile(
    req: pb::CreateHealthProfileRequest,
) -> Result<(Option<String>, ProfileFields), ApiError> {
    let p = req
        .health_profile
        .ok_or_else(|| ApiError::invalid("health_profile", "required"))?;
    let fields = profile_fields("health_profile", &p)?;
    let id = if req.profile_id.is_empty() {
        None
    } else {
        check_id("profile_id", &req.profile_id)?;
        Some(req.profile_id)
    };
    Ok((id, fields))
}

/// An UpdateHealthProfile request: the profile's id and how it changes the stored one
/// (the request's fields named by the mask, over the stored fields, validated).
pub fn update_profile(
    req: pb::UpdateHealthProfileRequest,
) -> Result<(String, ProfilePatch), ApiError> {
    let p = req
        .health_profile
        .ok_or_else(|| ApiError::invalid("health_profile", "required"))?;
    let id = parse_name("health_profile.name", "profiles", &p.name)?.to_string();
    let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
    let patch: ProfilePatch = Box::new(move |existing: &ProfileRecord| {
        let mut merged = profile_pb(existing);
        apply_profile_mask(&mut merged, &p, &paths)?;
        profile_fields("health_profile", &merged)
    });
    Ok((id, patch))
}

/// An UpdateScorecard request: the scorecard's id and how it changes the stored one.
pub fn update_scorecard(
    req: pb::UpdateScorecardRequest,
) -> Result<(String, ScorecardPatch), ApiError> {
    let s = req
        .scorecard
        .ok_or_else(|| ApiError::invalid("scorecard", "required"))?;
    let id = parse_name("scorecard.name", "scorecards", &s.name)?.to_string();
    let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
    let patch: ScorecardPatch = Box::new(move |existing: &ScorecardRecord| {
        let mut merged = scorecard_pb(existing);
        apply_scorecard_mask(&mut merged, &s, &paths)?;
        scorecard_fields("scorecard", &merged, false)
    });
    Ok((id, patch))
}

/// A CreateScorecard request: the id asked for (derived from the name when `None`;
/// reserved ids refused) and the validated fields.
pub fn create_scorecard(
    req: pb::CreateScorecardRequest,
) -> Result<(Option<String>, ScorecardFields), ApiError> {
    let s = req
        .scorecard
        .ok_or_else(|| ApiError::invalid("scorecard", "required"))?;
    let fields = scorecard_fields("scorecard", &s, false)?;
    if req.scorecard_id.is_empty() {
        return Ok((None, fields));
    }
    check_id("scorecard_id", &req.scorecard_id)?;
    if RESERVED_IDS.contains(&req.scorecard_id.as_str()) {
        return Err(ApiError::invalid(
            "scorecard_id",
            format!("{:?} is reserved", req.scorecard_id),
        ));
    }
    Ok((Some(req.scorecard_id), fields))
}

/// Checks the dimensions of a cross product; returns how many combinations they make.
fn check_dimensions(dims: &[pb::Dimension]) -> Result<usize, ApiError> {
    if dims.is_empty() || dims.len() > MAX_DIMENSIONS {
        return Err(ApiError::invalid(
            "dimensions",
            format!("need 1..{MAX_DIMENSIONS} dimensions, got {}", dims.len()),
        ));
    }
    let mut combos: usize = 1;
    for (i, d) in dims.iter().enumerate() {
        let f = format!("dimensions[{i}]");
        if d.name.is_empty() || d.name.len() > 64 {
            return Err(ApiError::invalid(
                format!("{f}.name"),
                "must be 1..64 bytes",
            ));
        }
        if d.values.is_empty() || d.values.len() > MAX_DIMENSION_VALUES {
            return Err(ApiError::invalid(
                format!("{f}.values"),
                format!(
                    "need 1..{MAX_DIMENSION_VALUES} values, got {}",
                    d.values.len()
                ),
            ));
        }
        let mut labels = HashSet::new();
        for (j, v) in d.values.iter().enumerate() {
            let fv = format!("{f}.values[{j}]");
            if v.label.is_empty() || v.label.len() > 64 || v.label.contains('/') {
                return Err(ApiError::invalid(
                    format!("{fv}.label"),
                    "must be 1..64 bytes without \"/\"",
                ));
            }
            vitals_server::validate::no_nul(&format!("{fv}.label"), &v.label)?;
            vitals_server::validate::no_nul(&format!("{fv}.rule"), &v.rule)?;
            if !labels.insert(v.label.as_str()) {
                return Err(ApiError::invalid(
                    format!("{fv}.label"),
                    format!("duplicate label {:?} in the dimension", v.label),
                ));
            }
            Rule::compile(&format!("{fv}.rule"), &v.rule)?;
        }
        combos = combos.saturating_mul(d.values.len());
    }
    if combos > MAX_COMBINATIONS {
        return Err(ApiError::invalid(
            "dimensions",
            format!("{combos} combinations, more than {MAX_COMBINATIONS}"),
        ));
    }
    Ok(combos)
}

/// The template of a cross product's profiles: its own name, rule, priority and default
/// flag are ignored.
fn cross_product_template(
    req: &pb::CreateProfileCrossProductRequest,
) -> Result<ProfileFields, ApiError> {
    let mut template = req.template.clone().unwrap_or_default();
    template.display_name = "template".into();
    template.assignment_rule.clear();
    template.priority = 0;
    template.is_default = false;
    profile_fields("template", &template)
}

/// A CreateProfileCrossProduct request: the profiles to create, one per combination of
/// the dimensions' values (the last dimension varying fastest), each with its id.
pub fn cross_product(
    req: &pb::CreateProfileCrossProductRequest,
) -> Result<Vec<PlannedProfile>, ApiError> {
    let dims = &req.dimensions;
    let combos = check_dimensions(dims)?;
    let last_priority = i64::from(req.base_priority) + combos as i64 - 1;
    if req.base_priority < 0 || last_priority > 1_000_000 {
        return Err(ApiError::invalid(
            "base_priority",
            format!(
                "the priorities {}..{last_priority} must lie in 0..1000000",
                req.base_priority
            ),
        ));
    }
    if !req.id_prefix.is_empty() && slug_id(&req.id_prefix, 63).is_empty() {
        return Err(ApiError::invalid("id_prefix", "has no letter or digit"));
    }
    let base = cross_product_template(req)?;
    // Odometer over the value indices, the last dimension varying fastest.
    let mut idx = vec![0usize; dims.len()];
    let mut planned = Vec::with_capacity(combos);
    for n in 0..combos {
        let values: Vec<&pb::DimensionValue> =
            dims.iter().zip(&idx).map(|(d, &j)| &d.values[j]).collect();
        let labels: Vec<&str> = values.iter().map(|v| v.label.as_str()).collect();
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
        fields.display_name = labels.join(" / ");
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
    if let Some((id, _)) = planned.iter().find(|(id, _)| !ids.insert(id.clone())) {
        return Err(ApiError::invalid(
            "dimensions",
            format!("two combinations give the same profile id {id:?}"),
        ));
    }
    Ok(planned)
}

/// The account id of a GetAccountProfile request.
pub fn account_profile_request(r: &pb::GetAccountProfileRequest) -> Result<&str, ApiError> {
    let id = r.account_id.as_str();
    if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "account_id",
            "must be 1..256 bytes without control characters",
        ));
    }
    Ok(id)
}

/// The GetAccountProfile response.
pub fn account_profile_pb(a: AccountProfile) -> pb::GetAccountProfileResponse {
    pb::GetAccountProfileResponse {
        account_id: a.account_id,
        profile: format!("profiles/{}", a.profile_id),
        source: match a.source {
            AssignmentSource::Rule => pb::AssignmentSource::Rule,
            AssignmentSource::Default => pb::AssignmentSource::Default,
            AssignmentSource::Pinned => pb::AssignmentSource::Pinned,
        } as i32,
        pinned: a.pinned,
        assign_time: a.assigned_at.map(timestamp),
    }
}

/// The GetPopulationReport response.
pub fn population_pb(p: Population) -> pb::GetPopulationReportResponse {
    pb::GetPopulationReportResponse {
        profiles: p
            .profiles
            .into_iter()
            .map(|e| pb::ProfilePopulation {
                profile: format!("profiles/{}", e.profile_id),
                display_name: e.display_name,
                member_count: e.members,
                pinned_count: e.pinned,
                min_population: e.min_population,
                below_minimum: e.members < e.min_population,
            })
            .collect(),
        total_count: p.total,
        unassigned_count: p.unassigned,
    }
}
