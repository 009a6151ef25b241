//! The body of a delivery: the event's Standard Webhooks payload as stored, or a Slack
//! incoming-webhook message `{"text": ...}` built from it. The same event always gives
//! the same body, so every retry is byte-for-byte the same message.

use serde_json::Value;
use vitals_store::webhooks as sw;

/// `standard` format (the payload as is).
pub const STANDARD: &str = "standard";
/// `slack` format.
pub const SLACK: &str = "slack";

/// The body of event `kind` with `payload` (JSON text) in `format`.
pub fn body(format: &str, kind: &str, payload: &str) -> Vec<u8> {
    if format != SLACK {
        return payload.as_bytes().to_vec();
    }
    let v: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
    serde_json::json!({ "text": slack_text(kind, &v["data"]) })
        .to_string()
        .into_bytes()
}

fn num(v: &Value, k: &str) -> String {
    v[k].as_f64()
        .map_or_else(|| "?".into(), |x| format!("{x:.2}"))
}

fn text<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("?")
}

/// The Slack line of an event.
pub fn slack_text(kind: &str, d: &Value) -> String {
    match kind {
        sw::KIND_BAND_CHANGED => {
            let drivers: Vec<String> = d["top_drivers"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| {
                            format!(
                                "{} {:+.2}",
                                text(x, "kpi"),
                                x["contribution"].as_f64().unwrap_or(0.0)
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut s = format!(
                "Vitals: account *{}* moved from {} to {} (score {} -> {}, {})",
                text(d, "account_id"),
                text(d, "previous_band"),
                text(d, "band"),
                num(d, "previous_score"),
                num(d, "score"),
                text(d, "scorecard"),
            );
            if !drivers.is_empty() {
                s.push_str(". Top drivers: ");
                s.push_str(&drivers.join(", "));
            }
            s
        }
        sw::KIND_CHURN_CROSSED => format!(
            "Vitals: account *{}* churn probability {} -> {}",
            text(d, "account_id"),
            num(d, "previous_probability"),
            num(d, "probability"),
        ),
        sw::KIND_MODEL_TRAINED => format!(
            "Vitals: model {} trained ({} observations, {} churned)",
            text(d, "model"),
            d["observations"],
            d["churned"],
        ),
        sw::KIND_DRIFT_DETECTED => format!(
            "Vitals: drift ({}) on model {}: highest PSI {} (threshold {}){}",
            text(d, "level"),
            text(d, "model"),
            num(d, "psi"),
            num(d, "psi_threshold"),
            if d["retraining"] == true {
                "; retraining"
            } else {
                ""
            },
        ),
        other => format!("Vitals: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_band_change_names_account_bands_and_drivers() {
        let p = serde_json::json!({"type": sw::KIND_BAND_CHANGED, "data": {
            "account_id": "acme", "previous_band": "green", "band": "red",
            "previous_score": 7.5, "score": 2.25, "scorecard": "scorecards/profile",
            "top_drivers": [{"kpi": "active_days", "contribution": -1.5}]}})
        .to_string();
        let b: Value = serde_json::from_slice(&body(SLACK, sw::KIND_BAND_CHANGED, &p)).unwrap();
        assert_eq!(
            b["text"],
            "Vitals: account *acme* moved from green to red (score 7.50 -> 2.25, \
             scorecards/profile). Top drivers: active_days -1.50"
        );
        assert_eq!(body(STANDARD, sw::KIND_BAND_CHANGED, &p), p.as_bytes());
    }

    #[test]
    fn slack_drift_names_model_level_and_psi() {
        let p = serde_json::json!({"type": sw::KIND_DRIFT_DETECTED, "data": {
            "model": "models/global-1", "level": "shift", "psi": 3.912,
            "psi_threshold": 0.25, "retraining": true}})
        .to_string();
        let b: Value = serde_json::from_slice(&body(SLACK, sw::KIND_DRIFT_DETECTED, &p)).unwrap();
        assert_eq!(
            b["text"],
            "Vitals: drift (shift) on model models/global-1: highest PSI 3.91 (threshold \
             0.25); retraining"
        );
    }
}
