//! Test data written straight through the store (as the ingestion service writes it), for
//! the tests of services that read it: no ingestion server needed.

use chrono::{DateTime, Utc};
use vitals_store::ingestion::{
    AccountUpsert, EventWriter, EventsWritten, NewEvent, upsert_accounts,
};
use vitals_store::{Store, StoreError};

/// Creates (or updates) accounts `ids`, named `Account <id>`, created at `created_at`.
pub async fn accounts(
    store: &Store,
    ids: &[String],
    created_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let accounts: Vec<AccountUpsert> = ids
        .iter()
        .map(|id| AccountUpsert {
            id: id.clone(),
            name: Some(format!("Account {id}")),
            attributes: Default::default(),
            created_at: Some(created_at),
            status: None,
            parent: None,
        })
        .collect();
    upsert_accounts(store, &accounts, false)
        .await?
        .expect("no parent is set, so no parent can be refused");
    Ok(())
}

/// Writes `events` and their daily roll-ups, as one batch of the ingestion service does.
pub async fn events(store: &Store, events: Vec<NewEvent>) -> Result<EventsWritten, StoreError> {
    EventWriter::new(store.clone()).write(events).await
}
