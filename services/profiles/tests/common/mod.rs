//! Shared set-up of the profiles service tests: a server over a fresh database that the
//! test can also write to directly (accounts, roll-ups, metrics).

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, NaiveDate, Utc};
use tonic::transport::Channel;
use vitals_profiles::{Config, ProfilesArgs};
use vitals_proto::profiles::v1 as pb;
use vitals_proto::profiles::v1::profiles_service_client::ProfilesServiceClient;
use vitals_server::ServerConfig;
use vitals_store::Store;
use vitals_store::entity::{account, custom_metric, usage_daily};
use vitals_store::sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, Set};
use vitals_test_support::{Backend, TestServer, fresh_url};

/// A running profiles service with a direct handle on its database.
pub struct Env {
    pub server: TestServer,
    pub store: Store,
    pub client: ProfilesServiceClient<Channel>,
    pub backend: Backend,
}

/// Background schedules off: tests drive assignment explicitly.
pub fn quiet_args() -> ProfilesArgs {
    ProfilesArgs {
        reassign_interval_secs: 0,
        assign_pending_interval_secs: 0,
    }
}

/// A URL both the test and the server can open: a fresh PostgreSQL database, or a
/// SQLite file (an in-memory database would be private to one connection pool).
async fn shared_url(backend: Backend) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    match backend {
        Backend::Sqlite => {
            let path = std::env::temp_dir().join(format!(
                "vitals-profiles-{}-{}-{}.db",
                std::process::id(),
                Utc::now().timestamp_nanos_opt().unwrap_or_default(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            format!("sqlite://{}?mode=rwc", path.display())
        }
        Backend::Postgres => fresh_url(backend).await.expect("fresh postgres database"),
    }
}

impl Env {
    /// Starts the service on `backend` with `args`.
    pub async fn start(backend: Backend, args: ProfilesArgs) -> Self {
        let url = shared_url(backend).await;
        let store = Store::connect(&url).await.expect("connect");
        store.migrate().await.expect("migrate");
        let config = Config {
            server: ServerConfig::for_tests(url),
            service: args,
        };
        let server = TestServer::start(|listener, shutdown| {
            vitals_profiles::run(config, listener, shutdown)
        })
        .await;
        let client = ProfilesServiceClient::new(server.channel().await);
        Self {
            server,
            store,
            client,
            backend,
        }
    }

    /// Inserts or replaces an account with these attributes (JSON in the stored form).
    pub async fn put_account(&self, id: &str, attributes: serde_json::Value, status: &str) {
        let now = Utc::now();
        let existing = account::Entity::find_by_id(id)
            .one(self.store.conn())
            .await
            .expect("read account");
        match existing {
            Some(a) => {
                let mut am = a.into_active_model();
                am.attributes = Set(attributes);
                am.status = Set(status.to_string());
                am.updated_at = Set(now);
                am.update(self.store.conn()).await.expect("update account");
            }
            None => {
                account::Model {
                    id: id.into(),
                    name: format!("Account {id}"),
                    attributes,
                    profile_id: None,
                    pinned: false,
                    status: status.into(),
                    created_at: now,
                    updated_at: now,
                }
                .into_active_model()
                .insert(self.store.conn())
                .await
                .expect("insert account");
            }
        }
    }

    /// The stored (profile_id, pinned) of an account.
    pub async fn stored(&self, id: &str) -> (Option<String>, bool) {
        let a = account::Entity::find_by_id(id)
            .one(self.store.conn())
            .await
            .expect("read")
            .expect("account exists");
        (a.profile_id, a.pinned)
    }

    /// Adds a daily roll-up row.
    pub async fn put_usage(&self, id: &str, day: NaiveDate, event_type: &str, count: i64) {
        usage_daily::Model {
            account_id: id.into(),
            day,
            event_type: event_type.into(),
            count,
            distinct_users: 1,
            value_sum: count as f64 * 2.0,
        }
        .into_active_model()
        .insert(self.store.conn())
        .await
        .expect("insert roll-up");
    }

    /// Adds a custom metric sample.
    pub async fn put_metric(&self, id: &str, name: &str, at: DateTime<Utc>, value: f64) {
        custom_metric::Model {
            account_id: id.into(),
            name: name.into(),
            at,
            value,
        }
        .into_active_model()
        .insert(self.store.conn())
        .await
        .expect("insert metric");
    }

    /// The profile (resource name) of an account as the API reports it.
    pub async fn profile_of(
        &self,
        id: &str,
    ) -> Result<pb::GetAccountProfileResponse, tonic::Status> {
        self.client
            .clone()
            .get_account_profile(pb::GetAccountProfileRequest {
                account_id: id.into(),
            })
            .await
            .map(|r| r.into_inner())
    }

    /// Runs ReassignAccounts.
    pub async fn reassign(&self, dry_run: bool) -> pb::ReassignAccountsResponse {
        self.client
            .clone()
            .reassign_accounts(pb::ReassignAccountsRequest {
                dry_run,
                max_moves: 0,
            })
            .await
            .expect("reassign")
            .into_inner()
    }

    /// Creates a profile with a rule and priority.
    pub async fn profile(&self, id: &str, rule: &str, priority: i32) -> pb::HealthProfile {
        self.client
            .clone()
            .create_health_profile(pb::CreateHealthProfileRequest {
                profile_id: id.into(),
                health_profile: Some(pb::HealthProfile {
                    display_name: id.to_uppercase(),
                    assignment_rule: rule.into(),
                    priority,
                    ..Default::default()
                }),
            })
            .await
            .expect("create profile")
            .into_inner()
            .health_profile
            .expect("profile")
    }

    /// Stops the server.
    pub async fn stop(self) {
        self.server.stop().await.expect("clean stop");
    }
}

/// Attributes JSON in the stored form from (name, value) pairs.
pub fn attrs(pairs: &[(&str, serde_json::Value)]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (k, v) in pairs {
        let tagged = match v {
            serde_json::Value::String(_) => serde_json::json!({ "string": v }),
            serde_json::Value::Bool(_) => serde_json::json!({ "bool": v }),
            _ => serde_json::json!({ "number": v }),
        };
        m.insert((*k).to_string(), tagged);
    }
    serde_json::Value::Object(m)
}
