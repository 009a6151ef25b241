//! Raw events that age out (docs/ingestion.md "Retention of raw events").
//!
//! Scoring and learning read the daily roll-ups (`usage_daily`) only; raw events serve
//! idempotency (an event sent again is recognised by its (account, event id)) and
//! erasure. Retention removes raw events older than a cut and keeps every roll-up:
//! - PostgreSQL: `events` is partitioned by UTC month (migration `m20261207_000019`):
//!   the partitions wholly before the cut are dropped (a whole month at a time, so raw
//!   events stay between N and N + 31 days), then their idempotency keys
//!   (`event_keys`);
//! - SQLite: the events before the cut (the start of its UTC day) are deleted in
//!   batches of [`DELETE_BATCH`] rows, one short write transaction each, so ingestion
//!   waits at most one batch.
//!
//! Both then delete the `usage_daily_users` rows of the days before the watermark
//! (they only serve to count a user once per day while events of that day still
//! arrive; the counts stay in `usage_daily.distinct_users`).
//!
//! The watermark (`event_retention.dropped_before`) is moved in the same transaction:
//! an event older than it can no longer be told from a duplicate of a dropped one, so
//! the events path ignores it (it is answered as a duplicate) rather than count it in
//! the roll-ups a second time.

use chrono::{DateTime, Datelike, Duration, NaiveTime, Utc};
use sea_orm::DbBackend;

use crate::{Store, StoreError};

use super::{postgres, sqlite, sqlx_err};

/// Rows deleted per transaction by retention on SQLite.
pub const DELETE_BATCH: usize = 10_000;

/// What one retention pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgedOut {
    /// Month partitions of `events` dropped (PostgreSQL).
    pub partitions_dropped: u32,
    /// Raw events deleted row by row (SQLite).
    pub events_deleted: u64,
    /// Idempotency keys deleted (PostgreSQL `event_keys`).
    pub keys_deleted: u64,
    /// `usage_daily_users` rows deleted.
    pub day_users_deleted: u64,
    /// Raw events before this instant are gone (none yet: `None`).
    pub dropped_before: Option<DateTime<Utc>>,
}

/// The cut of a retention of `days` days at `now`: the start (00:00 UTC) of the day
/// `days` days before `now`.
pub fn retention_cut(now: DateTime<Utc>, days: u32) -> DateTime<Utc> {
    (now - Duration::days(i64::from(days)))
        .date_naive()
        .and_time(NaiveTime::MIN)
        .and_utc()
}

/// Raw events before this instant were removed by retention (`None`: never).
pub async fn events_dropped_before(store: &Store) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(match store.backend() {
        DbBackend::Postgres => {
            postgres::dropped_before(store.conn().get_postgres_connection_pool())
                .await
                .map_err(sqlx_err)?
        }
        _ => sqlite::dropped_before(store.conn().get_sqlite_connection_pool())
            .await
            .map_err(sqlx_err)?,
    })
}

/// Creates the month partitions of `events` for the months of `times` that have none
/// (PostgreSQL; nothing to do on SQLite). The events path creates a missing month on
/// its first event; the retention job creates the current and next months ahead.
/// Returns how many were created.
pub async fn create_event_partitions(
    store: &Store,
    times: impl IntoIterator<Item = DateTime<Utc>>,
) -> Result<u32, StoreError> {
    if store.backend() != DbBackend::Postgres {
        return Ok(0);
    }
    Ok(
        postgres::create_partitions(store.conn().get_postgres_connection_pool(), times)
            .await
            .map_err(sqlx_err)?,
    )
}

/// Removes the raw events before `cut` (see the module's documentation); the roll-ups
/// are kept.
pub async fn age_out_events(store: &Store, cut: DateTime<Utc>) -> Result<AgedOut, StoreError> {
    Ok(match store.backend() {
        DbBackend::Postgres => {
            let (partitions_dropped, keys_deleted, day_users_deleted, dropped_before) =
                postgres::drop_partitions_before(store.conn().get_postgres_connection_pool(), cut)
                    .await
                    .map_err(sqlx_err)?;
            AgedOut {
                partitions_dropped,
                keys_deleted,
                day_users_deleted,
                dropped_before,
                ..AgedOut::default()
            }
        }
        _ => {
            let pool = store.conn().get_sqlite_connection_pool();
            let (events_deleted, day_users_deleted) =
                sqlite::delete_events_before(pool, cut, DELETE_BATCH)
                    .await
                    .map_err(sqlx_err)?;
            AgedOut {
                events_deleted,
                day_users_deleted,
                dropped_before: sqlite::dropped_before(pool).await.map_err(sqlx_err)?,
                ..AgedOut::default()
            }
        }
    })
}

/// One pass of the ingestion service's retention job at `now`: the partitions of this
/// month and the next are created ahead (PostgreSQL), then, when `retention_days` is
/// set, the raw events older than that many days are removed ([`age_out_events`] at
/// [`retention_cut`]).
pub async fn event_retention_pass(
    store: &Store,
    now: DateTime<Utc>,
    retention_days: Option<u32>,
) -> Result<AgedOut, StoreError> {
    let month_start = now
        .date_naive()
        .with_day(1)
        .unwrap_or(now.date_naive())
        .and_time(NaiveTime::MIN)
        .and_utc();
    create_event_partitions(store, [now, month_start + Duration::days(32)]).await?;
    match retention_days {
        Some(days) => age_out_events(store, retention_cut(now, days)).await,
        None => Ok(AgedOut::default()),
    }
}
