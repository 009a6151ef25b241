//! The role each RPC of the profiles service needs (docs/api.md "Roles", docs/security.md).
//! Every write (including assignment) needs admin.
//! An RPC missing here needs `admin`; the end-to-end tests (tests/tests/auth.rs) check
//! that the table names exactly the RPCs of the service's descriptor.

use vitals_server::auth::{Role, RpcRoles};

/// The role each `vitals.profiles.v1.ProfilesService` RPC needs, by gRPC path; given to the
/// server with the service ([`vitals_server::GrpcServer::add`]).
pub const ROLES: RpcRoles = &[
    (
        "/vitals.profiles.v1.ProfilesService/CreateHealthProfile",
        Role::Admin,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/GetHealthProfile",
        Role::Read,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/ListHealthProfiles",
        Role::Read,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/UpdateHealthProfile",
        Role::Admin,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/DeleteHealthProfile",
        Role::Admin,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/CreateProfileCrossProduct",
        Role::Admin,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/AssignAccounts",
        Role::Admin,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/UnpinAccounts",
        Role::Admin,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/ReassignAccounts",
        Role::Admin,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/GetAccountProfile",
        Role::Read,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/GetPopulationReport",
        Role::Read,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/CreateScorecard",
        Role::Admin,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/GetScorecard",
        Role::Read,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/ListScorecards",
        Role::Read,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/UpdateScorecard",
        Role::Admin,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/DeleteScorecard",
        Role::Admin,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/ReorderScorecards",
        Role::Admin,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/PreviewScorecard",
        Role::Read,
    ),
];
