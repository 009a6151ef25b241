//! The role each RPC of the webhooks service needs (docs/api.md "Roles"): managing
//! subscriptions and redelivering is admin, the delivery log is read.
//! An RPC missing here needs `admin`; the end-to-end tests (tests/tests/auth.rs) check
//! that the table names exactly the RPCs of the service's descriptor.

use vitals_server::auth::{Role, RpcRoles};

/// The role each `vitals.webhooks.v1.WebhookService` RPC needs, by gRPC path.
pub const ROLES: RpcRoles = &[
    (
        "/vitals.webhooks.v1.WebhookService/CreateWebhookSubscription",
        Role::Admin,
    ),
    (
        "/vitals.webhooks.v1.WebhookService/GetWebhookSubscription",
        Role::Admin,
    ),
    (
        "/vitals.webhooks.v1.WebhookService/ListWebhookSubscriptions",
        Role::Admin,
    ),
    (
        "/vitals.webhooks.v1.WebhookService/UpdateWebhookSubscription",
        Role::Admin,
    ),
    (
        "/vitals.webhooks.v1.WebhookService/DeleteWebhookSubscription",
        Role::Admin,
    ),
    (
        "/vitals.webhooks.v1.WebhookService/ListWebhookDeliveries",
        Role::Read,
    ),
    (
        "/vitals.webhooks.v1.WebhookService/RedeliverWebhook",
        Role::Admin,
    ),
];
