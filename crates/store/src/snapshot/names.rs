//! The KPI names that version 3 drivers refer to by number: the table `kpi_names`
//! (migration 20; one row per name ever stored, never changed or deleted), and a cache of
//! it in each [`crate::Store`].
//!
//! A scoring run asks [`kpi_names`] for the numbers of its catalogue's KPIs (adding the
//! names the table lacks) and encodes its rows with them
//! ([`super::encode_drivers_with`]): a row then stores a one- or two-byte number where
//! version 2 stored the name, half the bytes of a row. The store's snapshot readers
//! ([`expand`]) give such rows back in the self-contained version 2 form, so nothing
//! above the store sees the numbers.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use sea_orm::{ConnectionTrait, DbErr, Statement, Value};

use super::V3;
use crate::entity::score_snapshot;
use crate::{Db, StoreError};

/// KPI names and their numbers, as read from `kpi_names`.
#[derive(Debug, Default)]
pub struct KpiNames {
    by_name: HashMap<String, u32>,
    by_id: HashMap<u32, String>,
}

impl KpiNames {
    /// The number of `name`, if it has one.
    pub fn id(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    /// The name numbered `id`.
    pub fn name(&self, id: u32) -> Option<&str> {
        self.by_id.get(&id).map(String::as_str)
    }

    /// How many names are numbered.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no name is numbered.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// A table of these numbers (for tests and tools that build rows by hand).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (u32, &'a str)>) -> Self {
        let mut names = Self::default();
        for (id, name) in pairs {
            names.by_name.insert(name.to_owned(), id);
            names.by_id.insert(id, name.to_owned());
        }
        names
    }
}

/// The cache of `kpi_names` a [`crate::Store`] keeps: the table only grows and a number
/// never changes meaning, so a cached table is right for every number it holds; a number
/// it lacks (added by another process since) reloads it.
#[derive(Debug, Default)]
pub struct NamesCache(RwLock<Arc<KpiNames>>);

impl NamesCache {
    fn get(&self) -> Arc<KpiNames> {
        self.0.read().map(|g| g.clone()).unwrap_or_default()
    }

    fn set(&self, names: Arc<KpiNames>) {
        if let Ok(mut g) = self.0.write() {
            *g = names;
        }
    }
}

async fn load(conn: &impl ConnectionTrait) -> Result<KpiNames, DbErr> {
    let rows = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT id, name FROM kpi_names",
        ))
        .await?;
    let mut names = KpiNames::default();
    for r in rows {
        let id: i64 = r.try_get("", "id")?;
        let name: String = r.try_get("", "name")?;
        let id = u32::try_from(id)
            .map_err(|_| DbErr::Custom(format!("kpi_names: number {id} out of range")))?;
        names.by_name.insert(name.clone(), id);
        names.by_id.insert(id, name);
    }
    Ok(names)
}

/// The numbers of `wanted`: from the cache when it has them all, else after adding the
/// missing names to `kpi_names` (in their own statement: a name once numbered keeps its
/// number whether or not the caller's work commits) and reloading it.
pub async fn kpi_names(db: &impl Db, wanted: &[&str]) -> Result<Arc<KpiNames>, StoreError> {
    let cache = db.names();
    let cached = cache.get();
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|n| cached.id(n).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(cached);
    }
    let conn = db.c();
    let backend = conn.get_database_backend();
    for chunk in missing.chunks(500) {
        let mut sql = String::from("INSERT INTO kpi_names (name) VALUES ");
        for (i, _) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str("(?)");
        }
        sql.push_str(" ON CONFLICT (name) DO NOTHING");
        let values: Vec<Value> = chunk.iter().map(|n| Value::from((*n).to_owned())).collect();
        conn.execute_raw(Statement::from_sql_and_values(
            backend,
            crate::placeholders(backend, &sql),
            values,
        ))
        .await?;
    }
    let names = Arc::new(load(conn).await?);
    cache.set(names.clone());
    Ok(names)
}

/// Whether a stored `drivers_bin` refers to KPI names by number.
fn numbered(b: &Option<Vec<u8>>) -> bool {
    b.as_deref().and_then(<[u8]>::first) == Some(&V3)
}

/// Rewrites the numbered drivers of `rows` in the self-contained version 2 form (what
/// every snapshot reader of the store does before returning rows). A number the table
/// does not hold, or a row that does not decode, is left as stored (its decoding then
/// names the problem).
pub(crate) async fn expand(
    db: &impl Db,
    rows: &mut [score_snapshot::Model],
) -> Result<(), StoreError> {
    if !rows.iter().any(|r| numbered(&r.drivers_bin)) {
        return Ok(());
    }
    let cache = db.names();
    let mut names = cache.get();
    // A number missing from the cache was added by another process since it was read:
    // one reload, then what still does not decode is left as stored.
    for reloaded in [false, true] {
        if reloaded {
            names = Arc::new(load(db.c()).await?);
            cache.set(names.clone());
        }
        let mut unread = 0;
        for r in rows.iter_mut().filter(|r| numbered(&r.drivers_bin)) {
            let b = r.drivers_bin.as_deref().unwrap_or_default();
            match super::decode_drivers_with(b, &names) {
                Ok(drivers) => r.drivers_bin = Some(super::encode_drivers(&drivers)),
                Err(_) => unread += 1,
            }
        }
        if unread == 0 {
            break;
        }
    }
    Ok(())
}
