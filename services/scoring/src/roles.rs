//! The role each RPC of the scoring service needs (docs/api.md "Roles", docs/security.md).
//! Computing needs admin, everything else read.
//! An RPC missing here needs `admin`; the end-to-end tests (tests/tests/auth.rs) check
//! that the table names exactly the RPCs of the service's descriptor.

use vitals_server::auth::{Role, RpcRoles};

/// The role each `vitals.scoring.v1.ScoringService` RPC needs, by gRPC path; given to the
/// server with the service ([`vitals_server::GrpcServer::add`]).
pub const ROLES: RpcRoles = &[
    (
        "/vitals.scoring.v1.ScoringService/ComputeScores",
        Role::Admin,
    ),
    (
        "/vitals.scoring.v1.ScoringService/StartComputeScores",
        Role::Admin,
    ),
    ("/vitals.scoring.v1.ScoringService/GetScore", Role::Read),
    ("/vitals.scoring.v1.ScoringService/ListScores", Role::Read),
    (
        "/vitals.scoring.v1.ScoringService/GetScoreHistory",
        Role::Read,
    ),
    (
        "/vitals.scoring.v1.ScoringService/GetDistribution",
        Role::Read,
    ),
    ("/vitals.scoring.v1.ScoringService/ExplainScore", Role::Read),
    ("/vitals.scoring.v1.ScoringService/WatchScores", Role::Read),
    ("/vitals.scoring.v1.ScoringService/ListKpis", Role::Read),
    ("/vitals.scoring.v1.ScoringService/SetOverride", Role::Admin),
    (
        "/vitals.scoring.v1.ScoringService/ClearOverride",
        Role::Admin,
    ),
    (
        "/vitals.scoring.v1.ScoringService/ListOverrideAudit",
        Role::Read,
    ),
];
