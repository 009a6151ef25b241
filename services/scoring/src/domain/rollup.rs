//! Parent accounts (docs/scoring.md "Parent accounts"): the roll-up of each parent's
//! direct children's profile scores of the run, stored in the parent's snapshot details.
//!
//! The children counted are those in the run's population with a profile score in it:
//! a run over every account sees every child that is not churned; a run over one profile
//! (or one account, whose population is its profile) sees the children in that profile.

use std::collections::HashMap;

use vitals_scoring_core::{RollupMethod, current_mrr, rollup};
use vitals_store::inputs::{AccountData, LoadedInputs};

use super::stored::{StoredRollup, r6};

/// What the roll-ups read of the loaded inputs: the current MRR of each account with a
/// parent (0 for the others), so that the inputs can be freed once the KPIs are computed.
pub(crate) fn child_mrr(loaded: &LoadedInputs, data: &[AccountData]) -> Vec<f64> {
    loaded
        .accounts
        .iter()
        .zip(data)
        .map(|(a, d)| {
            if a.parent_id.is_some() {
                current_mrr(&d.subscriptions, loaded.as_of)
            } else {
                0.0
            }
        })
        .collect()
}

/// The roll-up of every loaded parent with a scored child, by the parent's row:
/// `values[i]` is the profile score of `loaded.accounts[i]` in the run (as stored, so
/// that a reader can recompute the roll-up from the children's snapshots), none when it
/// has none; `mrr` is [`child_mrr`] of the run's inputs.
pub(crate) fn rollups(
    loaded: &LoadedInputs,
    values: &[Option<f64>],
    mrr: &[f64],
    method: RollupMethod,
) -> HashMap<usize, StoredRollup> {
    let mut children: HashMap<usize, Vec<(f64, f64)>> = HashMap::new();
    for (i, a) in loaded.accounts.iter().enumerate() {
        let (Some(parent), Some(Some(v))) = (&a.parent_id, values.get(i)) else {
            continue;
        };
        let Some(p) = loaded.index_of(parent) else {
            continue;
        };
        children.entry(p).or_default().push((*v, mrr[i]));
    }
    children
        .into_iter()
        .filter_map(|(p, kids)| {
            let r = rollup(&kids, method)?;
            Some((
                p,
                StoredRollup {
                    v: r6(r.value),
                    n: r.children,
                    m: r.method.as_str().to_string(),
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone, Utc};
    use vitals_scoring_core::Subscription;
    use vitals_store::inputs::{AccountData, AccountMeta};

    use super::*;

    fn account(id: &str, parent: Option<&str>) -> AccountMeta {
        AccountMeta {
            id: id.into(),
            name: String::new(),
            profile_id: None,
            status: "active".into(),
            attributes: serde_json::json!({}),
            created_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            parent_id: parent.map(Into::into),
        }
    }

    fn paying(mrr: f64) -> AccountData {
        AccountData {
            subscriptions: vec![Subscription {
                start: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
                end: None,
                mrr,
                quantity: None,
                add_on: false,
                discount: 0.0,
                billing_period_months: 1,
            }],
            ..AccountData::default()
        }
    }

    #[test]
    fn parents_roll_up_their_scored_direct_children() {
        // top <- a (300), b (100), c (no score); a <- a1; orphan's parent is not loaded.
        let loaded = LoadedInputs {
            as_of: NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(),
            accounts: vec![
                account("a", Some("top")),
                account("a1", Some("a")),
                account("b", Some("top")),
                account("c", Some("top")),
                account("orphan", Some("gone")),
                account("top", None),
            ],
            data: vec![
                paying(300.0),
                paying(0.0),
                paying(100.0),
                paying(50.0),
                paying(10.0),
                AccountData::default(),
            ],
            ..LoadedInputs::default()
        };
        let values = [Some(8.0), Some(4.0), Some(2.0), None, Some(1.0), Some(6.0)];
        let mrr = child_mrr(&loaded, &loaded.data);
        let r = rollups(&loaded, &values, &mrr, RollupMethod::MrrWeighted);
        assert_eq!(r.len(), 2);
        let top = &r[&5];
        assert_eq!((top.v, top.n, top.m.as_str()), (6.5, 2, "mrr-weighted"));
        // a's one child has no MRR: the plain mean.
        let a = &r[&0];
        assert_eq!((a.v, a.n, a.m.as_str()), (4.0, 1, "mean"));
        let min = rollups(&loaded, &values, &mrr, RollupMethod::Min);
        assert_eq!(min[&5].v, 2.0);
    }
}
