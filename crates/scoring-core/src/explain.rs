//! "Why did it change": the difference between two explained snapshots of one account.

use crate::population::Explanation;

/// One KPI's part in a score change.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeItem {
    /// KPI name.
    pub name: String,
    /// Contribution in the earlier snapshot (0 when the KPI was absent).
    pub before: f64,
    /// Contribution in the later snapshot (0 when the KPI is absent).
    pub after: f64,
    /// after - before, in score points.
    pub delta: f64,
    /// KPI value in the earlier snapshot, if present.
    pub value_before: Option<f64>,
    /// KPI value in the later snapshot, if present.
    pub value_after: Option<f64>,
}

/// The change of a score between two snapshots, split per KPI.
///
/// Since each snapshot's score is 5 + its contributions + its adjustment, the items'
/// deltas plus `adjustment_delta` add up to `delta` exactly (up to rounding).
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreChange {
    /// Score after - score before; `None` unless both snapshots have a score.
    pub delta: Option<f64>,
    /// Change of the usage adjustment's contribution (momentum, webhook).
    pub adjustment_delta: f64,
    /// Every KPI present in either snapshot, largest |delta| first (ties by name).
    pub items: Vec<ChangeItem>,
}

/// Splits the change between two explained snapshots of the same account per KPI;
/// KPIs are matched by name, so a catalogue change in between is harmless.
pub fn explain_change(before: &Explanation, after: &Explanation) -> ScoreChange {
    let mut items: Vec<ChangeItem> = before
        .contributions
        .iter()
        .map(|b| ChangeItem {
            name: b.name.clone(),
            before: b.contribution,
            after: 0.0,
            delta: -b.contribution,
            value_before: Some(b.value),
            value_after: None,
        })
        .collect();
    items.sort_by(|a, b| a.name.cmp(&b.name));
    for a in &after.contributions {
        match items.binary_search_by(|it| it.name.as_str().cmp(&a.name)) {
            Ok(j) => {
                let it = &mut items[j];
                it.after = a.contribution;
                it.delta = a.contribution - it.before;
                it.value_after = Some(a.value);
            }
            Err(j) => items.insert(
                j,
                ChangeItem {
                    name: a.name.clone(),
                    before: 0.0,
                    after: a.contribution,
                    delta: a.contribution,
                    value_before: None,
                    value_after: Some(a.value),
                },
            ),
        }
    }
    items.sort_by(|a, b| {
        b.delta
            .abs()
            .total_cmp(&a.delta.abs())
            .then_with(|| a.name.cmp(&b.name))
    });
    let delta = match (before.score.score, after.score.score) {
        (Some(b), Some(a)) => Some(a - b),
        _ => None,
    };
    ScoreChange {
        delta,
        adjustment_delta: after.adjustment_contribution - before.adjustment_contribution,
        items,
    }
}
