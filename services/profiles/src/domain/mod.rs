//! Business logic of the profiles service, apart from the gRPC adapter.

pub mod profiles;
pub mod scorecards;
