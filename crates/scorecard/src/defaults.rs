//! The default profile: the one accounts no rule matches belong to, created on first
//! start (by the profiles service, and by whoever scores before it ran).

use chrono::{DateTime, Utc};
use vitals_store::Store;
use vitals_store::profiles::{self as sp, ProfileRecord, StoredWeights};

use crate::ScorecardError;

/// Id of the profile created on first start.
pub const DEFAULT_PROFILE_ID: &str = "default";

/// The default profile as created on first start: every category weighs 1 until the
/// learner suggests category weights (weights mode `learned`: its suggestion, shrunk
/// toward these equal weights by the churn outcomes seen, replaces them).
pub fn default_profile(now: DateTime<Utc>) -> ProfileRecord {
    ProfileRecord {
        id: DEFAULT_PROFILE_ID.into(),
        display_name: "Default".into(),
        description: "Accounts that match no other profile's rule.".into(),
        weights: StoredWeights {
            usage: 1.0,
            conversations: 1.0,
            pulse: 1.0,
            contract: 1.0,
            custom_metrics: 1.0,
            custom_score_fields: Default::default(),
        },
        rule: String::new(),
        priority: 1_000_000,
        min_population: 10,
        weights_mode: "learned".into(),
        kpis: Vec::new(),
        is_default: true,
        yellow_from: None,
        green_from: None,
        window_days: None,
        trend_weight: None,
        created_at: now,
        updated_at: now,
    }
}

/// Makes sure a default profile exists: creates `profiles/default` when no profile is
/// the default (idempotent, safe to call from several processes). True when it created
/// or re-marked one.
pub async fn ensure_default_profile(store: &Store) -> Result<bool, ScorecardError> {
    let profiles = sp::load_profiles(store).await?;
    if profiles.iter().any(|p| p.is_default) {
        return Ok(false);
    }
    if let Some(mut existing) = profiles.into_iter().find(|p| p.id == DEFAULT_PROFILE_ID) {
        existing.is_default = true;
        existing.updated_at = Utc::now();
        sp::update_profile(store, &existing).await?;
        return Ok(true);
    }
    let created = sp::insert_profile_if_absent(store, &default_profile(Utc::now())).await?;
    if created {
        tracing::info!(profile = DEFAULT_PROFILE_ID, "default profile created");
    }
    Ok(created)
}
