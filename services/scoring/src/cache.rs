//! The latest scores in memory, for GetScore without `as_of`.
//!
//! A hit answers GetScore without touching the database. Entries are tagged with the
//! cache's *generation*; a new generation makes every older entry a miss at once, and an
//! answer read from the database under an older generation is never served. The
//! generation moves forward:
//! - when a scoring run of this process commits (so a process never serves a score older
//!   than its own last run), and
//! - when an override is set or cleared through this process (an entry also holds the
//!   override in force, see `read::Score::manual_override`), and
//! - when the number of committed runs or the last override change in the database
//!   changes, checked every `--score-cache-refresh-ms` by a background task: the runs and
//!   overrides of other replicas sharing the database are seen within that interval.
//!
//! A scoring run of this process that commits also fills the new generation with the
//! scores it wrote (those that are now the latest, up to the cache's capacity, with the
//! overrides in force), so GetScore after a run reads nothing from the database: with
//! `--score-cache-entries` at least the accounts times the scorecards, every call is a
//! hit. It takes the change markers itself, while it still holds the run lease (no other
//! run can commit then), so that the background task does not take its own run for
//! another replica's.
//!
//! Snapshots are only ever written by scoring runs (nothing updates or deletes them), and
//! every override change writes an audit row, so these signals cover every change of a
//! latest score and of the override shown with it; an override's expiry is checked at
//! each hit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use quick_cache::sync::Cache;
use vitals_store::Store;

use crate::domain::read::Score;
use vitals_store::StoreError;

/// Default of `--score-cache-entries`.
pub const DEFAULT_ENTRIES: u64 = 100_000;
/// Default of `--score-cache-refresh-ms`.
pub const DEFAULT_REFRESH_MS: u64 = 1_000;

/// (account id, scorecard id).
type Key = (String, String);

/// The database's change markers: committed runs, and the overrides' last change.
pub(crate) type Marker = (i64, (i64, i64));

/// Reads the [`Marker`] of the database.
pub(crate) async fn read_marker(store: &Store) -> Result<Marker, StoreError> {
    let runs = vitals_store::scoring::committed_runs(store).await?;
    let overrides = vitals_store::overrides::last_change(store).await?;
    Ok((runs, overrides))
}

/// A [`Key`] looked up without copying its strings. Its `Hash` must equal the key's:
/// both hash the two strings in order.
#[derive(Hash)]
struct KeyRef<'a>(&'a str, &'a str);

impl quick_cache::Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

struct Entry {
    generation: u64,
    score: Arc<Score>,
}

/// The latest score of each (account, scorecard) recently asked for, decoded as GetScore
/// returns it.
pub(crate) struct LatestCache {
    /// `None` when the cache is off (`--score-cache-entries 0`).
    entries: Option<Cache<Key, Arc<Entry>>>,
    generation: AtomicU64,
    /// The last [`Marker`] read (by the background task or by a run of this process).
    seen: Mutex<Option<Marker>>,
}

impl std::fmt::Debug for LatestCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatestCache")
            .field("capacity", &self.entries.as_ref().map(|c| c.capacity()))
            .field("generation", &self.generation())
            .finish()
    }
}

impl LatestCache {
    /// A cache of at most `capacity` entries (0: off).
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            entries: (capacity > 0).then(|| Cache::new(capacity as usize)),
            generation: AtomicU64::new(0),
            seen: Mutex::new(None),
        }
    }

    /// How many entries it holds at most (0: off).
    pub(crate) fn capacity(&self) -> usize {
        self.entries.as_ref().map_or(0, |c| c.capacity() as usize)
    }

    /// The current generation: read it before reading the database, and give it to
    /// [`LatestCache::put`] with what was read.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The cached snapshot of (account, scorecard), if it belongs to the current
    /// generation.
    pub(crate) fn get(&self, account_id: &str, scorecard_id: &str) -> Option<Arc<Score>> {
        let entries = self.entries.as_ref()?;
        let e = entries.get(&KeyRef(account_id, scorecard_id))?;
        (e.generation == self.generation()).then(|| e.score.clone())
    }

    /// Remembers `snapshot`, read from the database under `generation`. Kept only if no
    /// newer generation started meanwhile (else the read may predate a commit).
    pub(crate) fn put(
        &self,
        account_id: String,
        scorecard_id: String,
        generation: u64,
        score: Arc<Score>,
    ) {
        let Some(entries) = self.entries.as_ref() else {
            return;
        };
        if generation != self.generation() {
            return;
        }
        entries.insert(
            (account_id, scorecard_id),
            Arc::new(Entry { generation, score }),
        );
        // A new generation that started while inserting must not leave this entry
        // looking current: entries carry their generation and `get` compares it, so it
        // is a miss from then on.
    }

    /// Puts `scores` (read or written under `generation`) while that generation lasts;
    /// returns how many were put.
    pub(crate) fn fill(
        &self,
        generation: u64,
        scores: impl IntoIterator<Item = (Key, Arc<Score>)>,
    ) -> usize {
        let mut n = 0;
        for ((account, card), score) in scores {
            if generation != self.generation() {
                break;
            }
            self.put(account, card, generation, score);
            n += 1;
        }
        n
    }

    /// Starts a new generation: every entry cached so far becomes a miss.
    pub(crate) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Number of entries held (current or stale).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, |c| c.len())
    }
}

/// Watches the database for runs committed by other processes and starts a new
/// generation of `cache` when there are; ends when the service is dropped.
pub(crate) fn spawn_refresh(cache: Weak<LatestCache>, store: Store, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(cache) = cache.upgrade() else {
                return;
            };
            let reading = read_marker(&store).await;
            cache.observe(reading);
        }
    });
}

impl LatestCache {
    /// Takes one reading of the database's change markers (the previous one is kept): a
    /// new generation when it changed, or when it could not be read (nothing cached can be
    /// trusted then).
    pub(crate) fn observe(&self, reading: Result<Marker, StoreError>) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match reading {
            Ok(n) => {
                if seen.as_ref().is_some_and(|s| *s != n) {
                    self.invalidate();
                }
                *seen = Some(n);
            }
            Err(e) => {
                self.invalidate();
                tracing::warn!(error = %e, "score cache: cannot read the change markers (runs, overrides)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(value: f64) -> Arc<Score> {
        let record = crate::domain::read::record("a", "p", value, "green");
        Arc::new(Score::new(record, true))
    }

    #[test]
    fn hit_until_a_new_generation() {
        let c = LatestCache::new(10);
        assert!(c.get("a", "p").is_none());
        let g = c.generation();
        c.put("a".into(), "p".into(), g, snap(42.0));
        assert_eq!(c.get("a", "p").map(|s| s.record.value), Some(42.0));
        assert!(c.get("a", "other").is_none());
        c.invalidate();
        assert!(c.get("a", "p").is_none(), "stale entry served");
        c.put("a".into(), "p".into(), c.generation(), snap(7.0));
        assert_eq!(c.get("a", "p").map(|s| s.record.value), Some(7.0));
    }

    #[test]
    fn a_read_older_than_the_generation_is_not_kept() {
        let c = LatestCache::new(10);
        let g = c.generation();
        // A run commits between the database read and the put.
        c.invalidate();
        c.put("a".into(), "p".into(), g, snap(1.0));
        assert!(c.get("a", "p").is_none());
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn off_caches_nothing() {
        let c = LatestCache::new(0);
        c.put("a".into(), "p".into(), c.generation(), snap(1.0));
        assert!(c.get("a", "p").is_none());
    }

    #[test]
    fn marker_changes_and_read_errors_start_a_new_generation() {
        let c = LatestCache::new(10);
        c.observe(Ok((3, (0, 0))));
        assert_eq!(c.generation(), 0, "the first reading is the baseline");
        c.observe(Ok((3, (0, 0))));
        assert_eq!(c.generation(), 0, "no new run");
        c.observe(Ok((4, (0, 0))));
        assert_eq!(c.generation(), 1, "another replica committed a run");
        c.observe(Ok((4, (7, 1))));
        assert_eq!(c.generation(), 2, "an override changed");
        c.observe(Err(StoreError::Db(vitals_store::sea_orm::DbErr::Custom(
            "down".into(),
        ))));
        assert_eq!(c.generation(), 3, "an unreadable count trusts nothing");
        assert_eq!(*c.seen.lock().unwrap(), Some((4, (7, 1))));
    }

    #[test]
    fn a_fill_stops_at_a_new_generation() {
        let c = LatestCache::new(10);
        let g = c.generation();
        let scores = (0..3).map(|i| ((format!("a{i}"), "p".to_string()), snap(f64::from(i))));
        assert_eq!(c.fill(g, scores), 3);
        assert_eq!(c.get("a2", "p").map(|s| s.record.value), Some(2.0));
        c.invalidate();
        let late = std::iter::once((("b".to_string(), "p".to_string()), snap(1.0)));
        assert_eq!(
            c.fill(g, late),
            0,
            "a fill of an older generation puts nothing"
        );
        assert!(c.get("b", "p").is_none());
    }

    #[test]
    fn bounded() {
        let c = LatestCache::new(100);
        for i in 0..1_000 {
            c.put(format!("a{i}"), "p".into(), c.generation(), snap(i as f64));
        }
        assert!(c.len() <= 100, "{} entries", c.len());
    }
}
