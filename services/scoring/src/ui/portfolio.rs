//! The portfolio page (`/ui/`, `?profile=` for one profile): band counts per profile
//! with links into each band's accounts, the score histogram, the mean score over time
//! (from the runs' rows) and the KPI coverage of the latest run.

use std::collections::BTreeMap;

use axum::extract::{Extension, Query};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use vitals_server::HttpAuth;
use vitals_store::profiles::{self as sp, ProfileRecord};
use vitals_store::scoring::PROFILE_SCORECARD;
use vitals_store::scoring::overview::{self as ov, HISTOGRAM_BUCKETS};
use vitals_store::values::Band;

use super::layout::{self, Nav, num, pct};
use super::svg::{self, Axis, Bar, Series};
use super::{Params, Ui, UiError, encode_path, guarded};

/// Runs read for the "mean score over time" chart.
pub(crate) const RUNS_SHOWN: u64 = 60;

/// GET /ui/.
pub(crate) async fn page(
    axum::extract::State(ui): Ui,
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

/// One profile's figures of one run (from the run's details JSON).
#[derive(Clone, Debug)]
struct RunPoint {
    as_of: DateTime<Utc>,
    profile: String,
    mean_score: f64,
    mean_coverage: Option<f64>,
    mean_churn: Option<f64>,
}

fn run_points(runs: &[vitals_store::entity::score_run::Model]) -> Vec<RunPoint> {
    let mut out = Vec::new();
    for r in runs.iter().rev() {
        let as_of = r
            .details
            .get("as_of")
            .and_then(|v| v.as_str())
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map_or(r.started_at, |t| t.with_timezone(&Utc));
        let Some(profiles) = r.details.get("profiles").and_then(|p| p.as_array()) else {
            continue;
        };
        for p in profiles {
            // Runs written before the means were kept have none: left out.
            let Some(mean_score) = p.get("mean_score").and_then(|v| v.as_f64()) else {
                continue;
            };
            out.push(RunPoint {
                as_of,
                profile: p
                    .get("profile")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_owned(),
                mean_score,
                mean_coverage: p.get("mean_coverage").and_then(|v| v.as_f64()),
                mean_churn: p.get("mean_churn_probability").and_then(|v| v.as_f64()),
            });
        }
    }
    // Ids follow the runs' order, not their as_of (a backfill is a later run).
    out.sort_by_key(|p| p.as_of);
    out
}

fn profile_name(profiles: &[ProfileRecord], id: &str) -> String {
    if id.is_empty() {
        return "(no profile)".to_owned();
    }
    profiles
        .iter()
        .find(|p| p.id == id)
        .map_or_else(|| id.to_owned(), |p| p.display_name.clone())
}

fn risk_href(profile: &str, band: &str) -> String {
    format!(
        "/ui/risk?profile={}&band={}",
        encode_path(profile),
        encode_path(band)
    )
}

async fn render(
    store: &vitals_store::Store,
    params: &Params,
    who: Option<&str>,
) -> Result<Markup, UiError> {
    let profile = params.profile("profile")?;
    let profiles = sp::load_profiles(store).await?;
    let chosen = match &profile {
        Some(p) => Some(
            profiles
                .iter()
                .find(|r| &r.id == p)
                .ok_or_else(|| UiError::NotFound(format!("profile \"profiles/{p}\"")))?,
        ),
        None => None,
    };
    let counts = ov::band_counts(store, PROFILE_SCORECARD).await?;
    let hist = ov::histogram(store, PROFILE_SCORECARD, profile.as_deref()).await?;
    let runs = ov::recent_runs(store, RUNS_SHOWN).await?;
    let points = run_points(&runs);

    let by_profile = bands_per_profile(&counts);
    let total: u64 = counts.iter().map(|c| c.count).sum();
    let latest_of = |p: &str| points.iter().rev().find(|r| r.profile == p);

    let histogram = histogram_chart(&hist, chosen);
    let trend = trend_chart(&points, profile.as_deref(), &profiles, runs.len());

    let body = html! {
        h1 { "Portfolio" }
        div.card {
            span.stat { b { (total) } "accounts scored" }
            @for (k, name) in ["red", "yellow", "green"].iter().enumerate() {
                span.stat {
                    b { (by_profile.values().map(|r| r[k]).sum::<u64>()) }
                    a href={ "/ui/risk?band=" (name) } { (name) }
                }
            }
            form.filters method="get" action="/ui/" {
                label { "Profile"
                    select name="profile" {
                        option value="" { "every profile" }
                        @for p in &profiles {
                            option value=(p.id) selected[profile.as_deref() == Some(p.id.as_str())] { (p.display_name) }
                        }
                    }
                }
                button.primary type="submit" { "Show" }
            }
        }
        div.grid {
            div.card { (histogram) }
            div.card { (trend) }
        }
        div.card {
            h2 { "Bands per profile" }
            div.scroll { table {
                thead { tr {
                    th { "Profile" } th.num { "Accounts" } th.num { "Red" } th.num { "Yellow" } th.num { "Green" }
                    th.num { "Mean score" } th.num { "KPI coverage" } th.num { "Mean churn probability" }
                } }
                tbody {
                    @for (id, row) in &by_profile {
                        @let last = latest_of(id);
                        tr {
                            td { a href={ "/ui/?profile=" (encode_path(id)) } { (profile_name(&profiles, id)) } }
                            td.num { (row.iter().sum::<u64>()) }
                            @for (k, band) in ["red", "yellow", "green"].iter().enumerate() {
                                td.num { a href=(risk_href(id, band)) { (row[k]) } }
                            }
                            td.num { (last.map_or_else(|| "–".to_owned(), |r| num(r.mean_score, 2))) }
                            td.num { (pct(last.and_then(|r| r.mean_coverage))) }
                            td.num { (pct(last.and_then(|r| r.mean_churn))) }
                        }
                    }
                    @if by_profile.is_empty() {
                        tr { td colspan="8" { "No account has a score yet." } }
                    }
                }
            } }
            p.muted { "KPI coverage: the share of KPIs with a value, averaged over the accounts of the profile's latest run. Means come from the latest run that scored the profile." }
        }
    };
    Ok(layout::page("Portfolio", Nav::Portfolio, who, body))
}

/// The latest rows' counts per profile: red, yellow, green, other.
fn bands_per_profile(counts: &[ov::BandCount]) -> BTreeMap<String, [u64; 4]> {
    let mut by_profile: BTreeMap<String, [u64; 4]> = BTreeMap::new();
    for c in counts {
        let row = by_profile.entry(c.profile_id.clone()).or_default();
        let k = match c.band.parse::<Band>() {
            Ok(Band::Red) => 0,
            Ok(Band::Yellow) => 1,
            Ok(Band::Green) => 2,
            Err(_) => 3,
        };
        row[k] += c.count;
    }
    by_profile
}

/// The histogram of the latest scores, coloured by the chosen profile's bands.
fn histogram_chart(hist: &[u64; HISTOGRAM_BUCKETS], chosen: Option<&ProfileRecord>) -> Markup {
    let (yellow_from, green_from) = chosen.map_or((3.0, 7.0), |p| {
        (p.yellow_from.unwrap_or(3.0), p.green_from.unwrap_or(7.0))
    });
    let bars: Vec<Bar> = (0..HISTOGRAM_BUCKETS)
        .map(|k| {
            let lo = k as f64;
            Bar {
                label: format!("{k}–{}", k + 1),
                value: hist[k] as f64,
                color: if lo + 1.0 <= yellow_from {
                    svg::RED
                } else if lo + 1.0 <= green_from {
                    svg::YELLOW
                } else {
                    svg::GREEN
                },
                href: None,
            }
        })
        .collect();
    let scope = chosen.map_or_else(|| "every profile".to_owned(), |p| p.display_name.clone());
    svg::bar_chart(
        "histogram",
        &format!("Score histogram: {scope}"),
        &format!(
            "Latest profile scores of {scope} per point of the 0 to 10 scale: {}.",
            hist.iter()
                .enumerate()
                .map(|(k, n)| format!("{k} to {}: {n}", k + 1))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "score",
        "accounts",
        &bars,
    )
}

/// The mean score of each recent run, one line per profile (only `profile` when chosen).
fn trend_chart(
    points: &[RunPoint],
    profile: Option<&str>,
    profiles: &[ProfileRecord],
    runs: usize,
) -> Markup {
    let mut series_of: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for p in points {
        if profile.is_none_or(|c| c == p.profile) {
            series_of
                .entry(p.profile.clone())
                .or_default()
                .push((svg::t(p.as_of), p.mean_score));
        }
    }
    let series: Vec<Series> = series_of
        .into_iter()
        .enumerate()
        .map(|(i, (id, pts))| Series {
            name: profile_name(profiles, &id),
            color: svg::PALETTE[i % svg::PALETTE.len()],
            points: pts,
            dashed: false,
        })
        .collect();
    if series.is_empty() {
        html! { p.note { "No scoring run has recorded its mean scores yet (runs written before this version keep none): the chart appears after the next run." } }
    } else {
        let from = points.first().map_or_else(Utc::now, |p| p.as_of);
        let to = points.last().map_or_else(Utc::now, |p| p.as_of);
        svg::line_chart(
            "trend",
            "Mean score over time",
            &format!(
                "Mean profile score of each scoring run over the last {} runs, one line per profile.",
                runs
            ),
            &Axis::time("run date (UTC)", from, to),
            &Axis::numeric("mean score", 0.0, 10.0, 0),
            &series,
            &[],
        )
    }
}
