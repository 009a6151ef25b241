//! The page frame shared by every page: head, inline CSS (no external asset), the
//! navigation, and the small formatting helpers of the pages.

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};

/// Which navigation entry a page belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Nav {
    Portfolio,
    Risk,
    Account,
    Model,
    None,
}

/// The one style sheet, inline: readable from a phone's width (one column, tables
/// scroll sideways) to a laptop's (cards side by side).
const CSS: &str = r#"
:root{--red:#c62828;--yellow:#b7950b;--green:#2e7d32;--ink:#1d2330;--mute:#5b6478;--line:#d9dde6;--bg:#f5f6f9;--card:#fff;--accent:#1f5fbf}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:var(--bg)}
header{background:#1d2330;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;align-items:center;gap:.4rem 1.2rem}
header .brand{font-weight:700;letter-spacing:.02em}
header nav{display:flex;flex-wrap:wrap;gap:.2rem .9rem}
header a{color:#cfd8ea;text-decoration:none}
header a.on,header a:hover{color:#fff;text-decoration:underline}
header .who{margin-left:auto;font-size:.85rem;color:#cfd8ea;display:flex;gap:.5rem;align-items:center}
header form{margin:0}
header button{font:inherit;font-size:.85rem;background:none;border:1px solid #8893aa;color:#fff;border-radius:4px;padding:.1rem .5rem;cursor:pointer}
main{max-width:1200px;margin:0 auto;padding:1rem}
h1{font-size:1.4rem;margin:.2rem 0 1rem}
h2{font-size:1.1rem;margin:0 0 .6rem}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:1rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:1rem;margin-bottom:1rem;min-width:0}
.muted{color:var(--mute);font-size:.9rem}
.note{background:#fff8e1;border:1px solid #f0d68a;border-radius:6px;padding:.6rem .8rem}
.error{background:#fdecea;border:1px solid #f2b8b5;border-radius:6px;padding:.6rem .8rem}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.92rem}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600;color:var(--mute);white-space:nowrap}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.band{display:inline-block;min-width:4.2em;text-align:center;border-radius:10px;padding:0 .5em;color:#fff;font-size:.82rem}
.band.red{background:var(--red)}.band.yellow{background:var(--yellow)}.band.green{background:var(--green)}.band.none{background:#8893aa}
.up{color:var(--green)}.down{color:var(--red)}
.stat{display:inline-block;margin:0 1.4rem .4rem 0}
.stat b{display:block;font-size:1.5rem}
form.filters{display:flex;flex-wrap:wrap;gap:.6rem 1rem;align-items:flex-end}
form.filters label{display:flex;flex-direction:column;font-size:.85rem;color:var(--mute)}
input,select{font:inherit;padding:.3rem .4rem;border:1px solid var(--line);border-radius:4px;background:#fff}
button.primary{font:inherit;background:var(--accent);color:#fff;border:0;border-radius:4px;padding:.4rem .9rem;cursor:pointer}
a{color:var(--accent)}
svg.chart{width:100%;height:auto;display:block;max-width:720px}
svg.chart text{font:12px system-ui,sans-serif;fill:var(--ink)}
svg.chart .axis{stroke:#8893aa;stroke-width:1}
svg.chart .grid{stroke:#e6e9ef;stroke-width:1}
svg.chart .title{font-weight:600;font-size:13px}
ul.drivers{margin:.2rem 0;padding-left:1.1rem}
.login{max-width:420px;margin:3rem auto}
.login input{width:100%}
@media (max-width:600px){main{padding:.5rem}.card{padding:.7rem}h1{font-size:1.2rem}header .who{margin-left:0}}
"#;

/// A whole page: `title`, the navigation with `nav` marked, who is signed in (`None`
/// with auth off: no logout button), and `body`.
pub(crate) fn page(title: &str, nav: Nav, who: Option<&str>, body: Markup) -> Markup {
    let link = |href: &str, label: &str, me: Nav| {
        html! { a href=(href) class=[(nav == me).then_some("on")] { (label) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Vitals" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    span.brand { "Vitals" }
                    nav {
                        (link("/ui/", "Portfolio", Nav::Portfolio))
                        (link("/ui/risk", "At risk", Nav::Risk))
                        (link("/ui/model", "Model", Nav::Model))
                    }
                    @if let Some(who) = who {
                        div.who {
                            span { "signed in: " (who) }
                            form method="post" action="/ui/logout" {
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A band as a coloured label.
pub(crate) fn band(b: &str) -> Markup {
    let class = match b {
        "red" | "yellow" | "green" => b,
        _ => "none",
    };
    let text = if b.is_empty() { "none" } else { b };
    html! { span class={ "band " (class) } { (text) } }
}

/// A number with `digits` decimals.
pub(crate) fn num(x: f64, digits: usize) -> String {
    let s = format!("{x:.digits$}");
    // No "-0.00": a value that rounds to zero shows as zero.
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        s[1..].to_owned()
    } else {
        s
    }
}

/// A signed change (`+0.40`, `-1.20`) coloured up or down, or `–` when unknown.
pub(crate) fn change(x: Option<f64>, digits: usize) -> Markup {
    match x {
        None => html! { span.muted { "–" } },
        Some(d) if d > 0.0 => html! { span.up { "+" (num(d, digits)) } },
        Some(d) if d < 0.0 => html! { span.down { (num(d, digits)) } },
        Some(_) => html! { span { (num(0.0, digits)) } },
    }
}

/// A probability as a percentage, or `–`.
pub(crate) fn pct(p: Option<f64>) -> String {
    p.map_or_else(|| "–".to_owned(), |p| format!("{:.1}%", p * 100.0))
}

/// A time as `YYYY-MM-DD HH:MM UTC`.
pub(crate) fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A day as `YYYY-MM-DD`.
pub(crate) fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// The link of an account's page.
pub(crate) fn account_href(id: &str) -> String {
    format!("/ui/accounts/{}", super::encode_path(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_never_show_a_negative_zero() {
        assert_eq!(num(-0.0, 0), "0");
        assert_eq!(num(-0.001, 2), "0.00");
        assert_eq!(num(-0.5, 2), "-0.50");
        assert_eq!(num(12.345, 1), "12.3");
    }
}
