//! Raw events that age out (docs/ingestion.md "Retention of raw events").
//!
//! PostgreSQL: `events` becomes a table partitioned by `RANGE (occurred_at)`, one
//! partition per UTC month (`events_y2026m12`), and the idempotency key moves to a table
//! of its own, `event_keys (account_id, event_id, occurred_at)` with the primary key
//! `(account_id, event_id)`.
//!
//! Why a key table: a unique index of a partitioned table must contain the partition
//! key, so `events` can only be unique on `(account_id, event_id, occurred_at)`; the same
//! event id sent again with another time would land in another partition, and a check
//! across partitions (`NOT EXISTS` over every partition's index) costs one index probe
//! per partition per event and is still racy between concurrent batches. The key table
//! keeps the one unique key, race-free (its primary key), at the cost the old `events`
//! primary key had; the partitions themselves have no index at all (nothing reads raw
//! events by key: scoring and learning read the daily roll-ups), so a raw event costs
//! one heap insert there. Retention drops whole partitions and deletes the keys of the
//! same period (found through a BRIN index on `event_keys.occurred_at`, nearly free to
//! keep since keys arrive roughly in time order).
//!
//! The existing rows are kept: the old table is renamed, a partition is created for each
//! month it holds (and the current and next months), its rows are copied into the
//! partitions and their keys into `event_keys`, and it is dropped, in the migration's
//! transaction.
//!
//! Both back ends: `event_retention`, one row at most, `dropped_before`: raw events older
//! than it were dropped by retention, so an event older than it can no longer be told
//! from a duplicate and is ignored (counted as a duplicate) instead of moving the
//! roll-ups a second time. SQLite keeps its `events` table as it is (retention deletes
//! in batches there).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

// The trait's `&SchemaManager` has an elided lifetime; naming it makes it early-bound and
// no longer matches the trait.
#[allow(elided_lifetimes_in_paths)]
#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() != DbBackend::Postgres {
            db.execute_unprepared(
                "CREATE TABLE IF NOT EXISTS event_retention \
                 (id integer NOT NULL PRIMARY KEY, dropped_before timestamp_with_timezone_text NOT NULL)",
            )
            .await?;
            return Ok(());
        }
        db.execute_unprepared(
            "CREATE TABLE IF NOT EXISTS event_retention \
             (id integer NOT NULL PRIMARY KEY, dropped_before timestamptz NOT NULL)",
        )
        .await?;
        let partitioned = db
            .query_one_raw(sea_orm::Statement::from_string(
                DbBackend::Postgres,
                "SELECT 1 AS one FROM pg_class WHERE relname = 'events' AND relkind = 'p' \
                 AND relnamespace = current_schema()::regnamespace",
            ))
            .await?
            .is_some();
        if partitioned {
            return Ok(());
        }
        for sql in [
            "ALTER TABLE events RENAME TO events_unpartitioned",
            "ALTER INDEX IF EXISTS events_pkey RENAME TO events_unpartitioned_pkey",
            "CREATE TABLE events (\
                account_id varchar COLLATE \"C\" NOT NULL, \
                event_id varchar COLLATE \"C\" NOT NULL, \
                user_id varchar COLLATE \"C\", \
                event_type varchar COLLATE \"C\" NOT NULL, \
                occurred_at timestamptz NOT NULL, \
                value double precision) \
             PARTITION BY RANGE (occurred_at)",
            "CREATE TABLE event_keys (\
                account_id varchar COLLATE \"C\" NOT NULL, \
                event_id varchar COLLATE \"C\" NOT NULL, \
                occurred_at timestamptz NOT NULL, \
                PRIMARY KEY (account_id, event_id))",
            "CREATE INDEX event_keys_occurred_at ON event_keys USING brin (occurred_at)",
            // A partition per month of the old rows, and the current and next months.
            "DO $$ DECLARE m timestamp; BEGIN \
               FOR m IN SELECT DISTINCT date_trunc('month', occurred_at AT TIME ZONE 'UTC') \
                   FROM events_unpartitioned \
                 UNION SELECT date_trunc('month', now() AT TIME ZONE 'UTC') \
                 UNION SELECT date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month' \
               LOOP \
                 EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF events \
                   FOR VALUES FROM (%L) TO (%L)', \
                   'events_y' || to_char(m, 'YYYY') || 'm' || to_char(m, 'MM'), \
                   (m AT TIME ZONE 'UTC'), ((m + interval '1 month') AT TIME ZONE 'UTC')); \
               END LOOP; END $$",
            "INSERT INTO events (account_id, event_id, user_id, event_type, occurred_at, value) \
             SELECT account_id, event_id, user_id, event_type, occurred_at, value \
             FROM events_unpartitioned",
            "INSERT INTO event_keys (account_id, event_id, occurred_at) \
             SELECT account_id, event_id, occurred_at FROM events_unpartitioned",
            "DROP TABLE events_unpartitioned",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() != DbBackend::Postgres {
            db.execute_unprepared("DROP TABLE IF EXISTS event_retention")
                .await?;
            return Ok(());
        }
        for sql in [
            "ALTER TABLE events RENAME TO events_partitioned",
            "CREATE TABLE events (\
                account_id varchar COLLATE \"C\" NOT NULL, \
                event_id varchar COLLATE \"C\" NOT NULL, \
                user_id varchar COLLATE \"C\", \
                event_type varchar COLLATE \"C\" NOT NULL, \
                occurred_at timestamptz NOT NULL, \
                value double precision, \
                PRIMARY KEY (account_id, event_id))",
            "INSERT INTO events SELECT account_id, event_id, user_id, event_type, occurred_at, \
             value FROM events_partitioned ON CONFLICT DO NOTHING",
            "DROP TABLE events_partitioned",
            "DROP TABLE event_keys",
            "DROP TABLE event_retention",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
