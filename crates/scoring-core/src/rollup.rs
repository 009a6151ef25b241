//! The roll-up of a parent account's score from its children's (docs/scoring.md
//! "Parent accounts"): one value next to the parent's own score, from the profile scores
//! its direct children got in the same run.

use chrono::NaiveDate;

use crate::inputs::Subscription;

/// How children's scores are rolled up into their parent's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RollupMethod {
    /// Mean weighted by each child's current MRR; a child without MRR weighs 0, and when
    /// no child has any MRR the plain mean.
    #[default]
    MrrWeighted,
    /// Plain mean.
    Mean,
    /// The lowest child score (the weakest link).
    Min,
}

impl RollupMethod {
    /// Every method, by name.
    pub const ALL: [RollupMethod; 3] = [Self::MrrWeighted, Self::Mean, Self::Min];

    /// The name used in settings and in the API: `mrr-weighted`, `mean`, `min`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MrrWeighted => "mrr-weighted",
            Self::Mean => "mean",
            Self::Min => "min",
        }
    }

    /// The method named `s` (see [`RollupMethod::as_str`]).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// A rolled-up score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rollup {
    /// The value (on the children's scale).
    pub value: f64,
    /// Children rolled up.
    pub children: u32,
    /// The method actually used: [`RollupMethod::Mean`] when MRR weights were asked for
    /// and every child's MRR is 0.
    pub method: RollupMethod,
}

/// Rolls up `children` (score, MRR) with `method`; `None` without children. Scores and
/// MRRs that are not finite are skipped; a negative MRR weighs 0.
pub fn rollup(children: &[(f64, f64)], method: RollupMethod) -> Option<Rollup> {
    let kids: Vec<(f64, f64)> = children
        .iter()
        .filter(|(s, _)| s.is_finite())
        .map(|&(s, m)| (s, if m.is_finite() { m.max(0.0) } else { 0.0 }))
        .collect();
    if kids.is_empty() {
        return None;
    }
    let n = kids.len() as f64;
    let mean = kids.iter().map(|k| k.0).sum::<f64>() / n;
    let (value, method) = match method {
        RollupMethod::Min => (
            kids.iter().map(|k| k.0).fold(f64::INFINITY, f64::min),
            method,
        ),
        RollupMethod::Mean => (mean, method),
        RollupMethod::MrrWeighted => {
            let w: f64 = kids.iter().map(|k| k.1).sum();
            if w > 0.0 {
                (kids.iter().map(|k| k.0 * k.1).sum::<f64>() / w, method)
            } else {
                (mean, RollupMethod::Mean)
            }
        }
    };
    Some(Rollup {
        value,
        children: kids.len() as u32,
        method,
    })
}

/// The MRR of the subscriptions active on `day` (started on or before it, not ended).
pub fn current_mrr(subscriptions: &[Subscription], day: NaiveDate) -> f64 {
    subscriptions
        .iter()
        .filter(|s| s.start <= day && s.end.is_none_or(|e| day < e))
        .map(|s| s.mrr)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_round_trip_by_name() {
        for m in RollupMethod::ALL {
            assert_eq!(RollupMethod::parse(m.as_str()), Some(m));
        }
        assert_eq!(RollupMethod::parse("median"), None);
        assert_eq!(RollupMethod::default(), RollupMethod::MrrWeighted);
    }

    #[test]
    fn mrr_weighted_mean_min() {
        let kids = [(8.0, 300.0), (2.0, 100.0), (5.0, 0.0)];
        let r = rollup(&kids, RollupMethod::MrrWeighted).unwrap();
        assert!((r.value - (8.0 * 300.0 + 2.0 * 100.0) / 400.0).abs() < 1e-12);
        assert_eq!((r.children, r.method), (3, RollupMethod::MrrWeighted));
        let r = rollup(&kids, RollupMethod::Mean).unwrap();
        assert!((r.value - 5.0).abs() < 1e-12);
        assert_eq!(rollup(&kids, RollupMethod::Min).unwrap().value, 2.0);
    }

    #[test]
    fn no_mrr_falls_back_to_the_mean_and_no_children_to_none() {
        let r = rollup(&[(4.0, 0.0), (6.0, -5.0)], RollupMethod::MrrWeighted).unwrap();
        assert_eq!((r.value, r.method), (5.0, RollupMethod::Mean));
        assert_eq!(rollup(&[], RollupMethod::Mean), None);
        assert_eq!(rollup(&[(f64::NAN, 1.0)], RollupMethod::Min), None);
    }

    #[test]
    fn current_mrr_counts_active_lines_only() {
        let d = |m, day| NaiveDate::from_ymd_opt(2026, m, day).unwrap();
        let sub = |start, end, mrr| Subscription {
            start,
            end,
            mrr,
            quantity: None,
            add_on: false,
            discount: 0.0,
            billing_period_months: 1,
        };
        let subs = [
            sub(d(1, 1), None, 100.0),
            sub(d(1, 1), Some(d(3, 1)), 50.0),
            sub(d(6, 1), None, 25.0),
        ];
        assert_eq!(current_mrr(&subs, d(2, 1)), 150.0);
        assert_eq!(current_mrr(&subs, d(3, 1)), 100.0);
        assert_eq!(current_mrr(&subs, d(6, 1)), 125.0);
    }
}
