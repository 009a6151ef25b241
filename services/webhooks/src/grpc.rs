//! The tonic adapter of the webhooks service: proto in, domain call, proto out.

use tonic::{Request, Response, Status};
use vitals_proto::webhooks::v1 as pb;

use crate::WebhookService;
use crate::convert;
use crate::domain;

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl pb::webhook_service_server::WebhookService for WebhookService {
    async fn create_webhook_subscription(
        &self,
        request: Request<pb::CreateWebhookSubscriptionRequest>,
    ) -> Reply<pb::CreateWebhookSubscriptionResponse> {
        let spec = convert::spec(request.get_ref().subscription.as_ref())?;
        let (s, secret) = domain::create(&self.store, spec).await?;
        Ok(Response::new(pb::CreateWebhookSubscriptionResponse {
            subscription: Some(convert::subscription(&s)),
            secret,
        }))
    }

    async fn get_webhook_subscription(
        &self,
        request: Request<pb::GetWebhookSubscriptionRequest>,
    ) -> Reply<pb::GetWebhookSubscriptionResponse> {
        let id = convert::subscription_id("name", &request.get_ref().name)?;
        let s = domain::get(&self.store, &id).await?;
        Ok(Response::new(pb::GetWebhookSubscriptionResponse {
            subscription: Some(convert::subscription(&s)),
        }))
    }

    async fn list_webhook_subscriptions(
        &self,
        request: Request<pb::ListWebhookSubscriptionsRequest>,
    ) -> Reply<pb::ListWebhookSubscriptionsResponse> {
        let r = request.get_ref();
        let page = convert::page(r.page_size, &r.page_token, &[])?;
        let (rows, total) = domain::list(&self.store, page.offset, page.size).await?;
        Ok(Response::new(pb::ListWebhookSubscriptionsResponse {
            subscriptions: rows.iter().map(convert::subscription).collect(),
            next_page_token: convert::next_token(&page, total),
            total_size: i32::try_from(total).unwrap_or(i32::MAX),
        }))
    }

    async fn update_webhook_subscription(
        &self,
        request: Request<pb::UpdateWebhookSubscriptionRequest>,
    ) -> Reply<pb::UpdateWebhookSubscriptionResponse> {
        let r = request.get_ref();
        let name = r.subscription.as_ref().map_or("", |s| s.name.as_str());
        let id = convert::subscription_id("subscription.name", name)?;
        let paths = r.update_mask.as_ref().map_or(&[][..], |m| &m.paths[..]);
        let spec = if paths.is_empty() {
            convert::spec(r.subscription.as_ref())?
        } else {
            // Only the masked fields come from the request; the others are the stored ones.
            let stored = convert::subscription(&domain::get(&self.store, &id).await?);
            let merged = convert::apply_mask(stored, r.subscription.as_ref(), paths)?;
            convert::spec(Some(&merged))?
        };
        let s = domain::update(&self.store, &id, spec).await?;
        Ok(Response::new(pb::UpdateWebhookSubscriptionResponse {
            subscription: Some(convert::subscription(&s)),
        }))
    }

    async fn delete_webhook_subscription(
        &self,
        request: Request<pb::DeleteWebhookSubscriptionRequest>,
    ) -> Reply<pb::DeleteWebhookSubscriptionResponse> {
        let id = convert::subscription_id("name", &request.get_ref().name)?;
        domain::delete(&self.store, &id).await?;
        Ok(Response::new(pb::DeleteWebhookSubscriptionResponse {}))
    }

    async fn list_webhook_deliveries(
        &self,
        request: Request<pb::ListWebhookDeliveriesRequest>,
    ) -> Reply<pb::ListWebhookDeliveriesResponse> {
        let (filter, page) = convert::deliveries_request(request.get_ref())?;
        let (rows, total) =
            domain::deliveries(&self.store, &filter, page.offset, page.size).await?;
        Ok(Response::new(pb::ListWebhookDeliveriesResponse {
            deliveries: rows.iter().map(convert::delivery).collect(),
            next_page_token: convert::next_token(&page, total),
            total_size: i32::try_from(total).unwrap_or(i32::MAX),
        }))
    }

    async fn redeliver_webhook(
        &self,
        request: Request<pb::RedeliverWebhookRequest>,
    ) -> Reply<pb::RedeliverWebhookResponse> {
        let (sub, id) = convert::delivery_name("name", &request.get_ref().name)?;
        let d = domain::redeliver(&self.store, &sub, id).await?;
        Ok(Response::new(pb::RedeliverWebhookResponse {
            delivery: Some(convert::delivery(&d)),
        }))
    }
}
