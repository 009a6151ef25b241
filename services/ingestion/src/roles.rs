//! The role each RPC of the ingestion service needs (docs/api.md "Roles", docs/security.md).
//! Writes need ingest, reads need read, erasure (DeleteAccount, DeleteAccounts) admin.
//! An RPC missing here needs `admin`; the end-to-end tests (tests/tests/auth.rs) check
//! that the table names exactly the RPCs of the service's descriptor.

use vitals_server::auth::{Role, RpcRoles};

/// The role each `vitals.ingestion.v1.IngestionService` RPC needs, by gRPC path; given to the
/// server with the service ([`vitals_server::GrpcServer::add`]).
pub const ROLES: RpcRoles = &[
    (
        "/vitals.ingestion.v1.IngestionService/UpsertAccounts",
        Role::Ingest,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/GetAccount",
        Role::Read,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/ListAccounts",
        Role::Read,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/UpsertContacts",
        Role::Ingest,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/IngestEvents",
        Role::Ingest,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/IngestEvent",
        Role::Ingest,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/RecordInteractions",
        Role::Ingest,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/RecordPulses",
        Role::Ingest,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/UpsertSubscriptions",
        Role::Ingest,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/UpsertEventTypes",
        Role::Ingest,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/ListEventTypes",
        Role::Read,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/UpsertCustomMetricDefinitions",
        Role::Ingest,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/RecordCustomMetrics",
        Role::Ingest,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/SetCustomScoreFields",
        Role::Ingest,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/RecordWebhookSignals",
        Role::Ingest,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/DeleteAccount",
        Role::Admin,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/DeleteAccounts",
        Role::Admin,
    ),
];
