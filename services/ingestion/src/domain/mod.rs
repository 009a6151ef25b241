//! The ingestion service's operations on validated rows (`convert` makes them from the
//! API messages): every write runs under the service's write gate and is counted in
//! `vitals.ingested` once committed; reads page in key order. Sentiment comes from text.

pub mod retention;
pub mod sentiment;

use std::future::Future;

use vitals_store::ingestion as st;
use vitals_store::{Store, StoreError};

use crate::IngestionService;
use crate::error::{IngestionError, Result};

/// Rows (created, updated) by a committed write.
pub type Counts = (u32, u32);

impl IngestionService {
    /// Runs a write under the gate (see [`IngestionService::gate`]).
    async fn write<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce(Store) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let _permit = self
            .gate
            .acquire()
            .await
            .map_err(|_| IngestionError::ShuttingDown)?;
        Ok(f(self.store.clone()).await?)
    }

    /// Runs an upsert under the gate; its (created, updated) counts are counted in
    /// `vitals.ingested` under `kind` (rows left as they were are not counted).
    async fn upsert<F, Fut>(&self, kind: &'static str, f: F) -> Result<Counts>
    where
        F: FnOnce(Store) -> Fut,
        Fut: Future<Output = Result<st::Upserted, StoreError>>,
    {
        let u = self.write(f).await?;
        vitals_server::metrics::events_ingested(kind, u64::from(u.created) + u64::from(u.updated));
        Ok((u.created, u.updated))
    }

    /// Writes one validated batch of events.
    pub(crate) async fn write_events(
        &self,
        events: Vec<st::NewEvent>,
    ) -> Result<st::EventsWritten> {
        let w = self
            .write(|_| async move { self.events.write(events).await })
            .await?;
        // Counted after the commit; duplicates are not new events.
        vitals_server::metrics::events_ingested("event", u64::from(w.accepted));
        Ok(w)
    }

    /// Upserts accounts, then runs the accounts hook (if any) on their ids.
    pub(crate) async fn upsert_accounts(
        &self,
        rows: Vec<st::AccountUpsert>,
        replace_attributes: bool,
    ) -> Result<Counts> {
        let ids = self
            .accounts_hook
            .as_ref()
            .map(|_| rows.iter().map(|a| a.id.clone()).collect::<Vec<_>>());
        let u = self
            .write(|s| async move { st::upsert_accounts(&s, &rows, replace_attributes).await })
            .await?
            .map_err(|e| IngestionError::Parent {
                field: format!("accounts[{}].parent_id", e.index),
                reason: e.kind.to_string(),
            })?;
        vitals_server::metrics::events_ingested(
            "account",
            u64::from(u.created) + u64::from(u.updated),
        );
        let counts = (u.created, u.updated);
        if let (Some(hook), Some(ids)) = (&self.accounts_hook, ids) {
            hook(ids).await;
        }
        Ok(counts)
    }

    /// One account.
    pub(crate) async fn get_account(&self, id: &str) -> Result<st::AccountRecord> {
        st::get_account(&self.store, id)
            .await?
            .ok_or_else(|| IngestionError::AccountNotFound(id.to_string()))
    }

    /// At most `limit` accounts matching `filter` after the account id `after`, in id
    /// order, and how many match in all.
    pub(crate) async fn list_accounts(
        &self,
        filter: &st::AccountFilter,
        after: Option<&str>,
        limit: u64,
    ) -> Result<(Vec<st::AccountRecord>, u64)> {
        Ok(st::list_accounts(&self.store, filter, after, limit).await?)
    }

    /// Upserts contacts.
    pub(crate) async fn upsert_contacts(&self, rows: Vec<st::ContactUpsert>) -> Result<Counts> {
        self.upsert("contact", |s| async move {
            st::upsert_contacts(&s, &rows).await
        })
        .await
    }

    /// Records interactions, scoring the sentiment of those that carry a text; returns
    /// the counts and how many sentiments were computed.
    pub(crate) async fn record_interactions(
        &self,
        items: Vec<(st::InteractionRow, Option<String>)>,
    ) -> Result<(Counts, u32)> {
        // VADER is CPU work (up to 10,000 texts of 64 KiB): off the async threads.
        let (rows, computed) = tokio::task::spawn_blocking(move || {
            let mut computed = 0u32;
            let rows: Vec<st::InteractionRow> = items
                .into_iter()
                .map(|(mut row, text)| {
                    if let Some(t) = text {
                        row.sentiment = Some(sentiment::compound(&t));
                        computed += 1;
                    }
                    row
                })
                .collect();
            (rows, computed)
        })
        .await
        .map_err(|e| IngestionError::Sentiment(e.to_string()))?;
        let counts = self
            .upsert("interaction", |s| async move {
                st::record_interactions(&s, &rows).await
            })
            .await?;
        Ok((counts, computed))
    }

    /// Records pulses.
    pub(crate) async fn record_pulses(&self, rows: Vec<st::PulseRow>) -> Result<Counts> {
        self.upsert(
            "pulse",
            |s| async move { st::record_pulses(&s, &rows).await },
        )
        .await
    }

    /// Upserts subscriptions.
    pub(crate) async fn upsert_subscriptions(
        &self,
        rows: Vec<st::SubscriptionRow>,
    ) -> Result<Counts> {
        self.upsert("subscription", |s| async move {
            st::upsert_subscriptions(&s, &rows).await
        })
        .await
    }

    /// Upserts event types.
    pub(crate) async fn upsert_event_types(
        &self,
        rows: Vec<st::EventTypeUpsert>,
    ) -> Result<Counts> {
        self.upsert("event_type", |s| async move {
            st::upsert_event_types(&s, &rows).await
        })
        .await
    }

    /// At most `limit` event types after the name `after`, in name order.
    pub(crate) async fn list_event_types(
        &self,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<st::EventTypeRecord>> {
        Ok(st::list_event_types(&self.store, after, limit).await?)
    }

    /// Upserts custom metric definitions.
    pub(crate) async fn upsert_metric_definitions(
        &self,
        rows: Vec<st::MetricDefinitionRow>,
    ) -> Result<Counts> {
        self.upsert("custom_metric_definition", |s| async move {
            st::upsert_metric_definitions(&s, &rows).await
        })
        .await
    }

    /// Records custom metric samples.
    pub(crate) async fn record_custom_metrics(
        &self,
        rows: Vec<st::CustomMetricRow>,
    ) -> Result<Counts> {
        self.upsert("custom_metric", |s| async move {
            st::record_custom_metrics(&s, &rows).await
        })
        .await
    }

    /// Sets custom score fields; returns how many were set.
    pub(crate) async fn set_custom_score_fields(
        &self,
        rows: Vec<st::ScoreFieldRow>,
    ) -> Result<u32> {
        let set = self
            .write(|s| async move { st::set_custom_score_fields(&s, &rows).await })
            .await?;
        vitals_server::metrics::events_ingested("custom_score_field", u64::from(set));
        Ok(set)
    }

    /// Records webhook signals.
    pub(crate) async fn record_webhook_signals(&self, rows: Vec<st::SignalRow>) -> Result<Counts> {
        self.upsert("webhook_signal", |s| async move {
            st::record_webhook_signals(&s, &rows).await
        })
        .await
    }

    /// The account each user of `users` was last linked to (its contact row updated
    /// last), for Segment calls that name no group.
    pub(crate) async fn last_account_of_users(
        &self,
        users: &[&str],
    ) -> Result<std::collections::HashMap<String, String>> {
        Ok(st::last_account_of_users(&self.store, users).await?)
    }

    /// Erases every row of the accounts `ids` (validated, at most
    /// [`vitals_store::erasure::MAX_ERASE_BATCH`]) in one transaction, under the gate.
    pub(crate) async fn erase_accounts(
        &self,
        ids: Vec<String>,
    ) -> Result<vitals_store::erasure::Erased> {
        let erased = self
            .write(|s| async move { vitals_store::erasure::erase_accounts(&s, &ids).await })
            .await?;
        tracing::info!(
            accounts = erased.found.len(),
            rows = erased.rows,
            "accounts erased"
        );
        Ok(erased)
    }
}
