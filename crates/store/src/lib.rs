//! Persistence for Vitals: sea-orm entities and migrations for the whole data model
//! (DESIGN.md §2), on embedded SQLite (the local default) or PostgreSQL (production).
//!
//! Services never talk SQL themselves: they call this crate. Connect with
//! [`Store::connect`], then [`Store::migrate`] (idempotent) before serving.

pub mod auth;
pub mod entity;
pub mod ingestion;
pub mod inputs;
pub mod learner;
pub mod migration;
pub mod profiles;
pub mod scoring;
pub mod testing;

use std::time::Duration;

use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

pub use sea_orm;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is not one this store can open.
    #[error("invalid database url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given, with any password removed.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// The database could not be reached or refused the connection.
    #[error("cannot connect to the database at {url}: {source}")]
    Connect {
        /// The URL, with any password removed.
        url: String,
        /// The driver's error.
        source: sea_orm::DbErr,
    },
    /// A query or a migration failed.
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
}

/// Connections in the pool of a PostgreSQL store unless told otherwise: room for the
/// ingestion service's 16 concurrent write transactions (its default
/// `--ingestion-write-concurrency` on PostgreSQL) with as many left for reads and the
/// other services of an all-in-one process.
pub const DEFAULT_POSTGRES_MAX_CONNECTIONS: u32 = 32;
/// Connections in the pool of a SQLite file store unless told otherwise (one writer at a
/// time; the rest read in WAL mode).
pub const DEFAULT_SQLITE_MAX_CONNECTIONS: u32 = 8;

/// A handle on the database: cheap to clone (a pool inside).
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
}

/// Hides the password of a database URL so it can be logged.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => {
                    format!("{}://{}:***{}", &url[..scheme], &creds[..colon], &url[at..])
                }
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl Store {
    /// Starts a write transaction. On SQLite it is `BEGIN IMMEDIATE`: the write lock is
    /// taken up front, waiting up to the busy timeout for another writer, because a
    /// deferred transaction that reads first fails at once with `SQLITE_BUSY` when another
    /// writer commits before its first write (the busy timeout does not apply there). On
    /// PostgreSQL a plain `BEGIN`. Every transaction that writes starts here.
    pub async fn begin_write(&self) -> Result<DatabaseTransaction, DbErr> {
        self.db
            .begin_with_options(TransactionOptions {
                isolation_level: None,
                access_mode: None,
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            })
            .await
    }

    /// Opens the database at `url`: `sqlite://path?mode=rwc`, `sqlite::memory:` or
    /// `postgres://user@host:port/db`.
    ///
    /// SQLite files run in WAL mode with `synchronous=NORMAL` (durable across process
    /// crashes, at most the last commits lost on power loss) and a 5 s busy timeout, so
    /// readers never wait for the single writer.
    ///
    /// The pool holds [`DEFAULT_POSTGRES_MAX_CONNECTIONS`] connections on PostgreSQL,
    /// [`DEFAULT_SQLITE_MAX_CONNECTIONS`] on a SQLite file and one for `:memory:`; see
    /// [`Store::connect_with_pool_size`] to choose.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_pool_size(url, None).await
    }

    /// [`Store::connect`] with a pool of at most `max_connections` connections (`None`:
    /// the back end's default; 0 counts as 1). An in-memory SQLite database always has one connection
    /// (every connection to `:memory:` would be its own database).
    pub async fn connect_with_pool_size(
        url: &str,
        max_connections: Option<u32>,
    ) -> Result<Self, StoreError> {
        let shown = redact_url(url);
        let max_connections = max_connections.map(|n| n.max(1));
        let backend = if url.starts_with("sqlite:") {
            DbBackend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            DbBackend::Postgres
        } else {
            return Err(StoreError::InvalidUrl {
                url: shown,
                reason: "expected a sqlite: or postgres:// url".into(),
            });
        };
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let mut opts = ConnectOptions::new(url.to_string());
        opts.connect_timeout(Duration::from_secs(5))
            .acquire_timeout(Duration::from_secs(5))
            .sqlx_logging(false);
        match backend {
            // One connection: every connection to `:memory:` would be its own database.
            DbBackend::Sqlite if memory => {
                opts.max_connections(1).min_connections(1);
            }
            DbBackend::Sqlite => {
                opts.max_connections(max_connections.unwrap_or(DEFAULT_SQLITE_MAX_CONNECTIONS))
                    .map_sqlx_sqlite_opts(|o| {
                        o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                            .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                            .busy_timeout(Duration::from_secs(5))
                    });
            }
            _ => {
                opts.max_connections(max_connections.unwrap_or(DEFAULT_POSTGRES_MAX_CONNECTIONS));
            }
        }
        let db = Database::connect(opts)
            .await
            .map_err(|source| StoreError::Connect { url: shown, source })?;
        Ok(Self { db })
    }

    /// Applies every pending migration; a no-op on an up-to-date database.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migration::Migrator::up(&self.db, None).await?;
        Ok(())
    }

    /// The sea-orm connection, for the services' queries.
    pub fn conn(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Which database engine this is.
    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// Checks that the database answers (used by readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(self) -> Result<(), StoreError> {
        self.db.close().await?;
        Ok(())
    }
}

/// Appends `(p, p, ...)` groups for `rows` rows of `width` placeholders, numbered from
/// `*next` on PostgreSQL.
pub(crate) fn push_groups(
    sql: &mut String,
    backend: DbBackend,
    rows: usize,
    width: usize,
    next: &mut usize,
) {
    use std::fmt::Write;
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..width {
            if c > 0 {
                sql.push(',');
            }
            if backend == DbBackend::Postgres {
                *next += 1;
                let _ = write!(sql, "${next}");
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
}

/// `sql` with its `?` placeholders renumbered `$n` on PostgreSQL.
pub(crate) fn placeholders(backend: DbBackend, sql: &str) -> String {
    if backend != DbBackend::Postgres {
        return sql.to_string();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}
