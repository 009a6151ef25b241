//! The periodic job of raw-event retention (docs/ingestion.md "Retention of raw events"):
//! creates the month partitions of `events` ahead (PostgreSQL) and, when
//! `--event-retention-days` is set, removes raw events older than that. One pass is
//! [`retention_pass`], a single call; [`spawn`] runs it under a cluster-wide lease,
//! calls it at start-up and then every [`RETENTION_EVERY`].

use std::time::Duration;

use chrono::Utc;
use vitals_store::ingestion::{AgedOut, event_retention_pass};
use vitals_store::{Store, StoreError};

/// How often the job runs.
pub const RETENTION_EVERY: Duration = Duration::from_secs(3_600);

/// One pass at the current time: partitions of this month and the next, then the
/// retention of `retention_days` days if set.
pub async fn retention_pass(
    store: &Store,
    retention_days: Option<u32>,
) -> Result<AgedOut, StoreError> {
    event_retention_pass(store, Utc::now(), retention_days).await
}

/// Runs [`retention_pass`] now (on every replica) and then every [`RETENTION_EVERY`]
/// until the store is closed, on the one replica holding the lease
/// `schedule:ingestion-retention` (docs/deploy.md section 8). A failed pass is logged and tried again at the next tick (nothing is half
/// done: each partition drop, and each batch of deletes, is its own transaction).
pub fn spawn(store: Store, retention_days: Option<u32>, leases: &vitals_server::Leases) {
    if retention_days.is_none() && store.backend() != vitals_store::sea_orm::DbBackend::Postgres {
        // Nothing to do: no partitions on SQLite, and no retention asked for.
        return;
    }
    let stop = {
        let store = store.clone();
        move || store.is_closed()
    };
    // One pass at start-up on every replica, outside the lease: it is idempotent
    // (partitions are created if missing, a month already dropped is skipped), and a
    // replica restarted before its old lease expired must not wait for it.
    {
        let store = store.clone();
        tokio::spawn(async move { pass_and_log(&store, retention_days).await });
    }
    leases.spawn_schedule(
        "ingestion-retention",
        RETENTION_EVERY,
        RETENTION_EVERY,
        stop,
        move || {
            let store = store.clone();
            async move { pass_and_log(&store, retention_days).await }
        },
    );
}

async fn pass_and_log(store: &Store, retention_days: Option<u32>) {
    match retention_pass(store, retention_days).await {
        Ok(a)
            if a.partitions_dropped == 0
                && a.events_deleted == 0
                && a.keys_deleted == 0
                && a.day_users_deleted == 0 => {}
        Ok(a) => tracing::info!(
            partitions_dropped = a.partitions_dropped,
            events_deleted = a.events_deleted,
            keys_deleted = a.keys_deleted,
            day_users_deleted = a.day_users_deleted,
            dropped_before = ?a.dropped_before,
            "raw events aged out"
        ),
        Err(e) if store.is_closed() => {
            tracing::debug!(error = %e, "event retention: store closed");
        }
        Err(e) => tracing::warn!(error = %e, "event retention: pass failed"),
    }
}
