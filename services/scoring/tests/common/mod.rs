//! Shared set-up of the scoring tests: the scoring service over a database the test also
//! opens and writes its data to (through the store, as the ingestion service would), and
//! a fake learner.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{Duration, Utc};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use vitals_proto::common::v1 as cpb;
use vitals_proto::learner::v1 as lpb;
use vitals_proto::scoring::v1 as pb;
use vitals_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
use vitals_scoring::ScoringArgs;
use vitals_server::{GrpcServer, RunError, ServerConfig};
use vitals_store::Store;
use vitals_store::ingestion::NewEvent;
use vitals_test_support::{Backend, TestServer, fresh_url, seed};

/// Scoring on a server, and a store handle on its database.
pub struct Env {
    pub backend: Backend,
    /// The database URL, for more servers on the same database.
    pub url: String,
    pub server: TestServer,
    pub store: Store,
    pub scoring: ScoringServiceClient<Channel>,
}

/// A URL both the test and the server can open.
async fn shared_url(backend: Backend) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    match backend {
        Backend::Sqlite => {
            let path = std::env::temp_dir().join(format!(
                "vitals-scoring-{}-{}-{}.db",
                std::process::id(),
                Utc::now().timestamp_nanos_opt().unwrap_or_default(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            format!("sqlite://{}?mode=rwc", path.display())
        }
        Backend::Postgres => fresh_url(backend).await.expect("fresh postgres database"),
    }
}

async fn serve(
    config: ServerConfig,
    scoring: ScoringArgs,
    listener: TcpListener,
    shutdown: vitals_server::shutdown::Signal,
) -> Result<(), RunError> {
    let store = vitals_server::open_store(&config).await?;
    let mut grpc = GrpcServer::new();
    vitals_scoring::register(&mut grpc, store.clone(), &scoring, &config)?;
    grpc.serve(&config, listener, shutdown).await?;
    store.close().await?;
    Ok(())
}

impl Env {
    /// Starts the services on `backend`; scoring with `args`.
    pub async fn start(backend: Backend, args: ScoringArgs) -> Self {
        let url = shared_url(backend).await;
        let store = Store::connect(&url).await.expect("connect");
        store.migrate().await.expect("migrate");
        vitals_scorecard::defaults::ensure_default_profile(&store)
            .await
            .expect("default profile");
        let config = ServerConfig::for_tests(url.clone());
        let server =
            TestServer::start(|listener, shutdown| serve(config, args, listener, shutdown)).await;
        let channel = server.channel().await;
        Self {
            backend,
            url,
            scoring: ScoringServiceClient::new(channel),
            server,
            store,
        }
    }

    /// Another server (another replica) on the same database, scoring with `args`.
    pub async fn replica(&self, args: ScoringArgs) -> (TestServer, ScoringServiceClient<Channel>) {
        let config = ServerConfig::for_tests(self.url.clone());
        let server =
            TestServer::start(|listener, shutdown| serve(config, args, listener, shutdown)).await;
        let client = ScoringServiceClient::new(server.channel().await);
        (server, client)
    }

    pub async fn stop(self) {
        self.store.close().await.expect("close store");
        self.server.stop().await.expect("server stops cleanly");
    }

    /// Makes the default profile count usage only (the test data has nothing else).
    pub async fn usage_only(&self) {
        let conn = &self.store;
        let mut p = vitals_store::profiles::get_profile(conn, "default")
            .await
            .expect("read profile")
            .expect("default profile");
        p.weights = vitals_store::profiles::StoredWeights {
            usage: 1.0,
            ..Default::default()
        };
        vitals_store::profiles::update_profile(conn, &p)
            .await
            .expect("update profile");
    }

    /// Creates accounts `ids`.
    pub async fn accounts(&mut self, ids: &[String]) {
        seed::accounts(&self.store, ids, Utc::now() - Duration::days(400))
            .await
            .expect("upsert accounts");
    }

    /// `per_day` `login` events on each of the last `days` days for `account`.
    pub async fn logins(&mut self, account: &str, days: u32, per_day: u32, tag: &str) {
        let now = Utc::now();
        let mut events = Vec::new();
        for d in 0..days {
            for k in 0..per_day {
                events.push(NewEvent {
                    event_id: format!("{tag}-{account}-{d}-{k}"),
                    account_id: account.to_string(),
                    user_id: Some(format!("u{k}")),
                    event_type: "login".into(),
                    occurred_at: now - Duration::days(i64::from(d)) - Duration::minutes(5),
                    value: None,
                });
            }
        }
        seed::events(&self.store, events)
            .await
            .expect("ingest events");
    }

    /// Twelve accounts `a00`..`a11`; account i logs in i + 1 times on each of its last
    /// i + 1 days, so health grows with i.
    pub async fn ladder(&mut self) -> Vec<String> {
        let ids: Vec<String> = (0..12).map(|i| format!("a{i:02}")).collect();
        self.accounts(&ids).await;
        for (i, id) in ids.iter().enumerate() {
            self.logins(id, i as u32 + 1, i as u32 + 1, "ladder").await;
        }
        ids
    }

    pub async fn compute_all(&mut self) -> pb::ComputeScoresResponse {
        self.scoring
            .compute_scores(pb::ComputeScoresRequest::default())
            .await
            .expect("compute scores")
            .into_inner()
    }

    pub async fn score(&mut self, account: &str) -> pb::ScoreSnapshot {
        score_of(&mut self.scoring, account).await
    }
}

/// The latest profile score of `account`, from `client`.
pub async fn score_of(
    client: &mut ScoringServiceClient<Channel>,
    account: &str,
) -> pb::ScoreSnapshot {
    client
        .get_score(pb::GetScoreRequest {
            account_id: account.into(),
            ..Default::default()
        })
        .await
        .expect("get score")
        .into_inner()
        .snapshot
        .expect("snapshot")
}

pub fn ts(t: chrono::DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// A learner that answers GetWeights with a fixed learned model.
#[derive(Clone)]
pub struct FakeLearner;

pub const FAKE_MODEL: &str = "models/default-7";

#[tonic::async_trait]
impl lpb::learner_service_server::LearnerService for FakeLearner {
    async fn record_outcomes(
        &self,
        _: Request<lpb::RecordOutcomesRequest>,
    ) -> Result<Response<lpb::RecordOutcomesResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_outcomes(
        &self,
        _: Request<lpb::ListOutcomesRequest>,
    ) -> Result<Response<lpb::ListOutcomesResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn train(
        &self,
        _: Request<lpb::TrainRequest>,
    ) -> Result<Response<lpb::TrainResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn get_weights(
        &self,
        request: Request<lpb::GetWeightsRequest>,
    ) -> Result<Response<lpb::GetWeightsResponse>, Status> {
        let kpi = |name: &str, weight: f64| lpb::KpiWeight {
            kpi: name.into(),
            category: cpb::ScoreCategory::Usage as i32,
            weight,
            learned_weight: weight,
            prior_weight: 0.5,
        };
        Ok(Response::new(lpb::GetWeightsResponse {
            profile: request.into_inner().profile,
            source: cpb::WeightsSource::Learned as i32,
            model: FAKE_MODEL.into(),
            train_time: Some(ts(Utc::now())),
            kpi_weights: vec![kpi("active_days", 0.75), kpi("key_events", 0.25)],
            suggested_category_weights: None,
            booster_json: String::new(),
            intercept: -1.0,
            coefficients: vec![lpb::Coefficient {
                kpi: "active_days".into(),
                category: cpb::ScoreCategory::Usage as i32,
                coefficient: -2.0,
                declared_direction: cpb::KpiDirection::HigherIsBetter as i32,
                contradicted: false,
                missing_value: Some(0.5),
            }],
        }))
    }
    async fn get_drift_report(
        &self,
        _: Request<lpb::GetDriftReportRequest>,
    ) -> Result<Response<lpb::GetDriftReportResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn get_model(
        &self,
        _: Request<lpb::GetModelRequest>,
    ) -> Result<Response<lpb::GetModelResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_models(
        &self,
        _: Request<lpb::ListModelsRequest>,
    ) -> Result<Response<lpb::ListModelsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn evaluate(
        &self,
        _: Request<lpb::EvaluateRequest>,
    ) -> Result<Response<lpb::EvaluateResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn start_training(
        &self,
        _: Request<lpb::StartTrainingRequest>,
    ) -> Result<Response<vitals_proto::google::longrunning::Operation>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn start_evaluation(
        &self,
        _: Request<lpb::StartEvaluationRequest>,
    ) -> Result<Response<vitals_proto::google::longrunning::Operation>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn predict_churn(
        &self,
        _: Request<lpb::PredictChurnRequest>,
    ) -> Result<Response<lpb::PredictChurnResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

/// A running fake learner.
pub struct FakeLearnerServer {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<()>,
}

impl FakeLearnerServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(lpb::learner_service_server::LearnerServiceServer::new(
                    FakeLearner,
                ))
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    async {
                        let _ = rx.await;
                    },
                )
                .await
                .expect("fake learner serves");
        });
        Self { addr, stop, handle }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.handle.await.expect("fake learner stops");
    }
}
