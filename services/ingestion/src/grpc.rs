//! The tonic adapter of the ingestion service: decode (`convert`), call (`domain`),
//! encode (`convert`), nothing else.

use std::pin::Pin;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use vitals_proto::ingestion::v1 as pb;
use vitals_store::ingestion as st;

use crate::IngestionService;
use crate::convert;

type BoxStream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send + 'static>>;
type Reply<T> = Result<Response<T>, Status>;

/// Validated batches waiting to be written on one IngestEvents stream: while one batch
/// is in its transaction, the next is decoded and validated.
const STREAM_PIPELINE: usize = 2;

#[tonic::async_trait]
impl pb::ingestion_service_server::IngestionService for IngestionService {
    type IngestEventsStream = BoxStream<pb::IngestEventsResponse>;

    async fn upsert_accounts(
        &self,
        request: Request<pb::UpsertAccountsRequest>,
    ) -> Reply<pb::UpsertAccountsResponse> {
        let r = request.into_inner();
        let rows = convert::accounts_batch(&r)?;
        let (created_count, updated_count) =
            self.upsert_accounts(rows, r.replace_attributes).await?;
        Ok(Response::new(pb::UpsertAccountsResponse {
            created_count,
            updated_count,
        }))
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Reply<pb::GetAccountResponse> {
        let id = convert::validate::id("account_id", &request.get_ref().account_id)?;
        let account = self.get_account(&id).await?;
        Ok(Response::new(pb::GetAccountResponse {
            account: Some(convert::account_to_pb(account)),
        }))
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Reply<pb::ListAccountsResponse> {
        let q = convert::list_accounts_request(request.get_ref())?;
        let after = q.page.after.as_ref().map(|[id]| id.as_str());
        let (rows, total) = self.list_accounts(&q.filter, after, q.page.limit()).await?;
        Ok(Response::new(convert::list_accounts_response(
            rows, total, &q.page,
        )))
    }

    async fn upsert_contacts(
        &self,
        request: Request<pb::UpsertContactsRequest>,
    ) -> Reply<pb::UpsertContactsResponse> {
        let rows = convert::contacts_batch(request.get_ref())?;
        let (created_count, updated_count) = self.upsert_contacts(rows).await?;
        Ok(Response::new(pb::UpsertContactsResponse {
            created_count,
            updated_count,
        }))
    }

    async fn ingest_events(
        &self,
        request: Request<tonic::Streaming<pb::IngestEventsRequest>>,
    ) -> Reply<Self::IngestEventsStream> {
        let mut inbound = request.into_inner();
        let (batch_tx, mut batch_rx) =
            mpsc::channel::<Result<(u64, Vec<st::NewEvent>), Status>>(STREAM_PIPELINE);
        let (ack_tx, ack_rx) = mpsc::channel::<Result<pb::IngestEventsResponse, Status>>(16);

        // Reader: decode and validate batches in order; the first bad one is passed on
        // as an error (after the batches before it) and ends the reading.
        tokio::spawn(async move {
            loop {
                let item = match inbound.message().await {
                    Ok(Some(req)) => convert::events_batch(req).map_err(Status::from),
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
                    Ok((sequence, events)) => svc
                        .write_events(events)
                        .await
                        .map(|w| pb::IngestEventsResponse {
                            sequence,
                            accepted_count: w.accepted,
                            duplicate_count: w.duplicates,
                        })
                        .map_err(Status::from),
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
    ) -> Reply<pb::IngestEventResponse> {
        let event = convert::ingest_event_request(request.get_ref())?;
        let w = self.write_events(vec![event]).await?;
        Ok(Response::new(pb::IngestEventResponse {
            duplicate: w.accepted == 0,
        }))
    }

    async fn record_interactions(
        &self,
        request: Request<pb::RecordInteractionsRequest>,
    ) -> Reply<pb::RecordInteractionsResponse> {
        let items = convert::interactions_batch(request.get_ref())?;
        let ((created_count, updated_count), computed) = self.record_interactions(items).await?;
        Ok(Response::new(pb::RecordInteractionsResponse {
            created_count,
            updated_count,
            sentiment_computed_count: computed,
        }))
    }

    async fn record_pulses(
        &self,
        request: Request<pb::RecordPulsesRequest>,
    ) -> Reply<pb::RecordPulsesResponse> {
        let rows = convert::pulses_batch(request.get_ref())?;
        let (created_count, updated_count) = self.record_pulses(rows).await?;
        Ok(Response::new(pb::RecordPulsesResponse {
            created_count,
            updated_count,
        }))
    }

    async fn upsert_subscriptions(
        &self,
        request: Request<pb::UpsertSubscriptionsRequest>,
    ) -> Reply<pb::UpsertSubscriptionsResponse> {
        let rows = convert::subscriptions_batch(request.get_ref())?;
        let (created_count, updated_count) = self.upsert_subscriptions(rows).await?;
        Ok(Response::new(pb::UpsertSubscriptionsResponse {
            created_count,
            updated_count,
        }))
    }

    async fn upsert_event_types(
        &self,
        request: Request<pb::UpsertEventTypesRequest>,
    ) -> Reply<pb::UpsertEventTypesResponse> {
        let rows = convert::event_types_batch(request.get_ref())?;
        let (created_count, updated_count) = self.upsert_event_types(rows).await?;
        Ok(Response::new(pb::UpsertEventTypesResponse {
            created_count,
            updated_count,
        }))
    }

    async fn list_event_types(
        &self,
        request: Request<pb::ListEventTypesRequest>,
    ) -> Reply<pb::ListEventTypesResponse> {
        let page = convert::list_event_types_request(request.get_ref())?;
        let after = page.after.as_ref().map(|[name]| name.as_str());
        let rows = self.list_event_types(after, page.limit()).await?;
        Ok(Response::new(convert::list_event_types_response(
            rows, &page,
        )))
    }

    async fn upsert_custom_metric_definitions(
        &self,
        request: Request<pb::UpsertCustomMetricDefinitionsRequest>,
    ) -> Reply<pb::UpsertCustomMetricDefinitionsResponse> {
        let rows = convert::metric_definitions_batch(request.get_ref())?;
        let (created_count, updated_count) = self.upsert_metric_definitions(rows).await?;
        Ok(Response::new(pb::UpsertCustomMetricDefinitionsResponse {
            created_count,
            updated_count,
        }))
    }

    async fn record_custom_metrics(
        &self,
        request: Request<pb::RecordCustomMetricsRequest>,
    ) -> Reply<pb::RecordCustomMetricsResponse> {
        let rows = convert::custom_metrics_batch(request.get_ref())?;
        let (created_count, updated_count) = self.record_custom_metrics(rows).await?;
        Ok(Response::new(pb::RecordCustomMetricsResponse {
            created_count,
            updated_count,
        }))
    }

    async fn set_custom_score_fields(
        &self,
        request: Request<pb::SetCustomScoreFieldsRequest>,
    ) -> Reply<pb::SetCustomScoreFieldsResponse> {
        let rows = convert::score_fields_batch(request.get_ref())?;
        let set_count = self.set_custom_score_fields(rows).await?;
        Ok(Response::new(pb::SetCustomScoreFieldsResponse {
            set_count,
        }))
    }

    async fn record_webhook_signals(
        &self,
        request: Request<pb::RecordWebhookSignalsRequest>,
    ) -> Reply<pb::RecordWebhookSignalsResponse> {
        let rows = convert::signals_batch(request.get_ref())?;
        let (created_count, updated_count) = self.record_webhook_signals(rows).await?;
        Ok(Response::new(pb::RecordWebhookSignalsResponse {
            created_count,
            updated_count,
        }))
    }

    async fn delete_account(
        &self,
        request: Request<pb::DeleteAccountRequest>,
    ) -> Reply<pb::DeleteAccountResponse> {
        let id = convert::validate::id("account_id", &request.get_ref().account_id)?;
        let erased = self.erase_accounts(vec![id.clone()]).await?;
        if erased.found.is_empty() {
            return Err(crate::error::IngestionError::AccountNotFound(id).into());
        }
        Ok(Response::new(pb::DeleteAccountResponse {
            deleted_row_count: erased.rows,
        }))
    }

    async fn delete_accounts(
        &self,
        request: Request<pb::DeleteAccountsRequest>,
    ) -> Reply<pb::DeleteAccountsResponse> {
        let ids = convert::delete_accounts_request(request.get_ref())?;
        let asked = ids.iter().collect::<std::collections::BTreeSet<_>>().len();
        let erased = self.erase_accounts(ids).await?;
        Ok(Response::new(convert::delete_accounts_response(
            asked, &erased,
        )))
    }
}
