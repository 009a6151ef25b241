//! Band changes of runs committed by other replicas (docs/deploy.md): on PostgreSQL,
//! where several scoring processes share the database, each one polls `score_runs` every
//! `--score-cache-refresh-ms` for runs it did not write, reads their band changes back
//! from the snapshots and sends them to its WatchScores subscribers, in run order.
//!
//! Runs are serialised across replicas (the lease `scoring:run`), so run ids commit in
//! order; the poller takes this process's run lock while it reads, so a run of its own is
//! either already sent (and skipped) or not committed yet.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use vitals_store::scoring as ss;

use crate::Inner;
use crate::domain::compute::BandChange;

/// Starts the poller; it ends when the service is dropped.
pub(crate) fn spawn(inner: Weak<Inner>, every: Duration) {
    tokio::spawn(async move {
        let mut last: Option<i64> = None;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(inner) = inner.upgrade() else {
                return;
            };
            if inner.work.is_shut_down() {
                return;
            }
            if let Err(e) = poll(&inner, &mut last).await {
                tracing::warn!(error = %e, "WatchScores: cannot read other replicas' runs");
            }
        }
    });
}

/// One look at the runs committed since `last` (the first look only records where the
/// runs are).
async fn poll(inner: &Arc<Inner>, last: &mut Option<i64>) -> Result<(), vitals_store::StoreError> {
    let store = &inner.store;
    let Some(after) = *last else {
        *last = Some(ss::last_committed_run(store).await?);
        return Ok(());
    };
    let _serial = inner.run_lock.lock().await;
    let runs = ss::committed_runs_after(store, after).await?;
    let own: HashSet<i64> = inner
        .own_runs
        .lock()
        .map(|mut o| std::mem::take(&mut *o))
        .unwrap_or_default();
    for run_id in runs {
        *last = Some(run_id);
        if own.contains(&run_id) || inner.changes.receiver_count() == 0 {
            continue;
        }
        for c in ss::band_changes_of_run(store, run_id).await? {
            let _ = inner.changes.send(Arc::new(BandChange {
                account_id: c.account_id,
                profile_id: c.profile_id,
                scorecard_id: c.scorecard_id,
                old_band: c.old_band,
                new_band: c.new_band,
                old_value: c.old_value,
                new_value: c.new_value,
                as_of: c.as_of,
                run_id,
            }));
        }
    }
    Ok(())
}
