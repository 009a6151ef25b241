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
