//! Recorded outcomes in the form learn-core labels with.

use std::collections::HashMap;

use vitals_learn_core::{Outcome, OutcomeKind};
use vitals_store::learner::OutcomeRecord;
use vitals_store::values::OutcomeKind as StoredKind;

/// Learn-core outcomes per account from the stored ones.
pub fn outcomes_by_account(records: &[OutcomeRecord]) -> HashMap<String, Vec<Outcome>> {
    let mut map: HashMap<String, Vec<Outcome>> = HashMap::new();
    for r in records {
        let kind = match r.kind.parse::<StoredKind>() {
            Ok(StoredKind::Churned) => OutcomeKind::Churned,
            Ok(StoredKind::Renewed) => OutcomeKind::Renewed,
            Ok(StoredKind::Inactive) | Err(_) => OutcomeKind::Inactive,
        };
        map.entry(r.account_id.clone()).or_default().push(Outcome {
            kind,
            at: r.at.date_naive(),
        });
    }
    map
}
