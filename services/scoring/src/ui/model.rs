//! The model page (`/ui/model`, `?profile=`): the model serving a profile (its own
//! latest, else the global one): ROC curve, calibration, backtest folds, KPI weights
//! (learned against prior, contradicted KPIs flagged), and what is known about drift.
//!
//! The learner keeps its models as JSON in the `models` table; the parts shown here are
//! read with the small serde types below (every field defaulted, so a model stored by
//! another version still shows what it has).

use axum::extract::{Extension, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use vitals_server::HttpAuth;
use vitals_store::learner::{self as sl, GLOBAL_MODEL, ModelRow};
use vitals_store::profiles as sp;

use super::layout::{self, Nav, num};
use super::svg::{self, Axis, Series};
use super::{Params, Ui, UiError, guarded};

/// GET /ui/model.
pub(crate) async fn page(
    State(ui): Ui,
    Extension(auth): Extension<HttpAuth>,
    headers: HeaderMap,
    q: Query<Vec<(String, String)>>,
) -> Response {
    let params = Params::from_query(q);
    guarded(&auth, &headers, |who| async move {
        render(&ui.inner.store, &params, who.as_deref()).await
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Bin {
    count: f64,
    mean_predicted: f64,
    observed_rate: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Eval {
    auc: f64,
    top_decile_lift: f64,
    log_loss: f64,
    brier_score: f64,
    observations: u64,
    positives: u64,
    calibration: Vec<Bin>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Fold {
    train_end: String,
    test_start: String,
    test_end: String,
    train_count: u64,
    metrics: Eval,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Backtest {
    folds: Vec<Fold>,
    mean_auc: f64,
    error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Metrics {
    as_of: String,
    training: Eval,
    health: Eval,
    churn_backtest: Backtest,
    health_backtest: Backtest,
    churn_count: u64,
    shrinkage: f64,
    contradicted: Vec<String>,
    categories_without_signal: Vec<String>,
    /// The drift levels already reported for this model (`model.drift_detected`).
    drift_reported: Vec<String>,
    /// The learner's last scheduled drift check of this model.
    drift_last_check: Option<DriftCheck>,
}

/// The summary the learner's drift check keeps on a model
/// (`vitals_store::learner::DRIFT_CHECK_KEY`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DriftCheck {
    checked_at: String,
    as_of: String,
    level: String,
    psi_threshold: f64,
    kpis: Vec<KpiDrift>,
    kpis_measured: u64,
    unavailable: Option<String>,
    outcomes_since: u64,
    auc_since: Option<f64>,
    auc_unavailable: Option<String>,
    labelled: u64,
    churned: u64,
    retrain: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct KpiDrift {
    kpi: String,
    psi: f64,
    level: String,
}

/// The drift card: the last scheduled check's figures, or why there are none.
fn drift_card(metrics: &Metrics) -> Markup {
    html! {
        div.card {
            h2 { "Drift" }
            @match &metrics.drift_last_check {
                None => p.note { "Not checked yet: the learner's scheduled drift check (every --drift-check-interval-secs, on when --retrain-psi-threshold is above 0) keeps its last result here. LearnerService.GetDriftReport measures it now, on demand (docs/learning.md, Drift)." },
                Some(c) => {
                    p.muted { "Last checked " (c.checked_at) " on the population of " (c.as_of)
                        ": level " b { (c.level) } " (PSI threshold " (num(c.psi_threshold, 2)) "); "
                        (c.outcomes_since) " outcomes recorded since training; AUC since training "
                        @match (c.auc_since, &c.auc_unavailable) {
                            (Some(a), _) => { b { (num(a, 3)) } " on " (c.labelled) " labelled observations, " (c.churned) " churned." }
                            (None, Some(why)) => { "not measured: " (why) "." }
                            (None, None) => { "not measured." }
                        }
                    }
                    @if let Some(why) = &c.retrain { p.note { "Retraining due: " (why) } }
                    @if let Some(why) = &c.unavailable { p.note { "PSI not measured: " (why) } }
                    @if !metrics.drift_reported.is_empty() {
                        p.muted { "Levels reported for this model (model.drift_detected): " (metrics.drift_reported.join(", ")) }
                    }
                    @if !c.kpis.is_empty() {
                        div.scroll { table {
                            thead { tr { th { "KPI (highest PSI first, " (c.kpis.len()) " of " (c.kpis_measured) ")" } th.num { "PSI" } th { "Level" } } }
                            tbody { @for k in &c.kpis {
                                tr { td { (k.kpi) } td.num { (num(k.psi, 3)) }
                                    td { @if k.level == "stable" { (k.level) } @else { span.down { (k.level) } } } }
                            } }
                        } }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct KpiWeight {
    kpi: String,
    category: String,
    weight: f64,
    learned: f64,
    prior: f64,
}

/// The ROC curve through the calibration bins: bins from the highest predicted
/// probability down, each adding its churned and retained observations. Returns the
/// points (false positive rate, true positive rate) from (0, 0) to (1, 1).
fn roc_from_bins(bins: &[Bin]) -> Vec<(f64, f64)> {
    let mut sorted: Vec<&Bin> = bins.iter().filter(|b| b.count > 0.0).collect();
    sorted.sort_by(|a, b| b.mean_predicted.total_cmp(&a.mean_predicted));
    let pos: f64 = sorted.iter().map(|b| b.count * b.observed_rate).sum();
    let neg: f64 = sorted
        .iter()
        .map(|b| b.count * (1.0 - b.observed_rate))
        .sum();
    if pos <= 0.0 || neg <= 0.0 {
        return Vec::new();
    }
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut out = vec![(0.0, 0.0)];
    for b in sorted {
        tp += b.count * b.observed_rate;
        fp += b.count * (1.0 - b.observed_rate);
        out.push((fp / neg, tp / pos));
    }
    out
}

/// The area under a curve of points (trapezoids).
fn area(points: &[(f64, f64)]) -> f64 {
    points
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
        .sum()
}

fn diagonal() -> Series {
    Series {
        name: "chance / perfect calibration".into(),
        color: svg::GREY,
        points: vec![(0.0, 0.0), (1.0, 1.0)],
        dashed: true,
    }
}

fn backtest_table(title: &str, b: &Backtest) -> Markup {
    html! {
        h2 { (title) }
        @if let Some(e) = &b.error { p.note { "No backtest: " (e) } }
        @else {
            p.muted { "Mean test AUC " (num(b.mean_auc, 3)) "." }
            div.scroll { table {
                thead { tr { th { "Fold" } th { "Trained before" } th { "Tested" } th.num { "Training obs." }
                    th.num { "Test obs." } th.num { "Churned" } th.num { "AUC" } th.num { "Top-decile lift" } } }
                tbody { @for (i, f) in b.folds.iter().enumerate() {
                    tr { td { (i + 1) } td { (f.train_end) } td { (f.test_start) " – " (f.test_end) }
                        td.num { (f.train_count) } td.num { (f.metrics.observations) } td.num { (f.metrics.positives) }
                        td.num { (num(f.metrics.auc, 3)) } td.num { (num(f.metrics.top_decile_lift, 2)) } }
                } }
            } }
        }
    }
}

fn model_section(m: &ModelRow, serving_for: &str) -> Markup {
    let metrics: Metrics = serde_json::from_value(m.metrics.clone()).unwrap_or_default();
    let weights: Vec<KpiWeight> = serde_json::from_value(m.kpi_weights.clone()).unwrap_or_default();
    let roc = roc_from_bins(&metrics.training.calibration);
    let cal: Vec<(f64, f64)> = metrics
        .training
        .calibration
        .iter()
        .map(|b| (b.mean_predicted, b.observed_rate))
        .collect();
    let unit = Axis::numeric("false positive rate", 0.0, 1.0, 1);
    let owner = if m.profile_id == GLOBAL_MODEL {
        "the global model".to_owned()
    } else {
        format!("profile {}", m.profile_id)
    };
    let t = &metrics.training;
    html! {
        div.card {
            h2 { "Model " (m.id) ": " (owner) ", version " (m.version) }
            p.muted { "Serving " (serving_for) ". Trained " (layout::when(m.trained_at)) " on observations up to " (metrics.as_of)
                ": " (m.n_observations) " observations, " (m.n_churned) " churned; shrinkage n/(n+n0) " (num(metrics.shrinkage, 2))
                " over " (metrics.churn_count) " churn outcomes." }
            span.stat { b { (num(t.auc, 3)) } "AUC (in-sample)" }
            span.stat { b { (num(t.top_decile_lift, 2)) } "top-decile lift" }
            span.stat { b { (num(t.log_loss, 3)) } "log loss" }
            span.stat { b { (num(t.brier_score, 3)) } "Brier score" }
            span.stat { b { (num(metrics.health.auc, 3)) } "health score AUC" }
        }
        div.grid {
            div.card {
                @if roc.is_empty() { p.note { "No calibration bins with both churned and retained observations: no ROC curve." } }
                @else {
                    (svg::line_chart("roc", "ROC curve (churn probability)",
                        &format!("True against false positive rate of the churn probability on the training observations, through the {} calibration bins; area {:.3}.", cal.len(), area(&roc)),
                        &unit, &Axis::numeric("true positive rate", 0.0, 1.0, 1),
                        &[Series { name: "model".into(), color: svg::BLUE, points: roc.clone(), dashed: false }, diagonal()], &[]))
                    p.muted { "Drawn through the stored calibration deciles (area " (num(area(&roc), 3)) "; the exact AUC is " (num(t.auc, 3)) ")." }
                }
            }
            div.card {
                @if cal.is_empty() { p.note { "No calibration table stored with this model." } }
                @else {
                    (svg::line_chart("calibration", "Calibration",
                        &format!("Observed churn rate against mean predicted probability in {} bins of the training observations.", cal.len()),
                        &Axis::numeric("mean predicted probability", 0.0, 1.0, 1), &Axis::numeric("observed churn rate", 0.0, 1.0, 1),
                        &[Series { name: "model".into(), color: svg::ORANGE, points: cal, dashed: false }, diagonal()], &[]))
                }
            }
        }
        div.card {
            (backtest_table("Backtest: churn probability", &metrics.churn_backtest))
            (backtest_table("Backtest: health score", &metrics.health_backtest))
        }
        div.card {
            h2 { "KPI weights" }
            p.muted { "Weight within its category after shrinkage, between the data-only (learned) weight and the uniform prior." }
            @if !metrics.categories_without_signal.is_empty() {
                p.note { "Categories without a healthy signal (kept at the prior): " (metrics.categories_without_signal.join(", ")) }
            }
            div.scroll { table {
                thead { tr { th { "KPI" } th { "Category" } th.num { "Weight" } th.num { "Learned" } th.num { "Prior" } th { "" } } }
                tbody { @for w in &weights {
                    @let contra = metrics.contradicted.contains(&w.kpi);
                    tr { td { (w.kpi) } td { (w.category) } td.num { (num(w.weight, 3)) } td.num { (num(w.learned, 3)) }
                        td.num { (num(w.prior, 3)) }
                        td { @if contra { span.down { "contradicted: its effect runs against its declared direction" } } } }
                } }
            } }
        }
        (drift_card(&metrics))
    }
}

async fn render(
    store: &vitals_store::Store,
    params: &Params,
    who: Option<&str>,
) -> Result<Markup, UiError> {
    let asked = params.profile("profile")?;
    let profiles = sp::load_profiles(store).await?;
    let models = sl::list_models(store, None, true, None, 1000).await?;
    let own = |p: &str| models.iter().find(|m| m.profile_id == p);
    let global = own(GLOBAL_MODEL);
    let chosen = match &asked {
        Some(p) if p != GLOBAL_MODEL && !profiles.iter().any(|r| &r.id == p) => {
            return Err(UiError::NotFound(format!("profile \"profiles/{p}\"")));
        }
        Some(p) => Some(p.clone()),
        None => profiles.first().map(|p| p.id.clone()),
    };
    let serving = chosen.as_deref().and_then(|p| own(p).or(global));
    let body = html! {
        h1 { "Model" }
        div.card {
            form.filters method="get" action="/ui/model" {
                label { "Profile"
                    select name="profile" {
                        @for p in &profiles {
                            option value=(p.id) selected[chosen.as_deref() == Some(p.id.as_str())] { (p.display_name) }
                        }
                        option value=(GLOBAL_MODEL) selected[chosen.as_deref() == Some(GLOBAL_MODEL)] { "(global model)" }
                    }
                }
                button.primary type="submit" { "Show" }
            }
            div.scroll { table {
                thead { tr { th { "Profile" } th { "Serving model" } th { "Trained" } th.num { "AUC" } } }
                tbody { @for p in &profiles {
                    @let m = own(&p.id).or(global);
                    tr { td { a href={ "/ui/model?profile=" (super::encode_path(&p.id)) } { (p.display_name) } }
                        td { @match m { Some(m) => { (if m.profile_id == GLOBAL_MODEL { "global" } else { "own" }) " v" (m.version) }, None => span.muted { "none trained" } } }
                        td { (m.map_or("–".into(), |m| layout::day(m.trained_at))) }
                        td.num { (m.map_or("–".into(), |m| num(serde_json::from_value::<Metrics>(m.metrics.clone()).unwrap_or_default().training.auc, 3))) } }
                } }
            } }
        }
        @match serving {
            Some(m) => (model_section(m, &format!("profile {}", chosen.as_deref().unwrap_or_default()))),
            None => div.card { p.note { "No model serves this profile yet: train one (Learner Train) once outcomes are recorded." } },
        }
    };
    Ok(layout::page("Model", Nav::Model, who, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bin(count: f64, p: f64, rate: f64) -> Bin {
        Bin {
            count,
            mean_predicted: p,
            observed_rate: rate,
        }
    }

    #[test]
    fn roc_through_bins_runs_from_corner_to_corner() {
        // A perfect split: the high bin all churned, the low one none.
        let perfect = roc_from_bins(&[bin(10.0, 0.1, 0.0), bin(10.0, 0.9, 1.0)]);
        assert_eq!(perfect, vec![(0.0, 0.0), (0.0, 1.0), (1.0, 1.0)]);
        assert!((area(&perfect) - 1.0).abs() < 1e-12);
        // No signal: the diagonal.
        let flat = roc_from_bins(&[bin(10.0, 0.2, 0.5), bin(10.0, 0.8, 0.5)]);
        assert!((area(&flat) - 0.5).abs() < 1e-12);
        assert!(roc_from_bins(&[bin(5.0, 0.3, 0.0)]).is_empty());
    }

    #[test]
    fn stored_metrics_read_with_missing_parts() {
        let m: Metrics = serde_json::from_value(serde_json::json!({
            "training": {"auc": 0.7, "calibration": [{"count": 3, "mean_predicted": 0.1, "observed_rate": 0.2, "min_predicted": 0.0}]},
            "contradicted": ["tickets"],
            "churn_backtest": {"folds": [], "mean_auc": 0.0, "error": "too few dates"}
        }))
        .unwrap();
        assert_eq!(m.training.auc, 0.7);
        assert_eq!(m.training.calibration.len(), 1);
        assert_eq!(m.contradicted, ["tickets"]);
        assert_eq!(m.churn_backtest.error.as_deref(), Some("too few dates"));
        assert!(m.drift_last_check.is_none());
        assert!(drift_card(&m).into_string().contains("Not checked yet"));
    }

    #[test]
    fn the_last_drift_check_is_shown_highest_psi_first() {
        let m: Metrics = serde_json::from_value(serde_json::json!({
            "drift_reported": ["shift"],
            "drift_last_check": {
                "checked_at": "2025-11-01T10:00:00Z", "as_of": "2025-10-31", "level": "shift",
                "psi_threshold": 0.25, "kpis_measured": 40, "outcomes_since": 8,
                "auc_since": 0.8124, "labelled": 32, "churned": 8,
                "retrain": "PSI of events_post 2.1000 above the retrain threshold 0.25",
                "kpis": [{"kpi": "events_post", "psi": 2.1, "level": "shift"},
                         {"kpi": "active_days", "psi": 0.01, "level": "stable"}]
            }
        }))
        .unwrap();
        let html = drift_card(&m).into_string();
        for part in [
            "2025-10-31",
            "<b>shift</b>",
            "<b>0.812</b> on 32 labelled observations, 8 churned",
            "Retraining due: PSI of events_post",
            "Levels reported for this model (model.drift_detected): shift",
            "2 of 40",
            "2.100",
        ] {
            assert!(html.contains(part), "{part} not in {html}");
        }
        assert!(html.find("events_post").unwrap() < html.find("active_days").unwrap());
        assert!(!html.contains("Not checked yet"));
    }
}
