//! Generated gRPC code for the Vitals API: prost messages and tonic clients and servers
//! for every package under `proto/vitals`, plus the encoded file descriptor set used for
//! server reflection.
//!
//! The `.proto` files are the documented contract; the generated items carry their
//! comments. Code is generated at build time by `protox` + `tonic-prost-build`, so no
//! system `protoc` is needed.
//!
//! ```
//! use vitals_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
//! use vitals_proto::{PROFILE_SCORECARD, SERVICE_NAMES};
//! assert_eq!(SERVICE_NAMES.len(), 5);
//! assert_eq!(PROFILE_SCORECARD, "scorecards/profile");
//! # let _ = std::marker::PhantomData::<ScoringServiceClient<tonic::transport::Channel>>;
//! ```

#![warn(missing_docs)]

/// Encoded `google.protobuf.FileDescriptorSet` of every Vitals package (with the
/// well-known types they import and source comments), for
/// `tonic_reflection::server::Builder::register_encoded_file_descriptor_set`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/vitals_descriptor.bin"));

/// Fully-qualified names of the five Vitals gRPC services, as listed by reflection.
pub const SERVICE_NAMES: [&str; 5] = [
    "vitals.ingestion.v1.IngestionService",
    "vitals.profiles.v1.ProfilesService",
    "vitals.scoring.v1.ScoringService",
    "vitals.learner.v1.LearnerService",
    "vitals.webhooks.v1.WebhookService",
];

/// Fully-qualified name of the AIP-151 operations service (`google.longrunning`, vendored
/// under `proto/google`), served once by every server that runs the learner or the
/// scoring service.
pub const OPERATIONS_SERVICE: &str = "google.longrunning.Operations";

/// Reserved scorecard name of the built-in profile score; the default wherever a
/// scorecard is optional in the scoring API.
pub const PROFILE_SCORECARD: &str = "scorecards/profile";

/// Wildcard scorecard name meaning "every scorecard" in ListScores and WatchScores.
pub const ALL_SCORECARDS: &str = "scorecards/-";

/// `vitals.common.v1`: types shared by the services.
pub mod common {
    /// Version 1.
    #[allow(missing_docs, clippy::all, clippy::pedantic, rust_2018_idioms)]
    pub mod v1 {
        tonic::include_proto!("vitals.common.v1");

        /// Encoded `FileDescriptorSet` of `vitals.common.v1` alone (with its imports and
        /// source comments), for a binary that serves only this package.
        pub const FILE_DESCRIPTOR_SET: &[u8] =
            include_bytes!(concat!(env!("OUT_DIR"), "/vitals.common.v1.descriptor.bin"));
    }
}

/// `vitals.ingestion.v1`: the ingestion service (accounts, events, conversations, ...).
pub mod ingestion {
    /// Version 1.
    #[allow(missing_docs, clippy::all, clippy::pedantic, rust_2018_idioms)]
    pub mod v1 {
        tonic::include_proto!("vitals.ingestion.v1");

        /// Encoded `FileDescriptorSet` of `vitals.ingestion.v1` alone (with its imports and
        /// source comments), for a binary that serves only this package.
        pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(
            env!("OUT_DIR"),
            "/vitals.ingestion.v1.descriptor.bin"
        ));
    }
}

/// `vitals.profiles.v1`: health profiles, account assignment and scorecards.
pub mod profiles {
    /// Version 1.
    #[allow(missing_docs, clippy::all, clippy::pedantic, rust_2018_idioms)]
    pub mod v1 {
        tonic::include_proto!("vitals.profiles.v1");

        /// Encoded `FileDescriptorSet` of `vitals.profiles.v1` alone (with its imports and
        /// source comments), for a binary that serves only this package.
        pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(
            env!("OUT_DIR"),
            "/vitals.profiles.v1.descriptor.bin"
        ));
    }
}

/// `vitals.scoring.v1`: score computation, reads, explanations and band-change streams.
pub mod scoring {
    /// Version 1.
    #[allow(missing_docs, clippy::all, clippy::pedantic, rust_2018_idioms)]
    pub mod v1 {
        tonic::include_proto!("vitals.scoring.v1");

        /// Encoded `FileDescriptorSet` of `vitals.scoring.v1` alone (with its imports and
        /// source comments), for a binary that serves only this package.
        pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(
            env!("OUT_DIR"),
            "/vitals.scoring.v1.descriptor.bin"
        ));
    }
}

/// `vitals.learner.v1`: churn outcomes, model training, learned weights, evaluation.
pub mod learner {
    /// Version 1.
    #[allow(missing_docs, clippy::all, clippy::pedantic, rust_2018_idioms)]
    pub mod v1 {
        tonic::include_proto!("vitals.learner.v1");

        /// Encoded `FileDescriptorSet` of `vitals.learner.v1` alone (with its imports and
        /// source comments), for a binary that serves only this package.
        pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(
            env!("OUT_DIR"),
            "/vitals.learner.v1.descriptor.bin"
        ));
    }
}

/// `vitals.webhooks.v1`: webhook subscriptions, signed deliveries and their log.
pub mod webhooks {
    /// Version 1.
    #[allow(missing_docs, clippy::all, clippy::pedantic, rust_2018_idioms)]
    pub mod v1 {
        tonic::include_proto!("vitals.webhooks.v1");

        /// Encoded `FileDescriptorSet` of `vitals.webhooks.v1` alone (with its imports and
        /// source comments), for a binary that serves only this package.
        pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(
            env!("OUT_DIR"),
            "/vitals.webhooks.v1.descriptor.bin"
        ));
    }
}

/// Vendored googleapis packages: `google.longrunning` (AIP-151 operations) and the
/// `google.rpc.Status` it returns errors in.
pub mod google {
    /// `google.longrunning`: the Operations service and the Operation resource.
    #[allow(missing_docs, clippy::all, clippy::pedantic, rust_2018_idioms)]
    pub mod longrunning {
        tonic::include_proto!("google.longrunning");
    }

    /// `google.rpc`: the Status of a failed operation.
    #[allow(missing_docs, clippy::all, clippy::pedantic, rust_2018_idioms)]
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}
