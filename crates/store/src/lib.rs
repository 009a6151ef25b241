//! Persistence for Vitals: sea-orm entities and migrations for the whole data model
//! (docs/architecture.md, "Data model"), on embedded SQLite (the local default) or
//! PostgreSQL (production).
//!
//! Services never talk SQL themselves: they call this crate. Connect with
//! [`Store::connect`], then [`Store::migrate`] (idempotent) before serving.

pub mod auth;
pub mod entity;
pub mod erasure;
pub mod ingestion;
pub mod inputs;
pub mod learner;
pub mod lease;
pub mod migration;
pub mod operations;
pub mod overrides;
pub mod profiles;
pub mod scoring;
pub mod snapshot;
pub mod testing;
pub mod values;
pub mod webhooks;

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
    /// The database cannot be reached right now (connection refused, reset or closed,
    /// the pool timed out waiting for a connection, the server shutting down, starting up
    /// or out of connections): the call may be retried. See [`is_unavailable`].
    #[error("database unavailable: {0}")]
    Unavailable(sea_orm::DbErr),
    /// A query or a migration failed.
    #[error("database error: {0}")]
    Db(sea_orm::DbErr),
}

impl From<DbErr> for StoreError {
    /// Classifies a driver error: connection-level failures are [`StoreError::Unavailable`],
    /// the rest [`StoreError::Db`].
    fn from(e: DbErr) -> Self {
        if is_unavailable(&e) {
            Self::Unavailable(e)
        } else {
            Self::Db(e)
        }
    }
}

impl StoreError {
    /// Whether the database was unreachable (the operation may succeed if retried later).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Connect { source, .. } => is_unavailable(source),
            Self::InvalidUrl { .. } | Self::Db(_) => false,
        }
    }
}

/// PostgreSQL SQLSTATEs that mean "the server cannot serve this connection now": class 08
/// (connection exception), 53300 too_many_connections, 57P01 admin_shutdown,
/// 57P02 crash_shutdown, 57P03 cannot_connect_now (starting up or shutting down).
fn unavailable_sqlstate(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "53300" | "57P01" | "57P02" | "57P03")
}

/// Whether a driver error means the database is unreachable rather than that the
/// statement failed: the one place that decides which storage errors are UNAVAILABLE
/// (retry later) for the API. Connection-level failures are: the pool timed out or is
/// closed, an I/O error (connection refused, reset, closed mid-query), a connection that
/// broke mid-protocol, a worker crashed, a TLS failure, and the PostgreSQL SQLSTATEs of a server that is down, starting,
/// shutting down or out of connections.
pub fn is_unavailable(e: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    match e {
        DbErr::ConnectionAcquire(_) => true,
        DbErr::Conn(RuntimeErr::SqlxError(s))
        | DbErr::Exec(RuntimeErr::SqlxError(s))
        | DbErr::Query(RuntimeErr::SqlxError(s)) => sqlx_unavailable(s),
        // sea-orm's own connection errors (e.g. a closed connection) carry no driver error.
        DbErr::Conn(RuntimeErr::Internal(_)) => true,
        _ => false,
    }
}

fn sqlx_unavailable(e: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error;
    match e {
        // Protocol: the connection ended or broke mid-exchange (e.g. closed by a proxy
        // whose database is gone: "unexpected response from SSLRequest").
        Error::Io(_)
        | Error::Protocol(_)
        | Error::Tls(_)
        | Error::PoolTimedOut
        | Error::PoolClosed
        | Error::WorkerCrashed => true,
        Error::Database(db) => db.code().is_some_and(|c| unavailable_sqlstate(&c)),
        _ => false,
    }
}

/// Connections in the pool of a PostgreSQL store unless told otherwise: room for the
/// ingestion service's 16 concurrent write transactions (its default
/// `--ingestion-write-concurrency` on PostgreSQL) with as many left for reads and the
/// other services of an all-in-one process.
pub const DEFAULT_POSTGRES_MAX_CONNECTIONS: u32 = 32;
/// Connections in the pool of a SQLite file store unless told otherwise (one writer at a
/// time; the rest read in WAL mode).
pub const DEFAULT_SQLITE_MAX_CONNECTIONS: u32 = 8;

/// How long the readiness probe's connection may take to open or be acquired.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A handle on the database: cheap to clone (a pool inside).
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    /// A pool of one connection, opened on first use, for [`Store::probe`]; `None` for an
    /// in-memory SQLite database (which cannot become unreachable).
    probe: Option<DatabaseConnection>,
    /// The cached KPI name numbers of stored drivers ([`snapshot::names`]).
    names: std::sync::Arc<snapshot::names::NamesCache>,
}

/// A readiness probe of the database (see [`Store::probe`]).
#[derive(Clone, Debug)]
pub struct Probe {
    db: Option<DatabaseConnection>,
}

impl Probe {
    /// Checks that the database answers, on the probe's own connection.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &self.db {
            Some(db) => Ok(db.ping().await?),
            None => Ok(()),
        }
    }
}

/// What a store function runs on: the [`Store`] (a pooled connection per statement) or a
/// [`WriteTx`] (the statements of several calls commit together). Sealed: only these two.
pub trait Db: sealed::Sealed + Sync {}

impl Db for Store {}
impl Db for WriteTx {}

pub(crate) mod sealed {
    use sea_orm::ConnectionTrait;

    /// The connection behind a [`super::Db`].
    pub trait Sealed {
        /// The sea-orm connection type.
        type Conn: ConnectionTrait + Sync;
        /// The connection the statements run on.
        fn c(&self) -> &Self::Conn;
        /// The store's cache of KPI name numbers.
        fn names(&self) -> &crate::snapshot::names::NamesCache;
    }

    impl Sealed for super::Store {
        type Conn = sea_orm::DatabaseConnection;
        fn c(&self) -> &Self::Conn {
            &self.db
        }
        fn names(&self) -> &crate::snapshot::names::NamesCache {
            &self.names
        }
    }

    impl Sealed for super::WriteTx {
        type Conn = sea_orm::DatabaseTransaction;
        fn c(&self) -> &Self::Conn {
            &self.0
        }
        fn names(&self) -> &crate::snapshot::names::NamesCache {
            &self.1
        }
    }
}

/// A write transaction opened by [`Store::begin_write`]: pass `&tx` to store functions,
/// then [`WriteTx::commit`]. Dropped uncommitted, it rolls back.
#[derive(Debug)]
pub struct WriteTx(
    DatabaseTransaction,
    std::sync::Arc<snapshot::names::NamesCache>,
);

impl WriteTx {
    /// Commits every statement run on this transaction.
    pub async fn commit(self) -> Result<(), StoreError> {
        Ok(self.0.commit().await?)
    }

    /// Rolls the transaction back.
    pub async fn rollback(self) -> Result<(), StoreError> {
        Ok(self.0.rollback().await?)
    }
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
    /// Starts a write transaction, for several store calls that must commit together
    /// (pass `&tx` where a store function takes `&impl Db`). On SQLite it is
    /// `BEGIN IMMEDIATE`: the write lock is taken up front, waiting up to the busy
    /// timeout for another writer, because a deferred transaction that reads first fails
    /// at once with `SQLITE_BUSY` when another writer commits before its first write (the
    /// busy timeout does not apply there). On PostgreSQL a plain `BEGIN`. Every
    /// transaction that writes starts here. Dropped without [`WriteTx::commit`], it rolls
    /// back.
    pub async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        Ok(WriteTx(self.begin_raw().await?, self.names.clone()))
    }

    /// [`Store::begin_write`] as the sea-orm transaction, for the store's own functions.
    pub(crate) async fn begin_raw(&self) -> Result<DatabaseTransaction, DbErr> {
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
        // The probe has a connection of its own, so that a busy pool (every connection
        // taken by long work) does not look like an unreachable database.
        let probe = if memory {
            None
        } else {
            let mut p = opts.clone();
            p.max_connections(1)
                .min_connections(0)
                .connect_timeout(PROBE_TIMEOUT)
                .acquire_timeout(PROBE_TIMEOUT)
                .connect_lazy(true);
            Some(
                Database::connect(p)
                    .await
                    .map_err(|source| StoreError::Connect {
                        url: shown.clone(),
                        source,
                    })?,
            )
        };
        let db = Database::connect(opts)
            .await
            .map_err(|source| StoreError::Connect { url: shown, source })?;
        Ok(Self {
            db,
            probe,
            names: Default::default(),
        })
    }

    /// Applies every pending migration; a no-op on an up-to-date database.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migration::Migrator::up(&self.db, None).await?;
        Ok(())
    }

    /// The sea-orm connection, for tests, benchmarks and migrations that set up or inspect
    /// rows directly. Services do not use it: every statement they need is a store
    /// function taking `&Store` (or a [`WriteTx`]).
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

    /// A readiness probe: pings the database on a connection of its own (opened on first
    /// use, at most [`PROBE_TIMEOUT`] to connect), not the shared pool's.
    pub fn probe(&self) -> Probe {
        Probe {
            db: self.probe.clone(),
        }
    }

    /// Whether [`Store::close`] was called (on this store or a clone of it).
    pub fn is_closed(&self) -> bool {
        match self.db.get_database_backend() {
            DbBackend::Postgres => self.db.get_postgres_connection_pool().is_closed(),
            _ => self.db.get_sqlite_connection_pool().is_closed(),
        }
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(self) -> Result<(), StoreError> {
        if let Some(p) = self.probe {
            p.close().await?;
        }
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
