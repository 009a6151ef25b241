//! Databases for tests: an in-memory SQLite always, and a fresh PostgreSQL database when
//! `VITALS_TEST_POSTGRES_URL` is set (e.g. `postgres://postgres@127.0.0.1:5432/test`).
//!
//! Each PostgreSQL test gets its own database (created on the server named by the URL),
//! so tests run in parallel without seeing each other's rows.

use std::sync::atomic::{AtomicU64, Ordering};

use sea_orm::{ConnectionTrait, Database};

use crate::{Store, StoreError};

/// Environment variable naming the PostgreSQL server the store tests also run on.
pub const POSTGRES_URL_ENV: &str = "VITALS_TEST_POSTGRES_URL";

/// The back ends a store test must pass on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite in memory.
    Sqlite,
    /// The PostgreSQL server of `VITALS_TEST_POSTGRES_URL`.
    Postgres,
}

/// The back ends available here: SQLite, plus PostgreSQL when its URL is set.
pub fn backends() -> Vec<Backend> {
    let mut v = vec![Backend::Sqlite];
    if std::env::var(POSTGRES_URL_ENV).is_ok_and(|u| !u.is_empty()) {
        v.push(Backend::Postgres);
    } else {
        eprintln!("note: {POSTGRES_URL_ENV} is not set: PostgreSQL store tests skipped");
    }
    v
}

/// A URL of a new, empty database on `backend`: `sqlite::memory:` or a freshly created
/// PostgreSQL database named `vitals_t_<pid>_<n>`.
pub async fn fresh_url(backend: Backend) -> Result<String, StoreError> {
    match backend {
        Backend::Sqlite => Ok("sqlite::memory:".to_string()),
        Backend::Postgres => {
            static N: AtomicU64 = AtomicU64::new(0);
            let base = std::env::var(POSTGRES_URL_ENV).map_err(|_| StoreError::InvalidUrl {
                url: String::new(),
                reason: format!("{POSTGRES_URL_ENV} is not set"),
            })?;
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or_default();
            let name = format!(
                "vitals_t_{}_{}_{}",
                std::process::id(),
                nanos,
                N.fetch_add(1, Ordering::Relaxed)
            );
            let admin =
                Database::connect(base.as_str())
                    .await
                    .map_err(|source| StoreError::Connect {
                        url: crate::redact_url(&base),
                        source,
                    })?;
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await?;
            admin.close().await?;
            let (prefix, _) = base.rsplit_once('/').unwrap_or((base.as_str(), ""));
            Ok(format!("{prefix}/{name}"))
        }
    }
}

/// A migrated store on a new, empty database of `backend`.
pub async fn fresh_store(backend: Backend) -> Result<Store, StoreError> {
    let store = Store::connect(&fresh_url(backend).await?).await?;
    store.migrate().await?;
    Ok(store)
}

/// Where a test of [`store_test_suite!`](crate::store_test_suite) runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A new SQLite database file (WAL mode, a pool of several connections), in the
    /// system's temporary directory, removed afterwards.
    SqliteFile,
    /// In-memory SQLite (one connection).
    SqliteMemory,
    /// A new database on the PostgreSQL server of `VITALS_TEST_POSTGRES_URL`.
    Postgres,
}

static FILES: AtomicU64 = AtomicU64::new(0);

/// Runs `test` on a migrated store of `target`; on PostgreSQL without
/// `VITALS_TEST_POSTGRES_URL`, says that the test is skipped and returns.
pub async fn run_on<F, Fut>(target: Target, name: &str, test: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut file = None;
    let url = match target {
        Target::SqliteMemory => fresh_url(Backend::Sqlite).await.expect("memory url"),
        Target::Postgres => {
            if !std::env::var(POSTGRES_URL_ENV).is_ok_and(|u| !u.is_empty()) {
                eprintln!("skipped: {name} on PostgreSQL ({POSTGRES_URL_ENV} is not set)");
                return;
            }
            fresh_url(Backend::Postgres)
                .await
                .expect("fresh postgres database")
        }
        Target::SqliteFile => {
            let n = FILES.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir()
                .join(format!("vitals-store-test-{}-{n}.db", std::process::id()));
            let url = format!("sqlite://{}?mode=rwc", path.display());
            file = Some(path);
            url
        }
    };
    let store = Store::connect(&url).await.expect("connect");
    store.migrate().await.expect("migrate");
    test(store).await;
    if let Some(path) = file {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}

/// Instantiates store tests on every backend: each `name` is an
/// `async fn name(store: Store)` of the invoking module, run as three tests,
/// `sqlite_file::name`, `sqlite_memory::name` and `postgres::name` (skipped, saying so,
/// when `VITALS_TEST_POSTGRES_URL` is unset), each on a new migrated database. The model
/// is quickwit's `metastore_test_suite!`.
#[macro_export]
macro_rules! store_test_suite {
    ($($name:ident),+ $(,)?) => {
        $crate::store_test_suite!(@target sqlite_file, SqliteFile, $($name),+);
        $crate::store_test_suite!(@target sqlite_memory, SqliteMemory, $($name),+);
        $crate::store_test_suite!(@target postgres, Postgres, $($name),+);
    };
    (@target $module:ident, $target:ident, $($name:ident),+) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::testing::run_on(
                        $crate::testing::Target::$target,
                        stringify!($name),
                        super::$name,
                    )
                    .await;
                }
            )+
        }
    };
}

/// A one-month subscription `id` of `account` from `start` to `end` (product `basic`,
/// 10 a month, billed monthly, no add-on, no discount): contract rows for tests of
/// renewals, tenure and churn at a renewal.
pub fn monthly_subscription(
    account: &str,
    id: &str,
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
) -> crate::entity::subscription::Model {
    crate::entity::subscription::Model {
        account_id: account.into(),
        id: id.into(),
        product: "basic".into(),
        starts_at: start,
        ends_at: Some(end),
        mrr: 10.0,
        quantity: None,
        units: None,
        bill_period_months: 1,
        is_addon: false,
        discount: 0.0,
    }
}
