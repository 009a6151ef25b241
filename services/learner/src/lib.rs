//! The learner service of Vitals: learns from recorded churn which signals matter, and measures it.
//!
//! [`run`] serves it alone (the `vitals-learner` binary); [`register`] adds it to a server
//! that hosts several services (the all-in-one `vitals`).

mod grpc;

use tokio::net::TcpListener;
use vitals_proto::learner::v1::learner_service_server::LearnerServiceServer;
use vitals_server::{GrpcServer, RunError, ServerConfig, shutdown::Signal};
use vitals_store::Store;

/// Settings of the learner service beyond the common server ones.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct LearnerArgs {}

/// The whole configuration of the `vitals-learner` binary.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "vitals-learner",
    version,
    about = "Vitals learner service: learns from recorded churn which signals matter, and measures it"
)]
pub struct Config {
    /// Common server settings.
    #[command(flatten)]
    pub server: ServerConfig,
    /// Settings of this service.
    #[command(flatten)]
    pub service: LearnerArgs,
}

/// The learner gRPC service.
#[derive(Clone, Debug)]
pub struct LearnerService {
    #[allow(dead_code)] // read by the RPCs as they are implemented
    store: Store,
    #[allow(dead_code)]
    args: LearnerArgs,
}

impl LearnerService {
    /// A service over `store`.
    pub fn new(store: Store, args: LearnerArgs) -> Self {
        Self { store, args }
    }
}

/// Adds the learner service to `grpc`, with the message size limits of `server`.
pub fn register(
    grpc: &mut GrpcServer,
    store: Store,
    args: &LearnerArgs,
    server: &ServerConfig,
) -> Result<(), RunError> {
    let limit = server.max_message_bytes as usize;
    grpc.add(
        LearnerServiceServer::new(LearnerService::new(store, args.clone()))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
    );
    Ok(())
}

/// Serves the learner service alone on `listener` until `shutdown` completes, then drains.
pub async fn run(config: Config, listener: TcpListener, shutdown: Signal) -> Result<(), RunError> {
    let store = vitals_server::open_store(&config.server).await?;
    let mut grpc = GrpcServer::new();
    register(&mut grpc, store.clone(), &config.service, &config.server)?;
    grpc.serve(&config.server, listener, shutdown).await?;
    store.close().await?;
    Ok(())
}
