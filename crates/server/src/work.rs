//! Heavy work under a budget: training, evaluation and scoring runs.
//!
//! A [`WorkBudget`] is shared by every service of one process. It lets at most
//! `--heavy-concurrency` operations run at once; a further one waits for a slot for at most
//! `--heavy-queue-timeout`, then fails with RESOURCE_EXHAUSTED naming the limit.
//!
//! Each operation holds a [`Work`]: the handler keeps it in its future, so when tonic drops
//! that future (the client cancelled, its deadline or the server's request timeout passed)
//! the work is cancelled. The CPU part runs on a blocking thread with a [`CancelFlag`]
//! that it checks at cheap points (per observation date, per fold, per lambda, per
//! profile) and stops at; the slot is freed only when the blocking part has stopped, so
//! abandoned work cannot pile up. [`WorkBudget::shutdown`] (wired to the server's shutdown
//! signal by [`WorkBudget::cancel_on`]) cancels everything in flight and refuses new work,
//! so the process exits within the drain timeout.
//!
//! Nothing may be committed after cancellation: writers check [`Work::check`] (or
//! [`CancelFlag::is_cancelled`]) inside their transaction, right before the commit.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::ServerConfig;
use crate::error::ApiError;

/// Default of `--heavy-concurrency`: two cores' worth of heavy work at once.
pub const DEFAULT_HEAVY_CONCURRENCY: u32 = 2;
/// Default of `--heavy-queue-timeout`.
pub const DEFAULT_HEAVY_QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

/// The per-process budget of heavy work (cheap to clone; clones share it).
#[derive(Clone, Debug)]
pub struct WorkBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    slots: Arc<Semaphore>,
    limit: u32,
    queue_timeout: Duration,
    /// Parent of every operation's token: cancelled when the server drains.
    shutdown: CancellationToken,
}

impl Default for WorkBudget {
    /// The default limits.
    fn default() -> Self {
        Self::new(DEFAULT_HEAVY_CONCURRENCY, DEFAULT_HEAVY_QUEUE_TIMEOUT)
    }
}

impl WorkBudget {
    /// At most `limit` (at least 1) operations at once; others wait up to `queue_timeout`.
    pub fn new(limit: u32, queue_timeout: Duration) -> Self {
        let limit = limit.max(1);
        Self {
            inner: Arc::new(Inner {
                slots: Arc::new(Semaphore::new(limit as usize)),
                limit,
                queue_timeout,
                shutdown: CancellationToken::new(),
            }),
        }
    }

    /// The budget `config` sets (`--heavy-concurrency`, `--heavy-queue-timeout`).
    pub fn from_config(config: &ServerConfig) -> Self {
        Self::new(config.heavy_concurrency, config.heavy_queue_timeout)
    }

    /// Operations allowed at once.
    pub fn limit(&self) -> u32 {
        self.inner.limit
    }

    /// Operations holding a slot now (including cancelled ones whose blocking part has
    /// not stopped yet).
    pub fn in_flight(&self) -> usize {
        self.inner.limit as usize - self.inner.slots.available_permits()
    }

    /// Waits for a slot (at most the queue timeout) and starts the operation `what`
    /// (e.g. `"Train"`, named in errors and logs).
    ///
    /// RESOURCE_EXHAUSTED when no slot frees up in time; UNAVAILABLE once the server is
    /// shutting down.
    pub async fn start(&self, what: &'static str) -> Result<Work, ApiError> {
        let inner = &self.inner;
        if inner.shutdown.is_cancelled() {
            return Err(Cancelled::shutdown(what).into());
        }
        let acquire = inner.slots.clone().acquire_owned();
        let slot = tokio::select! {
            biased;
            _ = inner.shutdown.cancelled() => return Err(Cancelled::shutdown(what).into()),
            r = tokio::time::timeout(inner.queue_timeout, acquire) => match r {
                Ok(Ok(slot)) => slot,
                // The semaphore is never closed; treat it like a full queue anyway.
                Ok(Err(_)) | Err(_) => {
                    tracing::warn!(
                        operation = what,
                        limit = inner.limit,
                        "heavy work refused: no free slot"
                    );
                    return Err(ApiError::ResourceExhausted(format!(
                        "{what}: the server already runs its limit of {} heavy operation(s) \
                         (VITALS_HEAVY_CONCURRENCY) and none finished within {} s \
                         (VITALS_HEAVY_QUEUE_TIMEOUT); retry later",
                        inner.limit,
                        inner.queue_timeout.as_secs()
                    )));
                }
            },
        };
        // Inside a long-running operation, its phase moves from `queued` to `running`.
        crate::operations::report("running", 0.0);
        Ok(Work {
            flag: CancelFlag {
                token: inner.shutdown.child_token(),
                shutdown: inner.shutdown.clone(),
                what,
                _slot: Arc::new(slot),
            },
        })
    }

    /// Cancels every operation in flight and refuses new ones: what the server does when
    /// it starts draining.
    pub fn shutdown(&self) {
        if !self.inner.shutdown.is_cancelled() {
            tracing::info!(
                in_flight = self.in_flight(),
                "cancelling heavy work: the server is shutting down"
            );
        }
        self.inner.shutdown.cancel();
    }

    /// Whether [`WorkBudget::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// `signal`, followed by [`WorkBudget::shutdown`]: pass it to
    /// [`crate::GrpcServer::serve`] as the shutdown future, so heavy work is cancelled as
    /// soon as draining starts.
    pub fn cancel_on<F>(&self, signal: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let budget = self.clone();
        async move {
            signal.await;
            budget.shutdown();
        }
    }
}

/// One heavy operation in flight. Dropping it cancels the operation (its blocking part
/// stops at its next check and then frees the slot).
#[derive(Debug)]
pub struct Work {
    flag: CancelFlag,
}

impl Drop for Work {
    fn drop(&mut self) {
        if !self.flag.token.is_cancelled() {
            self.flag.token.cancel();
        }
    }
}

impl Work {
    /// The flag the blocking part checks; it holds the operation's slot while it lives.
    pub fn flag(&self) -> CancelFlag {
        self.flag.clone()
    }

    /// Whether the operation was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.flag.is_cancelled()
    }

    /// `Err` (UNAVAILABLE when the server drains) once the operation is cancelled: call it
    /// right before committing anything.
    pub fn check(&self) -> Result<(), ApiError> {
        self.flag.check().map_err(ApiError::from)
    }

    /// Runs `f` on a blocking thread with the operation's flag, and returns its result.
    /// When the operation is cancelled while `f` runs, `f` is expected to notice and stop;
    /// its result is then discarded.
    ///
    /// `E` is the caller's error type: the budget's own refusals (cancelled, draining) and
    /// a panicked task come as [`ApiError`]s converted into it.
    pub async fn blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<ApiError> + Send + 'static,
        F: FnOnce(&CancelFlag) -> Result<T, E> + Send + 'static,
    {
        self.check()?;
        let flag = self.flag();
        let out = tokio::task::spawn_blocking(move || f(&flag))
            .await
            .map_err(|e| ApiError::Internal(format!("{} task failed: {e}", self.flag.what)))?;
        self.check()?;
        out
    }
}

/// The cancellation flag of one heavy operation, for its blocking part (cheap to clone;
/// the operation's slot is held until every clone is dropped).
#[derive(Clone, Debug)]
pub struct CancelFlag {
    token: CancellationToken,
    shutdown: CancellationToken,
    what: &'static str,
    _slot: Arc<OwnedSemaphorePermit>,
}

impl CancelFlag {
    /// Whether the operation was cancelled (caller gone, deadline passed, server draining).
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// `Err(Cancelled)` once cancelled: the `?` at each cancellation point.
    pub fn check(&self) -> Result<(), Cancelled> {
        if self.token.is_cancelled() {
            Err(Cancelled {
                what: self.what,
                by_shutdown: self.shutdown.is_cancelled(),
            })
        } else {
            Ok(())
        }
    }
}

/// A heavy operation stopped because it was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{what} cancelled: {}", if *.by_shutdown {
    "the server is shutting down"
} else {
    "its caller went away or its deadline passed"
})]
pub struct Cancelled {
    /// The operation.
    pub what: &'static str,
    /// Whether the server's shutdown cancelled it (else its caller).
    pub by_shutdown: bool,
}

impl Cancelled {
    fn shutdown(what: &'static str) -> Self {
        Self {
            what,
            by_shutdown: true,
        }
    }
}

impl From<Cancelled> for ApiError {
    /// UNAVAILABLE: a client still listening (the server drains) may retry elsewhere.
    fn from(e: Cancelled) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    use tonic::Code;

    use super::*;

    #[tokio::test]
    async fn a_full_budget_refuses_after_the_queue_timeout_naming_the_limit() {
        let budget = WorkBudget::new(1, Duration::from_millis(50));
        let first = budget.start("Train").await.expect("first slot");
        assert_eq!(budget.in_flight(), 1);
        let t = Instant::now();
        let err = budget.start("Evaluate").await.expect_err("no slot");
        assert!(t.elapsed() >= Duration::from_millis(50));
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(
            status.message().contains("VITALS_HEAVY_CONCURRENCY")
                && status.message().contains("Evaluate"),
            "{}",
            status.message()
        );
        drop(first);
        budget.start("Evaluate").await.expect("slot freed");
    }

    #[tokio::test]
    async fn a_queued_operation_gets_the_slot_when_it_frees() {
        let budget = WorkBudget::new(1, Duration::from_secs(10));
        let first = budget.start("Train").await.expect("first slot");
        let b = budget.clone();
        let waiter = tokio::spawn(async move { b.start("Evaluate").await.map(|_| ()) });
        tokio::task::yield_now().await;
        drop(first);
        waiter.await.expect("join").expect("queued, then served");
    }

    /// Dropping the `Work` (tonic dropping the handler future) cancels the blocking part,
    /// which stops at its next check; the slot is held until it has stopped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_the_work_cancels_its_blocking_part_and_then_frees_the_slot() {
        let budget = WorkBudget::new(1, Duration::from_secs(10));
        let stopped = Arc::new(AtomicBool::new(false));
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let call = {
            let (budget, stopped) = (budget.clone(), stopped.clone());
            async move {
                let work = budget.start("Train").await?;
                work.blocking(move |flag| {
                    let _ = started_tx.send(());
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_secs(20) {
                        if flag.check().is_err() {
                            stopped.store(true, Ordering::SeqCst);
                            return Err(flag.check().expect_err("cancelled").into());
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Ok(())
                })
                .await
            }
        };
        // The caller gives up after the work started (as tonic's timeout does).
        let r = tokio::time::timeout(Duration::from_secs(5), async {
            tokio::select! {
                r = call => r,
                _ = started_rx => Err(ApiError::Unavailable("caller gone".into())),
            }
        })
        .await
        .expect("select ends");
        assert!(r.is_err());
        let t = Instant::now();
        let next = budget.start("Evaluate").await.expect("slot freed");
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "slot freed late: {:?}",
            t.elapsed()
        );
        assert!(stopped.load(Ordering::SeqCst), "the blocking part noticed");
        drop(next);
    }

    #[tokio::test]
    async fn shutdown_cancels_work_in_flight_and_refuses_new_work() {
        let budget = WorkBudget::new(2, Duration::from_secs(10));
        let work = budget.start("Train").await.expect("slot");
        let flag = work.flag();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let signal = budget.cancel_on(async move {
            let _ = rx.await;
        });
        let drained = tokio::spawn(signal);
        assert!(!flag.is_cancelled());
        let _ = tx.send(());
        drained.await.expect("join");
        assert!(flag.is_cancelled() && budget.is_shut_down());
        let e = work.check().expect_err("cancelled");
        assert!(e.to_string().contains("shutting down"), "{e}");
        assert_eq!(tonic::Status::from(e).code(), Code::Unavailable);
        let e = budget.start("Evaluate").await.expect_err("refused");
        assert_eq!(tonic::Status::from(e).code(), Code::Unavailable);
    }

    #[test]
    fn the_budget_follows_the_settings() {
        let mut c = ServerConfig::for_tests("sqlite::memory:");
        assert_eq!(c.heavy_concurrency, DEFAULT_HEAVY_CONCURRENCY);
        assert_eq!(c.heavy_queue_timeout, DEFAULT_HEAVY_QUEUE_TIMEOUT);
        c.heavy_concurrency = 3;
        assert_eq!(WorkBudget::from_config(&c).limit(), 3);
    }
}
