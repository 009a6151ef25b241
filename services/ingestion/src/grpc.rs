//! The tonic adapter of the ingestion service: proto in, validation and domain call,
//! proto out.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use vitals_proto::ingestion::v1 as pb;
use vitals_server::ApiError;
use vitals_server::paging::{self, PageLimits};
use vitals_store::ingestion as st;

use crate::IngestionService;
use crate::domain::{self, sentiment, validate};

type BoxStream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Validated batches waiting to be written on one IngestEvents stream: while one batch
/// is in its transaction, the next is decoded and validated.
const STREAM_PIPELINE: usize = 2;

impl IngestionService {
    /// Runs a write under the gate (see [`IngestionService::gate`]).
    async fn write<T, F, Fut>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(vitals_store::Store) -> Fut,
        Fut: Future<Output = Result<T, vitals_store::StoreError>>,
    {
        let _permit = self
            .gate
            .acquire()
            .await
            .map_err(|_| ApiError::Unavailable("server shutting down".into()))?;
        Ok(f(self.store.clone()).await?)
    }

    /// Writes one validated batch of events.
    async fn write_events(&self, events: Vec<st::NewEvent>) -> Result<st::EventsWritten, ApiError> {
        let w = self
            .write(|_| async move { self.events.write(events).await })
            .await?;
        // Counted after the commit; duplicates are not new events.
        vitals_server::metrics::events_ingested("event", u64::from(w.accepted));
        Ok(w)
    }
}

/// The (created, updated) counts of a committed write, counted in `vitals.ingested` under
/// `kind` (rows created or updated; rows left as they were are not counted).
fn counts(kind: &'static str, u: st::Upserted) -> (u32, u32) {
    vitals_server::metrics::events_ingested(kind, u64::from(u.created) + u64::from(u.updated));
    (u.created, u.updated)
}

#[tonic::async_trait]
impl pb::ingestion_service_server::IngestionService for IngestionService {
    type IngestEventsStream = BoxStream<pb::IngestEventsResponse>;

    async fn upsert_accounts(
        &self,
        request: Request<pb::UpsertAccountsRequest>,
    ) -> Result<Response<pb::UpsertAccountsResponse>, Status> {
        let r = request.into_inner();
        let rows = domain::accounts_batch(&r)?;
        let replace = r.replace_attributes;
        let ids = self
            .accounts_hook
            .as_ref()
            .map(|_| rows.iter().map(|a| a.id.clone()).collect::<Vec<_>>());
        let (created_count, updated_count) = counts(
            "account",
            self.write(|s| async move { st::upsert_accounts(&s, &rows, replace).await })
                .await?,
        );
        if let (Some(hook), Some(ids)) = (&self.accounts_hook, ids) {
            hook(ids).await;
        }
        Ok(Response::new(pb::UpsertAccountsResponse {
            created_count,
            updated_count,
        }))
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::GetAccountResponse>, Status> {
        let id = validate::id("account_id", &request.get_ref().account_id)?;
        let account = st::get_account(&self.store, &id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::NotFound(format!("account {id:?}")))?;
        Ok(Response::new(pb::GetAccountResponse {
            account: Some(domain::account_to_pb(account)),
        }))
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        let r = request.into_inner();
        let size = PageLimits::STANDARD.size(r.page_size)?;
        vitals_server::validate::no_nul("profile", &r.profile)?;
        let profile_id = if r.profile.is_empty() {
            None
        } else {
            let id = r
                .profile
                .strip_prefix("profiles/")
                .filter(|id| !id.is_empty() && !id.contains('/'))
                .ok_or_else(|| ApiError::invalid("profile", "must be profiles/{profile_id}"))?;
            Some(id.to_string())
        };
        let status = domain::status_filter(r.status)?;
        let filter = st::AccountFilter { profile_id, status };
        let filters = paging::fingerprint(&[&r.profile, &r.status.to_string()]);
        let after = paging::decode::<1>(&r.page_token, filters)?.map(|[id]| id);
        let (mut list, total) = st::list_accounts(&self.store, &filter, after.as_deref(), size + 1)
            .await
            .map_err(ApiError::from)?;
        let next_page_token = paging::next_after(&mut list, size, filters, |a| [a.id.clone()]);
        Ok(Response::new(pb::ListAccountsResponse {
            accounts: list.into_iter().map(domain::account_to_pb).collect(),
            next_page_token,
            total_size: u32::try_from(total).unwrap_or(u32::MAX),
        }))
    }

    async fn upsert_contacts(
        &self,
        request: Request<pb::UpsertContactsRequest>,
    ) -> Result<Response<pb::UpsertContactsResponse>, Status> {
        let rows = domain::contacts_batch(request.get_ref())?;
        let (created_count, updated_count) = counts(
            "contact",
            self.write(|s| async move { st::upsert_contacts(&s, &rows).await })
                .await?,
        );
        Ok(Response::new(pb::UpsertContactsResponse {
            created_count,
            updated_count,
        }))
    }

    async fn ingest_events(
        &self,
        request: Request<tonic::Streaming<pb::IngestEventsRequest>>,
    ) -> Result<Response<Self::IngestEventsStream>, Status> {
        let mut inbound = request.into_inner();
        let (batch_tx, mut batch_rx) =
            mpsc::channel::<Result<(u64, Vec<st::NewEvent>), Status>>(STREAM_PIPELINE);
        let (ack_tx, ack_rx) = mpsc::channel::<Result<pb::IngestEventsResponse, Status>>(16);

        // Reader: decode and validate batches in order; the first bad one is passed on
        // as an error (after the batches before it) and ends the reading.
        tokio::spawn(async move {
            loop {
                let item = match inbound.message().await {
                    Ok(Some(req)) => domain::events_batch(req).map_err(Status::from),
                    Ok(None) => break,
                    Err(status) => Err(status),
                };
                let stop = item.is_err();
                if batch_tx.send(item).await.is_err() || stop {
                    break;
                }
            }
        });

        // Writer: one transaction per batch, acked after its commit, in order.
        let svc = self.clone();
        tokio::spawn(async move {
            while let Some(item) = batch_rx.recv().await {
                let reply = match item {
                    Ok((sequence, events)) => match svc.write_events(events).await {
                        Ok(w) => Ok(pb::IngestEventsResponse {
                            sequence,
                            accepted_count: w.accepted,
                            duplicate_count: w.duplicates,
                        }),
                        Err(e) => Err(Status::from(e)),
                    },
                    Err(status) => Err(status),
                };
                let stop = reply.is_err();
                if ack_tx.send(reply).await.is_err() || stop {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(ack_rx))))
    }

    async fn ingest_event(
        &self,
        request: Request<pb::IngestEventRequest>,
    ) -> Result<Response<pb::IngestEventResponse>, Status> {
        let e = request
            .get_ref()
            .event
            .as_ref()
            .ok_or_else(|| ApiError::invalid("event", "is required"))?;
        let event = domain::event(e, "event", chrono::Utc::now())?;
        let w = self.write_events(vec![event]).await?;
        Ok(Response::new(pb::IngestEventResponse {
            duplicate: w.accepted == 0,
        }))
    }

    async fn record_interactions(
        &self,
        request: Request<pb::RecordInteractionsRequest>,
    ) -> Result<Response<pb::RecordInteractionsResponse>, Status> {
        let items = domain::interactions_batch(request.get_ref())?;
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
        .map_err(|e| ApiError::Internal(format!("sentiment task failed: {e}")))?;
        let (created_count, updated_count) = counts(
            "interaction",
            self.write(|s| async move { st::record_interactions(&s, &rows).await })
                .await?,
        );
        Ok(Response::new(pb::RecordInteractionsResponse {
            created_count,
            updated_count,
            sentiment_computed_count: computed,
        }))
    }

    async fn record_pulses(
        &self,
        request: Request<pb::RecordPulsesRequest>,
    ) -> Result<Response<pb::RecordPulsesResponse>, Status> {
        let rows = domain::pulses_batch(request.get_ref())?;
        let (created_count, updated_count) = counts(
            "pulse",
            self.write(|s| async move { st::record_pulses(&s, &rows).await })
                .await?,
        );
        Ok(Response::new(pb::RecordPulsesResponse {
            created_count,
            updated_count,
        }))
    }

    async fn upsert_subscriptions(
        &self,
        request: Request<pb::UpsertSubscriptionsRequest>,
    ) -> Result<Response<pb::UpsertSubscriptionsResponse>, Status> {
        let rows = domain::subscriptions_batch(request.get_ref())?;
        let (created_count, updated_count) = counts(
            "subscription",
            self.write(|s| async move { st::upsert_subscriptions(&s, &rows).await })
                .await?,
        );
        Ok(Response::new(pb::UpsertSubscriptionsResponse {
            created_count,
            updated_count,
        }))
    }

    async fn upsert_event_types(
        &self,
        request: Request<pb::UpsertEventTypesRequest>,
    ) -> Result<Response<pb::UpsertEventTypesResponse>, Status> {
        let rows = domain::event_types_batch(request.get_ref())?;
        let (created_count, updated_count) = counts(
            "event_type",
            self.write(|s| async move { st::upsert_event_types(&s, &rows).await })
                .await?,
        );
        Ok(Response::new(pb::UpsertEventTypesResponse {
            created_count,
            updated_count,
        }))
    }

    async fn list_event_types(
        &self,
        request: Request<pb::ListEventTypesRequest>,
    ) -> Result<Response<pb::ListEventTypesResponse>, Status> {
        let r = request.into_inner();
        let size = PageLimits::STANDARD.size(r.page_size)?;
        let filters = paging::fingerprint(&[]);
        let after = paging::decode::<1>(&r.page_token, filters)?.map(|[name]| name);
        let mut list = st::list_event_types(&self.store, after.as_deref(), size + 1)
            .await
            .map_err(ApiError::from)?;
        let next_page_token = paging::next_after(&mut list, size, filters, |t| [t.name.clone()]);
        Ok(Response::new(pb::ListEventTypesResponse {
            event_types: list.into_iter().map(domain::event_type_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn upsert_custom_metric_definitions(
        &self,
        request: Request<pb::UpsertCustomMetricDefinitionsRequest>,
    ) -> Result<Response<pb::UpsertCustomMetricDefinitionsResponse>, Status> {
        let rows = domain::metric_definitions_batch(request.get_ref())?;
        let (created_count, updated_count) = counts(
            "custom_metric_definition",
            self.write(|s| async move { st::upsert_metric_definitions(&s, &rows).await })
                .await?,
        );
        Ok(Response::new(pb::UpsertCustomMetricDefinitionsResponse {
            created_count,
            updated_count,
        }))
    }

    async fn record_custom_metrics(
        &self,
        request: Request<pb::RecordCustomMetricsRequest>,
    ) -> Result<Response<pb::RecordCustomMetricsResponse>, Status> {
        let rows = domain::custom_metrics_batch(request.get_ref())?;
        let (created_count, updated_count) = counts(
            "custom_metric",
            self.write(|s| async move { st::record_custom_metrics(&s, &rows).await })
                .await?,
        );
        Ok(Response::new(pb::RecordCustomMetricsResponse {
            created_count,
            updated_count,
        }))
    }

    async fn set_custom_score_fields(
        &self,
        request: Request<pb::SetCustomScoreFieldsRequest>,
    ) -> Result<Response<pb::SetCustomScoreFieldsResponse>, Status> {
        let rows = domain::score_fields_batch(request.get_ref())?;
        let set_count = self
            .write(|s| async move { st::set_custom_score_fields(&s, &rows).await })
            .await?;
        vitals_server::metrics::events_ingested("custom_score_field", u64::from(set_count));
        Ok(Response::new(pb::SetCustomScoreFieldsResponse {
            set_count,
        }))
    }

    async fn record_webhook_signals(
        &self,
        request: Request<pb::RecordWebhookSignalsRequest>,
    ) -> Result<Response<pb::RecordWebhookSignalsResponse>, Status> {
        let rows = domain::signals_batch(request.get_ref())?;
        let (created_count, updated_count) = counts(
            "webhook_signal",
            self.write(|s| async move { st::record_webhook_signals(&s, &rows).await })
                .await?,
        );
        Ok(Response::new(pb::RecordWebhookSignalsResponse {
            created_count,
            updated_count,
        }))
    }
}
