//! The "at risk" page (`/ui/risk`): the latest profile scores, lowest first, filterable
//! by profile, band and churn probability, each with its top drivers and its change
//! since the account's previous snapshot.

use axum::extract::{Extension, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::Duration;
use maud::{Markup, html};
use vitals_server::HttpAuth;
use vitals_store::profiles as sp;
use vitals_store::scoring::overview::{self as ov, RiskFilter};
use vitals_store::scoring::{self as ss, PROFILE_SCORECARD};
use vitals_store::snapshot::StoredDriver;
use vitals_store::values::Band;

use super::layout::{self, Nav, account_href, change, num, pct};
use super::{Params, Ui, UiError, guarded};

/// Rows shown unless `limit` says otherwise.
pub(crate) const DEFAULT_ROWS: u64 = 50;
/// Most rows one page shows (`limit` above it: 400).
pub(crate) const MAX_ROWS: u64 = 500;
/// Drivers shown per account.
const TOP_DRIVERS: usize = 3;

/// GET /ui/risk.
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

/// The filters of the page's query, checked.
fn filter(params: &Params) -> Result<(RiskFilter, u64), UiError> {
    let profile_id = params.profile("profile")?;
    let mut bands = Vec::new();
    for b in params.all("band") {
        let band: Band = b.parse().map_err(|_| {
            let all: Vec<&str> = Band::ALL.iter().map(|b| b.as_str()).collect();
            UiError::param("band", format!("\"{b}\" is not one of {}", all.join(", ")))
        })?;
        bands.push(band.as_str().to_owned());
    }
    let min_churn = match params.get("min_churn") {
        None => None,
        Some(s) => {
            let v: f64 = s.parse().map_err(|_| {
                UiError::param("min_churn", "not a number (a percentage, 0 to 100)")
            })?;
            if !(0.0..=100.0).contains(&v) {
                return Err(UiError::param("min_churn", "out of range (0 to 100)"));
            }
            Some(v / 100.0)
        }
    };
    let limit = match params.get("limit") {
        None => DEFAULT_ROWS,
        Some(s) => {
            let v: u64 = s
                .parse()
                .map_err(|_| UiError::param("limit", "not a whole number"))?;
            if !(1..=MAX_ROWS).contains(&v) {
                return Err(UiError::param(
                    "limit",
                    format!("out of range (1 to {MAX_ROWS})"),
                ));
            }
            v
        }
    };
    Ok((
        RiskFilter {
            profile_id,
            bands,
            min_churn_probability: min_churn,
        },
        limit,
    ))
}

/// Up to `n` drivers pulling the score down, most negative first, as a list.
pub(crate) fn down_drivers(all: &[StoredDriver], n: usize) -> Markup {
    let mut down: Vec<&StoredDriver> = all.iter().filter(|d| d.contribution() < 0.0).collect();
    down.sort_by(|a, b| a.contribution().total_cmp(&b.contribution()));
    html! {
        @if down.is_empty() {
            span.muted { "none pulling down" }
        } @else {
            ul.drivers {
                @for d in down.iter().take(n) {
                    li {
                        (d.0) " "
                        span.down { (num(d.contribution(), 2)) }
                        @if let Some(p) = d.3 { span.muted { " (peer pct " (num(p * 100.0, 0)) ")" } }
                    }
                }
            }
        }
    }
}

async fn render(
    store: &vitals_store::Store,
    params: &Params,
    who: Option<&str>,
) -> Result<Markup, UiError> {
    let (f, limit) = filter(params)?;
    let profiles = sp::load_profiles(store).await?;
    let rows = ov::at_risk(store, &f, limit).await?;
    let ids: Vec<String> = rows.iter().map(|r| r.account_id.clone()).collect();
    let accounts = sp::load_accounts_by_id(store, &ids).await?;
    let name_of = |id: &str| {
        accounts
            .iter()
            .find(|a| a.id == id)
            .map(|a| a.name.clone())
            .filter(|n| !n.is_empty())
    };
    // The previous snapshot of each row (one indexed read each: `limit` at most).
    let mut previous = Vec::with_capacity(rows.len());
    for r in &rows {
        let before = r.as_of - Duration::microseconds(1);
        previous
            .push(ss::snapshot_at(store, &r.account_id, PROFILE_SCORECARD, Some(before)).await?);
    }
    let min_churn_text = f
        .min_churn_probability
        .map(|c| num(c * 100.0, 0))
        .unwrap_or_default();
    let body = html! {
        h1 { "Accounts most at risk" }
        div.card {
            form.filters method="get" action="/ui/risk" {
                label { "Profile"
                    select name="profile" {
                        option value="" { "every profile" }
                        @for p in &profiles {
                            option value=(p.id) selected[f.profile_id.as_deref() == Some(p.id.as_str())] { (p.display_name) }
                        }
                    }
                }
                label { "Band"
                    select name="band" {
                        option value="" { "any band" }
                        @for b in Band::ALL.iter().map(|b| b.as_str()) {
                            option value=(b) selected[f.bands.iter().any(|x| x == b)] { (b) }
                        }
                    }
                }
                label { "Churn probability at least (%)"
                    input type="number" name="min_churn" min="0" max="100" step="1" value=(min_churn_text);
                }
                label { "Rows"
                    input type="number" name="limit" min="1" max=(MAX_ROWS) value=(limit);
                }
                button.primary type="submit" { "Filter" }
            }
        }
        div.card {
            p.muted { "Lowest profile score first; " (rows.len()) " shown. Change: since the account's previous snapshot." }
            div.scroll { table {
                thead { tr {
                    th { "Account" } th { "Profile" } th.num { "Score" } th { "Band" }
                    th.num { "Change" } th.num { "Churn probability" } th.num { "Change" }
                    th { "Top drivers down" } th { "As of" }
                } }
                tbody {
                    @for (r, prev) in rows.iter().zip(&previous) {
                        tr {
                            td {
                                a href=(account_href(&r.account_id)) { (name_of(&r.account_id).unwrap_or_else(|| r.account_id.clone())) }
                                br; span.muted { (r.account_id) }
                            }
                            td { (if r.profile_id.is_empty() { "–" } else { r.profile_id.as_str() }) }
                            td.num { (num(r.value, 2)) }
                            td { (layout::band(&r.band)) }
                            td.num { (change(prev.as_ref().map(|p| r.value - p.value), 2)) }
                            td.num { (pct(r.churn_probability)) }
                            td.num { (change(prev.as_ref().and_then(|p| Some((r.churn_probability? - p.churn_probability?) * 100.0)), 1)) }
                            td { (down_drivers(&crate::domain::stored::drivers(r), TOP_DRIVERS)) }
                            td { (layout::day(r.as_of)) }
                        }
                    }
                    @if rows.is_empty() {
                        tr { td colspan="9" { "No account matches." } }
                    }
                }
            } }
        }
    };
    Ok(layout::page("At risk", Nav::Risk, who, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn filters_are_checked_and_name_the_field() {
        let (f, limit) = filter(&params(&[
            ("band", "red"),
            ("min_churn", "40"),
            ("profile", "p"),
        ]))
        .unwrap();
        assert_eq!(f.bands, ["red"]);
        assert_eq!(f.min_churn_probability, Some(0.4));
        assert_eq!(f.profile_id.as_deref(), Some("p"));
        assert_eq!(limit, DEFAULT_ROWS);
        for (k, v) in [
            ("band", "blue"),
            ("min_churn", "x"),
            ("min_churn", "101"),
            ("limit", "0"),
            ("limit", "501"),
        ] {
            match filter(&params(&[(k, v)])) {
                Err(UiError::Param { field, .. }) => assert_eq!(field, k),
                other => panic!("{k}={v}: {other:?}"),
            }
        }
    }
}
