//! The account page (`/ui/accounts/{id}`, `?since=YYYY-MM-DD`): score and churn
//! probability history as charts (with marks where the model or the profile changed),
//! sub-scores, drivers, "why it changed" since a date (what ExplainScore `since`
//! computes), outcomes and CSM pulse.

use axum::extract::{Extension, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use maud::{Markup, html};
use vitals_scoring_core::Category;
use vitals_server::HttpAuth;
use vitals_store::learner::{self as sl, OutcomeFilter};
use vitals_store::profiles::{self as sp, ProfileRecord};
use vitals_store::scoring::overview as ov;
use vitals_store::scoring::{PROFILE_SCORECARD, SnapshotRecord};

use super::layout::{self, Nav, change, num, pct};
use super::risk::down_drivers;
use super::svg::{self, Axis, Mark, Series};
use super::{Params, Ui, UiError, guarded};
use crate::Inner;
use crate::domain::read::{self, Change, ExplainQuery};
use crate::domain::stored::{self, StoredDetails};

/// Snapshots drawn in the history charts (the newest ones).
pub(crate) const HISTORY_POINTS: u64 = 400;
/// Outcomes and pulses listed.
const LISTED: u64 = 20;
/// Default "why it changed" baseline: this many days before the latest score.
const DEFAULT_SINCE_DAYS: i64 = 7;

/// GET /ui/accounts/{id}.
pub(crate) async fn page(
    State(ui): Ui,
    Extension(auth): Extension<HttpAuth>,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: Query<Vec<(String, String)>>,
) -> Response {
    let params = Params::from_query(q);
    guarded(&auth, &headers, |who| async move {
        render(&ui.inner, &id, &params, who.as_deref()).await
    })
    .await
}

/// The name of a stored category number (the proto `ScoreCategory`).
pub(crate) fn category_name(c: i32) -> &'static str {
    Category::WEIGHTED
        .iter()
        .chain([Category::ScoreField].iter())
        .find(|k| stored::category_proto(**k) == c)
        .map_or("other", |k| k.as_str())
}

/// `since`: a day, read as the end of that day (UTC).
fn since_param(params: &Params) -> Result<Option<DateTime<Utc>>, UiError> {
    let Some(s) = params.get("since") else {
        return Ok(None);
    };
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| UiError::param("since", "not a date (YYYY-MM-DD)"))?;
    let end = d
        .succ_opt()
        .and_then(|n| n.and_hms_opt(0, 0, 0))
        .ok_or_else(|| UiError::param("since", "out of range"))?
        .and_utc()
        - Duration::microseconds(1);
    Ok(Some(end))
}

fn model_label(d: &StoredDetails) -> String {
    match d.model.strip_prefix("models/") {
        Some(id) => format!("model {id}"),
        None if d.model.is_empty() => "no model".to_owned(),
        None => d.model.clone(),
    }
}

/// Where the model or the profile changed between consecutive snapshots, and the
/// profile's last edit when it falls inside the history.
fn marks(history: &[SnapshotRecord], profile: Option<&ProfileRecord>) -> Vec<Mark> {
    let mut out = Vec::new();
    let mut prev: Option<(&str, String)> = None;
    for r in history {
        let model = model_label(&stored::details(r));
        if let Some((p, m)) = &prev {
            if *p != r.profile_id {
                out.push(Mark {
                    x: svg::t(r.as_of),
                    label: format!("profile {}", r.profile_id),
                });
            } else if *m != model {
                out.push(Mark {
                    x: svg::t(r.as_of),
                    label: model.clone(),
                });
            }
        }
        prev = Some((&r.profile_id, model));
    }
    if let (Some(p), Some(first), Some(last)) = (profile, history.first(), history.last())
        && p.updated_at > first.as_of
        && p.updated_at <= last.as_of
    {
        out.push(Mark {
            x: svg::t(p.updated_at),
            label: "profile edited".to_owned(),
        });
    }
    out
}

fn history_charts(history: &[SnapshotRecord], marks: &[Mark]) -> Markup {
    let (Some(first), Some(last)) = (history.first(), history.last()) else {
        return html! {};
    };
    let x = Axis::time("snapshot date (UTC)", first.as_of, last.as_of);
    let score = Series {
        name: "score".into(),
        color: svg::BLUE,
        points: history.iter().map(|r| (svg::t(r.as_of), r.value)).collect(),
        dashed: false,
    };
    let churn: Vec<(f64, f64)> = history
        .iter()
        .filter_map(|r| Some((svg::t(r.as_of), r.churn_probability? * 100.0)))
        .collect();
    let n = history.len();
    html! {
        div.grid {
        div.card {
            (svg::line_chart("score-history", "Score history",
                &format!("Profile score of the account's last {n} snapshots, from {} to {}, with {} marked changes of model or profile.",
                    layout::day(first.as_of), layout::day(last.as_of), marks.len()),
                &x, &Axis::numeric("score", 0.0, 10.0, 0), &[score], marks))
        }
        div.card {
            @if churn.is_empty() {
                p.note { "No churn probability yet: no model was trained for this account's profile when it was scored." }
            } @else {
                (svg::line_chart("churn-history", "Churn probability history",
                    &format!("Churn probability in percent over the account's last {n} snapshots."),
                    &x, &Axis::numeric("churn probability (%)", 0.0, 100.0, 0),
                    &[Series { name: "churn probability".into(), color: svg::ORANGE, points: churn, dashed: false }],
                    marks))
            }
        }
        }
    }
}

fn why_changed(diff: Option<&Change>, since: DateTime<Utc>) -> Markup {
    html! {
        @match diff {
            None => p.muted { "No score on or before " (layout::day(since)) " to compare with." },
            Some(c) => {
                p {
                    "Since " (layout::when(c.baseline.record.as_of)) " (score " (num(c.baseline.record.value, 2)) "): "
                    (change(Some(c.score_change), 2)) " points; adjustments and other effects "
                    (change(Some(c.other_change), 2)) "."
                }
                div.scroll { table {
                    thead { tr { th { "KPI" } th { "Category" } th.num { "Value then" } th.num { "Value now" }
                        th.num { "Peer pct then" } th.num { "Peer pct now" } th.num { "Points" } } }
                    tbody {
                        @for k in c.kpi_changes.iter().filter(|k| k.contribution_change.abs() >= 0.005).take(15) {
                            tr {
                                td { (k.kpi) } td { (category_name(k.category)) }
                                td.num { (k.before_value.map_or("–".into(), |v| num(v, 2))) }
                                td.num { (k.after_value.map_or("–".into(), |v| num(v, 2))) }
                                td.num { (k.before_percentile.map_or("–".into(), |v| num(v, 0))) }
                                td.num { (k.after_percentile.map_or("–".into(), |v| num(v, 0))) }
                                td.num { (change(Some(k.contribution_change), 2)) }
                            }
                        }
                    }
                } }
            }
        }
    }
}

/// The override in force (a CSM's band or score beside the computed one) and the audit
/// trail of the account's overrides.
fn overrides(
    in_force: Option<&vitals_store::overrides::Override>,
    audit: &[vitals_store::overrides::AuditEntry],
) -> Markup {
    let at = |ms: i64| {
        DateTime::<Utc>::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), layout::when)
    };
    html! {
        @if let Some(o) = in_force {
            div.card {
                h2 { "Manual override in force" }
                p {
                    @if !o.band.is_empty() { "Band set to " (layout::band(&o.band)) " " }
                    @if let Some(v) = o.value { "score set to " b { (num(v, 2)) } " " }
                    "by " (o.set_by) " on " (at(o.set_ms))
                    @if let Some(e) = o.expires_ms { ", until " (at(e)) }
                    ". Reason: " (o.reason_code)
                    @if !o.note.is_empty() { " (" (o.note) ")" }
                }
                p.muted { "The computed score below is what the model and the learner see." }
            }
        }
        @if !audit.is_empty() {
            div.card {
                h2 { "Override audit" }
                div.scroll { table {
                    thead { tr { th { "When" } th { "Who" } th { "What" } th { "Band" } th.num { "Score" } th { "Reason" } th { "Note" } } }
                    tbody { @for e in audit {
                        tr {
                            td { (at(e.at_ms)) } td { (e.actor) } td { (e.action) }
                            td { (e.band) } td.num { (e.value.map_or("–".into(), |v| num(v, 2))) }
                            td { (e.reason_code) } td { (e.note) }
                        }
                    } }
                } }
            }
        }
    }
}

async fn render(
    inner: &Inner,
    id: &str,
    params: &Params,
    who: Option<&str>,
) -> Result<Markup, UiError> {
    if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
        return Err(UiError::param(
            "account_id",
            "1..256 bytes, no control characters",
        ));
    }
    let store = &inner.store;
    let since_asked = since_param(params)?;
    let account = vitals_store::ingestion::get_account(store, id).await?;
    // Oldest first: the last point is the latest score.
    let history = ov::recent_snapshots(store, id, PROFILE_SCORECARD, HISTORY_POINTS).await?;
    let Some(latest) = history.last() else {
        return Err(UiError::NotFound(format!("score of account \"{id}\"")));
    };
    let since = since_asked.unwrap_or(latest.as_of - Duration::days(DEFAULT_SINCE_DAYS));
    let explained = read::explain(
        inner,
        &ExplainQuery {
            account: id.to_owned(),
            scorecard: PROFILE_SCORECARD.to_owned(),
            since: Some(since),
        },
    )
    .await?;
    let profile = if latest.profile_id.is_empty() {
        None
    } else {
        sp::get_profile(store, &latest.profile_id).await?
    };
    let outcomes = sl::list_outcomes(
        store,
        &OutcomeFilter {
            account_id: Some(id.to_owned()),
            ..Default::default()
        },
        None,
        LISTED,
    )
    .await?;
    let pulses = ov::recent_pulses(store, id, LISTED).await?;
    let now_ms = Utc::now().timestamp_millis();
    let key = (id.to_owned(), PROFILE_SCORECARD.to_owned());
    let in_force =
        vitals_store::overrides::active_overrides(store, std::slice::from_ref(&key), now_ms)
            .await?
            .remove(&key);
    let (audit, _) = vitals_store::overrides::list_audit(store, Some(id), 0, LISTED).await?;
    let marks = marks(&history, profile.as_ref());
    let score = &explained.score;
    let r = &score.record;
    let name = account
        .as_ref()
        .map(|a| a.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| id.to_owned());
    let body = html! {
        h1 { (name) }
        div.card {
            span.stat { b { (num(r.value, 2)) } "score " (layout::band(&r.band)) }
            span.stat { b { (pct(r.churn_probability)) } "churn probability" }
            span.stat { b { (r.coverage_present) "/" (r.coverage_total) } "KPIs with a value" }
            p.muted {
                "Account " (id)
                @if let Some(a) = &account { " · status " (a.status) }
                " · profile " (profile.as_ref().map_or_else(|| r.profile_id.clone(), |p| p.display_name.clone()))
                " · " (model_label(&score.details)) " · weights " (r.weights_source)
                " · as of " (layout::when(r.as_of))
            }
        }
        (overrides(in_force.as_ref(), &audit))
        (history_charts(&history, &marks))
        div.grid {
            div.card {
                h2 { "Sub-scores" }
                table {
                    thead { tr { th { "Category" } th.num { "Sub-score" } th.num { "Weight" } th.num { "KPIs" } } }
                    tbody {
                        @for c in &score.details.categories {
                            tr {
                                td { (category_name(c.c)) @if !c.f.is_empty() { " (" (c.f) ")" } }
                                td.num { (c.v.map_or("–".into(), |v| num(v, 2))) }
                                td.num { (num(c.w * 100.0, 0)) "%" }
                                td.num { (c.p) "/" (c.t) }
                            }
                        }
                    }
                }
            }
            div.card {
                h2 { "Drivers" }
                p.muted { "Largest effect first; points are the KPI's part of the score against a neutral 5." }
                div.scroll { table {
                    thead { tr { th { "KPI" } th { "Category" } th.num { "Value" } th.num { "Peer pct" } th.num { "Points" } } }
                    tbody {
                        @for d in explained.drivers.iter().take(12) {
                            tr {
                                td { (d.0) } td { (category_name(d.1)) } td.num { (num(d.2, 2)) }
                                td.num { (d.3.map_or("–".into(), |p| num(p * 100.0, 0))) }
                                td.num { (change(Some(d.contribution()), 2)) }
                            }
                        }
                    }
                } }
                h2 { "Pulling down most" }
                (down_drivers(&explained.drivers, 3))
            }
        }
        div.card {
            h2 { "Why it changed" }
            form.filters method="get" action="" {
                label { "Since (day)" input type="date" name="since" value=(layout::day(since)); }
                button.primary type="submit" { "Compare" }
            }
            (why_changed(explained.change.as_ref(), since))
        }
        div.grid {
            div.card {
                h2 { "Outcomes" }
                @if outcomes.is_empty() { p.muted { "None recorded." } }
                @else { table { tbody { @for o in &outcomes {
                    tr { td { (layout::day(o.at)) } td { (o.kind) } td { (o.note) } }
                } } } }
            }
            div.card {
                h2 { "CSM pulse" }
                @if pulses.is_empty() { p.muted { "None recorded." } }
                @else { table { tbody { @for p in &pulses {
                    tr { td { (layout::day(p.at)) } td.num { (p.value) "/5" } td { (p.author) } td { (p.note) } }
                } } } }
            }
        }
    };
    Ok(layout::page(&name, Nav::Account, who, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_the_end_of_the_day_and_checked() {
        let p = Params(vec![("since".into(), "2026-03-04".into())]);
        let t = since_param(&p).unwrap().unwrap();
        assert_eq!(t.to_rfc3339(), "2026-03-04T23:59:59.999999+00:00");
        let bad = Params(vec![("since".into(), "04/03/2026".into())]);
        assert!(matches!(since_param(&bad), Err(UiError::Param { field, .. }) if field == "since"));
        assert_eq!(since_param(&Params::default()).unwrap(), None);
    }

    #[test]
    fn categories_have_their_names() {
        assert_eq!(
            category_name(stored::category_proto(Category::Usage)),
            "usage"
        );
        assert_eq!(
            category_name(stored::category_proto(Category::ScoreField)),
            "score_field"
        );
        assert_eq!(category_name(-5), "other");
    }
}
