//! The demo's printed portfolio summary.

use std::fmt::Write as _;

use vitals_proto::common::v1 as cpb;

use super::{DemoSummary, HORIZON_DAYS, OBSERVATION_INTERVAL_DAYS};

/// `profiles/web` -> `web`.
pub(super) fn short(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

fn band_name(b: cpb::Band) -> &'static str {
    match b {
        cpb::Band::Red => "red",
        cpb::Band::Yellow => "yellow",
        cpb::Band::Green => "green",
        cpb::Band::Unspecified => "-",
    }
}

/// The printed portfolio summary. Its line formats are relied on by the demo test.
pub(super) fn render(
    s: &DemoSummary,
    all: &cpb::Distribution,
    (churn_lift, health_backtest_auc, health_lift): (f64, f64, f64),
    (observations, positives): (u32, u32),
) -> String {
    let mut t = String::new();
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "Portfolio as of {}: {} accounts scored",
        s.as_of, s.scored
    );
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "{:<44} {:>7} {:>7} {:>7} {:>7}",
        "profile", "scored", "red", "yellow", "green"
    );
    let mut total = [0u32; 4];
    for p in &s.profiles {
        let _ = writeln!(
            t,
            "{:<44} {:>7} {:>7} {:>7} {:>7}",
            format!("{} ({})", p.display_name, short(&p.profile)),
            p.scored,
            p.bands[0],
            p.bands[1],
            p.bands[2]
        );
        total[0] += p.scored;
        for (i, b) in p.bands.iter().enumerate() {
            total[i + 1] += b;
        }
    }
    let _ = writeln!(
        t,
        "{:<44} {:>7} {:>7} {:>7} {:>7}",
        "total", total[0], total[1], total[2], total[3]
    );
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "Health scores (0..10), all profiles: mean {:.2}, median {:.2}, p10 {:.2}, p90 {:.2}",
        all.mean, all.median, all.p10, all.p90
    );
    let widest = all.bins.iter().map(|b| b.count).max().unwrap_or(0).max(1);
    for (i, b) in all.bins.iter().enumerate() {
        let bar = (f64::from(b.count) / f64::from(widest) * 50.0).round() as usize;
        let close = if i + 1 == all.bins.len() { ']' } else { ')' };
        let _ = writeln!(
            t,
            "  [{:>2}, {:>2}{close} {:>6} {}",
            b.lower,
            b.upper,
            b.count,
            "#".repeat(bar)
        );
    }
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "The {} accounts most at risk (lowest health score) and what pulls them down \
         (KPI, peer percentile):",
        s.at_risk.len()
    );
    let _ = writeln!(
        t,
        "{:>3}  {:<10} {:<14} {:>5} {:<6} {:>6}  drivers",
        "#", "account", "profile", "score", "band", "churn"
    );
    for (i, r) in s.at_risk.iter().enumerate() {
        let drivers: Vec<String> = r
            .drivers
            .iter()
            .map(|(k, p, _)| format!("{k} (p{p:.0})"))
            .collect();
        let _ = writeln!(
            t,
            "{:>3}  {:<10} {:<14} {:>5.2} {:<6} {:>6}  {}",
            i + 1,
            r.account_id,
            short(&r.profile),
            r.score,
            band_name(r.band),
            r.churn_probability
                .map(|p| format!("{:.0}%", p * 100.0))
                .unwrap_or_else(|| "-".into()),
            if drivers.is_empty() {
                "-".to_string()
            } else {
                drivers.join(", ")
            }
        );
    }
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "Learner evaluation (global model; {observations} observations, one per active \
         account every {OBSERVATION_INTERVAL_DAYS} days; {positives} churned within \
         {HORIZON_DAYS} days):"
    );
    let _ = writeln!(
        t,
        "  churn probability: AUC {:.3} in-sample, {:.3} time-split backtest; top-decile \
         lift {:.2}",
        s.churn_auc, s.churn_backtest_auc, churn_lift
    );
    let _ = writeln!(
        t,
        "  health score:      AUC {:.3} in-sample, {:.3} time-split backtest; top-decile \
         lift {:.2}",
        s.health_score_auc, health_backtest_auc, health_lift
    );
    let _ = writeln!(t, "  (AUC 0.5 = random, 1 = perfect ranking of who churns)");
    let _ = writeln!(t);
    t
}
