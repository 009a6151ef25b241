//! The role each RPC of the learner service needs (docs/api.md "Roles", docs/security.md).
//! Outcomes are data (ingest), training is admin, the rest read.
//! An RPC missing here needs `admin`; the end-to-end tests (tests/tests/auth.rs) check
//! that the table names exactly the RPCs of the service's descriptor.

use vitals_server::auth::{Role, RpcRoles};

/// The role each `vitals.learner.v1.LearnerService` RPC needs, by gRPC path; given to the
/// server with the service ([`vitals_server::GrpcServer::add`]).
pub const ROLES: RpcRoles = &[
    (
        "/vitals.learner.v1.LearnerService/RecordOutcomes",
        Role::Ingest,
    ),
    ("/vitals.learner.v1.LearnerService/ListOutcomes", Role::Read),
    ("/vitals.learner.v1.LearnerService/Train", Role::Admin),
    (
        "/vitals.learner.v1.LearnerService/StartTraining",
        Role::Admin,
    ),
    ("/vitals.learner.v1.LearnerService/GetWeights", Role::Read),
    ("/vitals.learner.v1.LearnerService/GetModel", Role::Read),
    ("/vitals.learner.v1.LearnerService/ListModels", Role::Read),
    ("/vitals.learner.v1.LearnerService/Evaluate", Role::Read),
    (
        "/vitals.learner.v1.LearnerService/StartEvaluation",
        Role::Read,
    ),
    ("/vitals.learner.v1.LearnerService/PredictChurn", Role::Read),
    (
        "/vitals.learner.v1.LearnerService/GetDriftReport",
        Role::Read,
    ),
];
