//! Once-per-cluster work on top of the store's leases (`vitals_store::lease`),
//! docs/deploy.md "Work shared between replicas".
//!
//! - [`Leases::spawn_schedule`]: a periodic job (the scoring schedule, the profile
//!   assignment passes, ...) runs only on the replica holding the lease
//!   `schedule:<name>`. Every replica tries to take it every `ttl / 3`; the holder renews
//!   it at that pace (also while the job runs), so it stays with one replica, which runs
//!   every tick. A holder killed (SIGKILL, host lost) stops renewing: another replica
//!   takes the lease over at most `ttl + ttl / 3` after its last renewal and runs the
//!   next tick of its own schedule. A holder that stops cleanly gives the lease back.
//! - [`Leases::lock`]: a mutex across replicas (e.g. scoring runs): waits until it holds
//!   the lease, renews it while held and releases it when the guard is dropped.
//!
//! On SQLite (one process) the same code runs; the only holder always wins.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use vitals_store::{Store, StoreError, lease};

/// Default of `--lease-ttl-ms`: a lease not renewed for 10 s is lost.
pub const DEFAULT_LEASE_TTL_MS: u64 = 10_000;

/// How often a waiting [`Leases::lock`] tries again.
const LOCK_POLL: Duration = Duration::from_millis(100);

/// This replica's leases: its holder id (host, process, instance), the store and the
/// lease time-to-live (cheap to clone).
#[derive(Clone, Debug)]
pub struct Leases {
    store: Store,
    holder: Arc<str>,
    ttl: Duration,
}

impl Leases {
    /// Leases of a new holder on `store` with time-to-live `ttl` (at least 300 ms).
    pub fn new(store: Store, ttl: Duration) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let holder = format!(
            "{host}:{}:{started}:{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        Self {
            store,
            holder: holder.into(),
            ttl: ttl.max(Duration::from_millis(300)),
        }
    }

    /// Leases with the time-to-live of `--lease-ttl-ms`.
    pub fn from_config(store: Store, config: &crate::ServerConfig) -> Self {
        Self::new(store, Duration::from_millis(config.lease_ttl_ms))
    }

    /// This holder's id, as stored in `leases.holder`.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The time-to-live of a lease not renewed.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How often a held lease is renewed (and a free one tried for): `ttl / 3`.
    pub fn check_every(&self) -> Duration {
        self.ttl / 3
    }

    /// Takes or renews `key`; `held` says whether this holder held it until now. Errors
    /// count as not held (logged): the job does not run while the database cannot say.
    async fn keep(&self, key: &str, held: bool) -> bool {
        self.keep_as(key, &self.holder, held).await
    }

    /// [`Leases::keep`] as `holder` (a [`LeaseGuard`]'s own id).
    async fn keep_as(&self, key: &str, holder: &str, held: bool) -> bool {
        let r = if held {
            lease::renew(&self.store, key, holder, self.ttl).await
        } else {
            lease::try_acquire(&self.store, key, holder, self.ttl).await
        };
        match r {
            Ok(now) => {
                if now && !held {
                    tracing::info!(lease = key, holder, "lease taken");
                } else if !now && held {
                    tracing::warn!(lease = key, holder, "lease lost");
                }
                now
            }
            Err(e) => {
                if held {
                    tracing::warn!(lease = key, error = %e, "cannot renew the lease");
                }
                false
            }
        }
    }

    /// Runs `job` every `every` (the first time `first` from now) while this replica
    /// holds the lease `schedule:<name>`; ends (giving the lease back) once `stop()`
    /// holds, checked at least every `ttl / 3`.
    pub fn spawn_schedule<F, Fut>(
        &self,
        name: &str,
        first: Duration,
        every: Duration,
        stop: impl Fn() -> bool + Send + 'static,
        mut job: F,
    ) -> JoinHandle<()>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let this = self.clone();
        let key = format!("schedule:{name}");
        tokio::spawn(async move {
            use tokio::time::{Instant, MissedTickBehavior, interval, interval_at};
            let mut held = false;
            let mut renew = interval(this.check_every());
            renew.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut tick = interval_at(Instant::now() + first, every);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = renew.tick() => {
                        if stop() {
                            break;
                        }
                        held = this.keep(&key, held).await;
                    }
                    _ = tick.tick() => {
                        if stop() {
                            break;
                        }
                        held = this.keep(&key, held).await;
                        if !held {
                            continue;
                        }
                        // The job runs as its own task, so that it makes progress while a
                        // renewal waits for a database connection (a pool of one, as an
                        // in-memory SQLite database has, would otherwise deadlock until
                        // the pool's timeout).
                        let mut run = tokio::spawn(job());
                        loop {
                            tokio::select! {
                                _ = &mut run => break,
                                _ = renew.tick() => held = this.keep(&key, held).await,
                            }
                        }
                    }
                }
            }
            if held {
                let _ = lease::release(&this.store, &key, &this.holder).await;
            }
        })
    }

    /// Waits until this holder holds the lease `name` (retrying every 100 ms), then keeps
    /// it renewed until the guard is dropped, which releases it. Cancel-safe: dropping the
    /// future while it waits takes nothing.
    ///
    /// Each guard holds the lease under its own id (this holder's, then `:lock<n>`), so
    /// two locks of one process exclude each other as two replicas' do, and the release
    /// of a dropped guard (a spawned task, which may run late, e.g. behind SQLite's write
    /// lock) never deletes the next guard's lease.
    pub async fn lock(&self, name: &str) -> Result<LeaseGuard, StoreError> {
        static LOCKS: AtomicU64 = AtomicU64::new(0);
        let holder: Arc<str> = format!(
            "{}:lock{}",
            self.holder,
            LOCKS.fetch_add(1, Ordering::Relaxed)
        )
        .into();
        while !lease::try_acquire(&self.store, name, &holder, self.ttl).await? {
            tokio::time::sleep(LOCK_POLL).await;
        }
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (this, key, lost) = (self.clone(), name.to_string(), lost.clone());
            let holder = holder.clone();
            tokio::spawn(async move {
                let mut t = tokio::time::interval(this.check_every());
                t.tick().await;
                loop {
                    t.tick().await;
                    if !this.keep_as(&key, &holder, true).await {
                        // Not renewed (taken over, or the database could not say): another
                        // holder may hold it from its expiry on. Renewing goes on, in case
                        // it is still this holder's.
                        lost.store(true, Ordering::Release);
                    }
                }
            })
        };
        Ok(LeaseGuard {
            leases: self.clone(),
            name: name.to_string(),
            holder,
            lost,
            renewer,
        })
    }
}

/// A lease held by [`Leases::lock`]: renewed while alive, released when dropped.
#[derive(Debug)]
pub struct LeaseGuard {
    leases: Leases,
    name: String,
    /// This guard's holder id.
    holder: Arc<str>,
    lost: Arc<AtomicBool>,
    renewer: JoinHandle<()>,
}

impl LeaseGuard {
    /// Whether the lease could not be renewed at some point since it was taken (so
    /// another holder may have held it meanwhile): work under it must not commit.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.renewer.abort();
        let (leases, name) = (self.leases.clone(), std::mem::take(&mut self.name));
        let holder = self.holder.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = lease::release(&leases.store, &name, &holder).await {
                    tracing::warn!(lease = %name, error = %e, "cannot release the lease; it expires");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    async fn store() -> Store {
        vitals_store::testing::fresh_store(vitals_store::testing::Backend::Sqlite)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_schedule_runs_on_one_holder_and_moves_when_it_stops() {
        let store = store().await;
        let ttl = Duration::from_millis(600);
        let (a, b) = (
            Leases::new(store.clone(), ttl),
            Leases::new(store.clone(), ttl),
        );
        assert_ne!(a.holder(), b.holder());
        let runs = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let stop_a = Arc::new(AtomicBool::new(false));
        let every = Duration::from_millis(100);
        let spawn = |l: &Leases, i: usize, stop: Arc<AtomicBool>| {
            let runs = runs.clone();
            l.spawn_schedule(
                "test",
                Duration::ZERO,
                every,
                move || stop.load(Ordering::Acquire),
                move || {
                    runs[i].fetch_add(1, Ordering::Relaxed);
                    async {}
                },
            )
        };
        let ha = spawn(&a, 0, stop_a.clone());
        tokio::time::sleep(Duration::from_millis(50)).await;
        let hb = spawn(&b, 1, Arc::new(AtomicBool::new(false)));
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let (ra, rb) = (
            runs[0].load(Ordering::Relaxed),
            runs[1].load(Ordering::Relaxed),
        );
        assert!(ra >= 5 && rb == 0, "a ran {ra}, b ran {rb}");
        // `a` stops (and releases): `b` takes over within a check.
        stop_a.store(true, Ordering::Release);
        ha.await.unwrap();
        let before = runs[1].load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(runs[1].load(Ordering::Relaxed) > before + 2);
        let l = lease::get(&store, "schedule:test").await.unwrap().unwrap();
        assert_eq!(l.holder, b.holder());
        hb.abort();
    }

    #[tokio::test]
    async fn lock_excludes_other_holders_until_dropped() {
        let store = store().await;
        let ttl = Duration::from_millis(600);
        let (a, b) = (
            Leases::new(store.clone(), ttl),
            Leases::new(store.clone(), ttl),
        );
        let g = a.lock("mutex").await.unwrap();
        // Held past its ttl: renewed, so `b` keeps waiting.
        let waiting = tokio::time::timeout(Duration::from_millis(1_200), b.lock("mutex")).await;
        assert!(waiting.is_err(), "b got a held lease");
        assert!(!g.is_lost());
        drop(g);
        let gb = tokio::time::timeout(Duration::from_secs(2), b.lock("mutex"))
            .await
            .expect("b takes the released lease")
            .unwrap();
        let held_by = lease::get(&store, "mutex").await.unwrap().unwrap().holder;
        assert!(
            held_by.starts_with(&format!("{}:lock", b.holder())),
            "{held_by}"
        );
        drop(gb);
    }

    /// Two locks of one process exclude each other, and the next lock after a drop keeps
    /// its lease: the dropped guard's release (a task that may run after the next guard
    /// took the lease) deletes only its own hold.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn locks_of_one_holder_exclude_each_other_and_a_release_frees_only_its_own() {
        // A SQLite file: the waits below are cancelled, and an in-memory database's one
        // connection, closed by a cancelled query, would come back empty.
        let path = std::env::temp_dir().join(format!(
            "vitals-lease-{}-{}.db",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        let store = Store::connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let ttl = Duration::from_millis(600);
        let a = Leases::new(store.clone(), ttl);
        let g1 = a.lock("run").await.unwrap();
        let second = tokio::time::timeout(Duration::from_millis(900), a.lock("run")).await;
        assert!(
            second.is_err(),
            "a second lock of the same process got a held lease"
        );
        // The next lock of the process waits while the first is held (with one id per
        // process it was granted at once, and the first's late release then deleted it).
        let a2 = a.clone();
        let next = tokio::spawn(async move { a2.lock("run").await.unwrap() });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!next.is_finished(), "granted while the first lock is held");
        drop(g1);
        let g2 = tokio::time::timeout(Duration::from_secs(2), next)
            .await
            .expect("the released lease is taken")
            .unwrap();
        // Well past the ttl: renewed all along, never lost, still this guard's.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert!(!g2.is_lost());
        assert_eq!(
            lease::get(&store, "run").await.unwrap().unwrap().holder,
            &*g2.holder
        );
        drop(g2);
        store.close().await.unwrap();
        let _ = std::fs::remove_file(&path);
    }
}
