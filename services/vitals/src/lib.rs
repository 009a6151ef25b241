//! The all-in-one Vitals: the ingestion, profiles, scoring, learner and webhooks services in one
//! process, on one port, over one database (an embedded SQLite file by default). This is
//! how Vitals runs on a laptop; production runs the four binaries apart (see `deploy/`).

pub mod demo;
pub mod loader;

use tokio::net::TcpListener;
use vitals_server::{GrpcServer, RunError, ServerConfig, shutdown::Signal};

/// Settings of `vitals serve`: the common server ones and every service's own.
#[derive(Clone, Debug, clap::Args)]
pub struct ServeConfig {
    /// Common server settings.
    #[command(flatten)]
    pub server: ServerConfig,
    /// Ingestion settings.
    #[command(flatten)]
    pub ingestion: vitals_ingestion::IngestionArgs,
    /// Profiles settings.
    #[command(flatten)]
    pub profiles: vitals_profiles::ProfilesArgs,
    /// Scoring settings.
    #[command(flatten)]
    pub scoring: vitals_scoring::ScoringArgs,
    /// Learner settings.
    #[command(flatten)]
    pub learner: vitals_learner::LearnerArgs,
    /// Webhooks settings (the delivery worker).
    #[command(flatten)]
    pub webhooks: vitals_webhooks::WebhookArgs,
    /// Where the first-start admin token is written (mode 0600) when auth is on, no
    /// tokens file is set and the database has no token yet. Default: next to a SQLite
    /// database file (`<file>.admin-token`), else `vitals-admin-token` in the working
    /// directory.
    #[arg(long, env = "VITALS_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<std::path::PathBuf>,
}

impl ServeConfig {
    /// Every service at its defaults over `database_url`, listening on a free local port:
    /// what tests and embedders start from.
    pub fn for_tests(database_url: impl Into<String>) -> Self {
        Self {
            server: ServerConfig::for_tests(database_url),
            ingestion: Default::default(),
            profiles: Default::default(),
            scoring: Default::default(),
            learner: Default::default(),
            webhooks: Default::default(),
            admin_token_file: None,
        }
    }
}

/// Serves all five services on `listener` until `shutdown` completes, then drains.
pub async fn run(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: Signal,
) -> Result<(), RunError> {
    let store = vitals_server::open_store(&config.server).await?;
    // Auth on and no tokens file: accept (and on the very first start, create and hand
    // over) the admin token whose hash the database keeps.
    let mut config = config;
    if let Some(token) =
        vitals_server::first_start::first_start_admin_token(&mut config.server, &store).await?
    {
        hand_over_token(&config, &store, &token).await?;
    }
    let mut grpc = GrpcServer::new();
    // Health follows the database: NOT_SERVING while it cannot be reached.
    grpc.readiness(&store);
    // One heavy-work budget for the process (training, evaluation, scoring runs, scorecard
    // previews), cancelled as soon as the shutdown signal fires so that the drain ends
    // within its timeout.
    let work = vitals_server::WorkBudget::from_config(&config.server);
    // Accounts get their health profile as soon as UpsertAccounts commits.
    let assign = vitals_profiles::assign::accounts_hook(store.clone());
    vitals_ingestion::register_with_hook(
        &mut grpc,
        store.clone(),
        &config.ingestion,
        &config.server,
        Some(assign),
    )?;
    vitals_profiles::register_with_budget(
        &mut grpc,
        store.clone(),
        &config.profiles,
        &config.server,
        work.clone(),
    )?;
    // The learner runs in this process: scoring calls it directly (no network hop)
    // unless --learner-url points at another one.
    let learner = match vitals_scoring::learner_from_args(&config.scoring, &config.server)? {
        Some(remote) => remote,
        None => std::sync::Arc::new(vitals_scoring::InProcessLearner(
            vitals_learner::LearnerService::with_budget(
                store.clone(),
                config.learner.clone(),
                work.clone(),
            ),
        )),
    };
    vitals_scoring::register_with_budget(
        &mut grpc,
        store.clone(),
        &config.scoring,
        &config.server,
        Some(learner),
        work.clone(),
    )?;
    vitals_learner::register_with_budget(
        &mut grpc,
        store.clone(),
        &config.learner,
        &config.server,
        work.clone(),
    )?;
    vitals_webhooks::register_with_budget(
        &mut grpc,
        store.clone(),
        &config.webhooks,
        &config.server,
        work.clone(),
    )?;
    grpc.serve(&config.server, listener, work.cancel_on(shutdown))
        .await?;
    store.close().await?;
    Ok(())
}

/// Writes a new first-start admin token to its file (never to stdout or the log, which
/// end up in collected logs); on a terminal, says where it is and how to use it. When the
/// file cannot be written, forgets the token (nobody could use it) and fails the start
/// naming the setting.
async fn hand_over_token(
    config: &ServeConfig,
    store: &vitals_store::Store,
    token: &str,
) -> Result<(), RunError> {
    use std::io::IsTerminal;
    let path = config.admin_token_file.clone().unwrap_or_else(|| {
        vitals_server::first_start::default_token_file(&config.server.database_url)
    });
    if let Err(e) = vitals_server::first_start::write_token_file(&path, token) {
        vitals_store::auth::delete_token(store, vitals_store::auth::FIRST_START_ADMIN).await?;
        return Err(RunError::Config(format!(
            "cannot write the first-start admin token to {} (VITALS_ADMIN_TOKEN_FILE): {e}",
            path.display()
        )));
    }
    tracing::warn!(
        path = %path.display(),
        "created the first-start admin token: written to this file (mode 0600), only its hash is stored"
    );
    if std::io::stdout().is_terminal() {
        print!("{}", vitals_server::first_start::first_start_message(&path));
    }
    Ok(())
}

/// `vitals migrate`: applies the database migrations and returns.
pub async fn migrate(database_url: &str) -> Result<(), RunError> {
    let store = vitals_store::Store::connect(database_url).await?;
    store.migrate().await?;
    tracing::info!(database = %vitals_store::redact_url(database_url), "migrations applied");
    store.close().await?;
    Ok(())
}
