//! Where and under what budget CEL runs: a small dedicated thread pool (never the async
//! workers), at most [`workers`] batches at once per process, each batch under a
//! deadline and each evaluation under a step budget, and abandoned when its caller goes
//! away.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use crate::ScorecardError;

use super::{BATCH_TIMEOUT, MAX_STEPS};

/// Stack of the threads that compile and evaluate CEL: four times what the worst
/// expression the limits let through uses in a debug build (see the test
/// `expressions_at_the_limits_fit_a_quarter_of_the_stack`), so depth can never overflow
/// it. Only the pages actually touched take memory.
pub const STACK_BYTES: usize = 64 << 20;

/// Threads of the CEL pool, and batches that may run at once: half the cores, at least
/// one, so CEL never takes every core from the async workers (health checks included).
pub fn workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| (n.get() / 2).max(1))
        .unwrap_or(1)
}

static POOL: LazyLock<Result<rayon::ThreadPool, String>> = LazyLock::new(|| {
    rayon::ThreadPoolBuilder::new()
        .num_threads(workers())
        .stack_size(STACK_BYTES)
        .thread_name(|i| format!("vitals-cel-{i}"))
        .build()
        .map_err(|e| format!("cel thread pool: {e}"))
});

static SLOTS: LazyLock<tokio::sync::Semaphore> =
    LazyLock::new(|| tokio::sync::Semaphore::new(workers()));

/// Why an evaluation stopped before giving a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// One evaluation took more than [`MAX_STEPS`] comprehension steps.
    Steps,
    /// The batch ran past its deadline.
    Deadline,
    /// The caller went away.
    Cancelled,
}

const RUNNING: u8 = 0;

impl Stop {
    fn code(self) -> u8 {
        match self {
            Stop::Steps => 1,
            Stop::Deadline => 2,
            Stop::Cancelled => 3,
        }
    }

    fn of(code: u8) -> Option<Self> {
        match code {
            1 => Some(Stop::Steps),
            2 => Some(Stop::Deadline),
            3 => Some(Stop::Cancelled),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct MeterState {
    steps: AtomicU64,
    max_steps: u64,
    deadline: Instant,
    cancelled: AtomicBool,
    /// Why the current evaluation stopped ([`RUNNING`] while it has not).
    stopped: AtomicU8,
}

/// The budget of one batch of evaluations, shared with the CEL step function.
#[derive(Debug, Clone)]
pub struct Meter(Arc<MeterState>);

impl Meter {
    /// A budget of `max_steps` steps per evaluation and `timeout` for the batch.
    pub fn new(max_steps: u64, timeout: Duration) -> Self {
        Self(Arc::new(MeterState {
            steps: AtomicU64::new(0),
            max_steps,
            deadline: Instant::now() + timeout,
            cancelled: AtomicBool::new(false),
            stopped: AtomicU8::new(RUNNING),
        }))
    }

    /// The default budget ([`MAX_STEPS`], [`BATCH_TIMEOUT`]).
    pub fn standard() -> Self {
        Self::new(MAX_STEPS, BATCH_TIMEOUT)
    }

    /// Starts one evaluation: resets its step count; fails when the batch is already
    /// past its deadline or cancelled.
    pub fn begin(&self) -> Result<(), Stop> {
        self.0.steps.store(0, Ordering::Relaxed);
        self.0.stopped.store(RUNNING, Ordering::Relaxed);
        self.check_batch()
    }

    fn check_batch(&self) -> Result<(), Stop> {
        if self.0.cancelled.load(Ordering::Relaxed) {
            return Err(self.stop(Stop::Cancelled));
        }
        if Instant::now() >= self.0.deadline {
            return Err(self.stop(Stop::Deadline));
        }
        Ok(())
    }

    fn stop(&self, why: Stop) -> Stop {
        self.0.stopped.store(why.code(), Ordering::Relaxed);
        why
    }

    /// Counts one comprehension step.
    pub fn tick(&self) -> Result<(), Stop> {
        if let Some(s) = self.stopped() {
            return Err(s);
        }
        let n = self.0.steps.fetch_add(1, Ordering::Relaxed) + 1;
        if n > self.0.max_steps {
            return Err(self.stop(Stop::Steps));
        }
        self.check_batch()
    }

    /// Why the current evaluation stopped, if it did.
    pub fn stopped(&self) -> Option<Stop> {
        Stop::of(self.0.stopped.load(Ordering::Relaxed))
    }

    /// Abandons the batch: every later step and evaluation fails with
    /// [`Stop::Cancelled`].
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::Relaxed);
    }
}

/// Cancels the batch when the future waiting for it is dropped (the caller went away or
/// its deadline passed).
struct CancelOnDrop(Meter);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Runs `work` on the CEL pool under a fresh [`Meter::standard`] budget, waiting (async)
/// for one of the [`workers`] slots first. Dropping the returned future cancels the
/// batch. A panic in `work` is an internal error, never the end of the process.
pub async fn run<T, F>(work: F) -> Result<T, ScorecardError>
where
    T: Send + 'static,
    F: FnOnce(&Meter) -> T + Send + 'static,
{
    run_with(Meter::standard(), work).await
}

/// [`run`] under `meter`.
pub async fn run_with<T, F>(meter: Meter, work: F) -> Result<T, ScorecardError>
where
    T: Send + 'static,
    F: FnOnce(&Meter) -> T + Send + 'static,
{
    let _slot = SLOTS
        .acquire()
        .await
        .map_err(|_| ScorecardError::Internal("cel slots closed".into()))?;
    let pool = POOL
        .as_ref()
        .map_err(|e| ScorecardError::Internal(e.clone()))?;
    let guard = CancelOnDrop(meter.clone());
    let (tx, rx) = tokio::sync::oneshot::channel();
    pool.spawn(move || {
        let out = std::panic::catch_unwind(AssertUnwindSafe(|| work(&meter)));
        // The receiver is gone when the caller was cancelled: nothing to tell.
        let _ = tx.send(out);
    });
    let out = rx
        .await
        .map_err(|_| ScorecardError::Internal("cel evaluation ended without an answer".into()))?;
    drop(guard);
    out.map_err(|_| ScorecardError::Internal("cel evaluation panicked".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn dropping_the_caller_cancels_the_batch() {
        let (tx, rx) = std::sync::mpsc::channel();
        let batch = run_with(Meter::new(u64::MAX, Duration::from_secs(60)), move |m| {
            let why = loop {
                if let Err(s) = m.tick() {
                    break s;
                }
                std::thread::sleep(Duration::from_millis(1));
            };
            let _ = tx.send(why);
        });
        // The caller gives up after 100 ms: the future is dropped.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), batch)
                .await
                .is_err()
        );
        let why = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(10)))
            .await
            .unwrap();
        assert_eq!(why, Ok(Stop::Cancelled));
    }

    #[tokio::test]
    async fn a_panic_is_an_internal_error_not_the_end_of_the_process() {
        let e = run(|_| -> u32 { panic!("boom") }).await.unwrap_err();
        assert!(matches!(e, ScorecardError::Internal(_)), "{e}");
        assert_eq!(run(|_| 7).await.unwrap(), 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_workers_batches_run_at_once() {
        static NOW: AtomicUsize = AtomicUsize::new(0);
        static MAX: AtomicUsize = AtomicUsize::new(0);
        let batches = (0..workers() * 3).map(|_| {
            run(|_| {
                let n = NOW.fetch_add(1, Ordering::SeqCst) + 1;
                MAX.fetch_max(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(30));
                NOW.fetch_sub(1, Ordering::SeqCst);
            })
        });
        for r in futures_join_all(batches).await {
            r.unwrap();
        }
        assert_eq!(MAX.load(Ordering::SeqCst), workers());
    }

    /// Awaits every future (a tiny join_all: no extra dependency for one test).
    async fn futures_join_all<F>(fs: impl Iterator<Item = F>) -> Vec<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handles: Vec<_> = fs.map(tokio::spawn).collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    }
}
