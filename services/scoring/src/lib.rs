//! The scoring service of Vitals: computes, stores and explains health scores.
//!
//! [`run`] serves it alone (the `vitals-scoring` binary); [`register`] adds it to a server
//! that hosts several services (the all-in-one `vitals`).

mod grpc;

use tokio::net::TcpListener;
use vitals_proto::scoring::v1::scoring_service_server::ScoringServiceServer;
use vitals_server::{GrpcServer, RunError, ServerConfig, shutdown::Signal};
use vitals_store::Store;

/// Settings of the scoring service beyond the common server ones.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ScoringArgs {}

/// The whole configuration of the `vitals-scoring` binary.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "vitals-scoring",
    version,
    about = "Vitals scoring service: computes, stores and explains health scores"
)]
pub struct Config {
    /// Common server settings.
    #[command(flatten)]
    pub server: ServerConfig,
    /// Settings of this service.
    #[command(flatten)]
    pub service: ScoringArgs,
}

/// The scoring gRPC service.
#[derive(Clone, Debug)]
pub struct ScoringService {
    #[allow(dead_code)] // read by the RPCs as they are implemented
    store: Store,
    #[allow(dead_code)]
    args: ScoringArgs,
}

impl ScoringService {
    /// A service over `store`.
    pub fn new(store: Store, args: ScoringArgs) -> Self {
        Self { store, args }
    }
}

/// Adds the scoring service to `grpc`, with the message size limits of `server`.
pub fn register(
    grpc: &mut GrpcServer,
    store: Store,
    args: &ScoringArgs,
    server: &ServerConfig,
) -> Result<(), RunError> {
    let limit = server.max_message_bytes as usize;
    grpc.add(
        ScoringServiceServer::new(ScoringService::new(store, args.clone()))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
    );
    Ok(())
}

/// Serves the scoring service alone on `listener` until `shutdown` completes, then drains.
pub async fn run(config: Config, listener: TcpListener, shutdown: Signal) -> Result<(), RunError> {
    let store = vitals_server::open_store(&config.server).await?;
    let mut grpc = GrpcServer::new();
    register(&mut grpc, store.clone(), &config.service, &config.server)?;
    grpc.serve(&config.server, listener, shutdown).await?;
    store.close().await?;
    Ok(())
}
