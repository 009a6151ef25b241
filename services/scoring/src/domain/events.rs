//! The webhook events of a scoring run (docs/webhooks.md): one `score.band_changed` per
//! band change, one `score.churn_threshold_crossed` per account whose churn probability
//! crossed the threshold of an enabled subscription. Built only for kinds an enabled
//! subscription wants (read before the run); written by the store in the run's own
//! transaction ([`vitals_store::scoring::RunRecord::events`]), which adds `data.run_id`.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use vitals_store::scoring::NewSnapshot;
use vitals_store::snapshot::{KpiNames, decode_drivers_with};
use vitals_store::webhooks::{self as sw, Interest, NewEvent};

use super::compute::BandChange;

/// Drivers listed in a band change event (by largest contribution, either sign).
pub const TOP_DRIVERS: usize = 3;

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `scorecards/{id}` of a stored scorecard id.
fn scorecard_name(id: &str) -> String {
    format!("scorecards/{id}")
}

/// The band change events of a run: `changes` of the `written` snapshots.
pub fn band_changed(
    changes: &[BandChange],
    written: &[NewSnapshot],
    names: &KpiNames,
    now: DateTime<Utc>,
) -> Vec<NewEvent> {
    let by_key: HashMap<(&str, &str), &NewSnapshot> = written
        .iter()
        .map(|s| ((s.account_id.as_str(), s.scorecard_id.as_str()), s))
        .collect();
    changes
        .iter()
        .map(|c| {
            let mut drivers = by_key
                .get(&(c.account_id.as_str(), c.scorecard_id.as_str()))
                .and_then(|s| decode_drivers_with(&s.drivers, names).ok())
                .unwrap_or_default();
            drivers.sort_by(|a, b| b.contribution().abs().total_cmp(&a.contribution().abs()));
            drivers.truncate(TOP_DRIVERS);
            let top: Vec<_> = drivers
                .iter()
                .map(|d| serde_json::json!({"kpi": d.0, "contribution": d.contribution()}))
                .collect();
            NewEvent {
                kind: sw::KIND_BAND_CHANGED.into(),
                account_id: c.account_id.clone(),
                profile_id: c.profile_id.clone(),
                payload: serde_json::json!({
                    "type": sw::KIND_BAND_CHANGED,
                    "timestamp": rfc3339(now),
                    "data": {
                        "account_id": c.account_id,
                        "profile_id": c.profile_id,
                        "scorecard": scorecard_name(&c.scorecard_id),
                        "previous_band": c.old_band,
                        "band": c.new_band,
                        "previous_score": c.old_value,
                        "score": c.new_value,
                        "as_of": rfc3339(c.as_of),
                        "top_drivers": top,
                    },
                }),
            }
        })
        .collect()
}

/// The churn events of a run: profile snapshots whose churn probability and the one
/// before (`before`, by account) lie on both sides of one of `thresholds`.
pub fn churn_crossed(
    written: &[NewSnapshot],
    before: &HashMap<String, f64>,
    thresholds: &[f64],
    now: DateTime<Utc>,
) -> Vec<NewEvent> {
    written
        .iter()
        .filter(|s| s.scorecard_id == vitals_store::scoring::PROFILE_SCORECARD)
        .filter_map(|s| {
            let new = s.churn_probability?;
            let old = *before.get(&s.account_id)?;
            thresholds
                .iter()
                .any(|&t| (old >= t) != (new >= t))
                .then(|| NewEvent {
                    kind: sw::KIND_CHURN_CROSSED.into(),
                    account_id: s.account_id.clone(),
                    profile_id: s.profile_id.clone(),
                    payload: serde_json::json!({
                        "type": sw::KIND_CHURN_CROSSED,
                        "timestamp": rfc3339(now),
                        "data": {
                            "account_id": s.account_id,
                            "profile_id": s.profile_id,
                            "previous_probability": old,
                            "probability": new,
                            "as_of": rfc3339(s.as_of),
                        },
                    }),
                })
        })
        .collect()
}

/// Every event of a run that `interest` wants.
pub fn of_run(
    interest: &Interest,
    changes: &[BandChange],
    written: &[NewSnapshot],
    churn_before: &HashMap<String, f64>,
    names: &KpiNames,
) -> Vec<NewEvent> {
    let now = Utc::now();
    let mut out = Vec::new();
    if interest.wants(sw::KIND_BAND_CHANGED) {
        out.extend(band_changed(changes, written, names, now));
    }
    if interest.wants(sw::KIND_CHURN_CROSSED) {
        out.extend(churn_crossed(
            written,
            churn_before,
            &interest.churn_thresholds,
            now,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitals_store::scoring::PROFILE_SCORECARD;
    use vitals_store::snapshot::{StoredDriver, encode_drivers_with};

    /// The KPI numbers of the tests' rows (as a run writes them: by number).
    fn names() -> KpiNames {
        KpiNames::from_pairs([(1, "x"), (2, "y"), (3, "z"), (4, "w")])
    }

    fn snap(account: &str, churn: Option<f64>, drivers: &[(&str, f64)]) -> NewSnapshot {
        let d: Vec<StoredDriver> = drivers
            .iter()
            .map(|(k, c)| StoredDriver(k.to_string(), 1, 0.0, None, 5.0, 0.1, *c))
            .collect();
        NewSnapshot {
            account_id: account.into(),
            scorecard_id: PROFILE_SCORECARD.into(),
            profile_id: "p".into(),
            as_of: Utc::now(),
            value: 2.0,
            band: "red".into(),
            global_value: None,
            global_band: String::new(),
            sub_scores: String::new(),
            momentum: 0.0,
            coverage_present: 1,
            coverage_total: 1,
            drivers: encode_drivers_with(&d, &names()),
            churn_probability: churn,
            weights_source: "uniform".into(),
            population_fallback: false,
        }
    }

    #[test]
    fn band_change_events_carry_the_largest_drivers_either_sign() {
        let s = snap(
            "a",
            None,
            &[("x", 0.1), ("y", -2.0), ("z", 1.5), ("w", -0.5)],
        );
        let change = BandChange {
            account_id: "a".into(),
            profile_id: "p".into(),
            scorecard_id: PROFILE_SCORECARD.into(),
            old_band: "green".into(),
            new_band: "red".into(),
            old_value: 8.0,
            new_value: 2.0,
            as_of: s.as_of,
            run_id: 0,
        };
        assert_eq!(s.drivers[0], 3, "drivers by number");
        let e = band_changed(&[change], &[s], &names(), Utc::now());
        let kpis: Vec<&str> = e[0].payload["data"]["top_drivers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["kpi"].as_str().unwrap())
            .collect();
        assert_eq!(kpis, vec!["y", "z", "w"]);
        assert_eq!(e[0].payload["data"]["scorecard"], "scorecards/profile");
    }

    #[test]
    fn churn_events_only_when_a_threshold_is_crossed() {
        let written = [
            snap("up", Some(0.62), &[]),
            snap("down", Some(0.3), &[]),
            snap("same_side", Some(0.45), &[]),
            snap("new_account", Some(0.9), &[]),
            snap("no_model", None, &[]),
        ];
        let before = HashMap::from([
            ("up".to_string(), 0.4),
            ("down".to_string(), 0.55),
            ("same_side".to_string(), 0.1),
            ("no_model".to_string(), 0.9),
        ]);
        let e = churn_crossed(&written, &before, &[0.5, 0.6], Utc::now());
        let who: Vec<&str> = e.iter().map(|e| e.account_id.as_str()).collect();
        assert_eq!(who, vec!["up", "down"]);
        assert_eq!(e[0].payload["data"]["previous_probability"], 0.4);
    }
}
