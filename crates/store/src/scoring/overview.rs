//! Portfolio aggregates for read-only views (the web UI of the scoring service): band
//! counts, the score histogram, the recent runs and the accounts most at risk. Every
//! statement aggregates or limits in SQL, so a page never loads the whole portfolio.

use sea_orm::{ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Value};

use super::{SnapshotRecord, stmt, tuple};
use crate::entity::{pulse, score_run, score_snapshot};
use crate::{Db, StoreError};

/// How many latest rows of one profile are in one band.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BandCount {
    /// The profile (empty: accounts scored without one).
    pub profile_id: String,
    /// `red`, `yellow`, `green` (or empty).
    pub band: String,
    /// Latest rows.
    pub count: u64,
}

/// The number of latest rows of `scorecard_id` per (profile, band), ordered by profile
/// then band.
pub async fn band_counts(db: &impl Db, scorecard_id: &str) -> Result<Vec<BandCount>, StoreError> {
    let conn = db.c();
    let sql = "SELECT profile_id, band, COUNT(*) AS n FROM score_latest \
               WHERE scorecard_id = ? GROUP BY profile_id, band ORDER BY profile_id, band";
    let rows = conn
        .query_all_raw(stmt(
            conn.get_database_backend(),
            sql,
            vec![Value::from(scorecard_id.to_owned())],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok(BandCount {
                profile_id: r.try_get("", "profile_id")?,
                band: r.try_get("", "band")?,
                count: u64::try_from(r.try_get::<i64>("", "n")?).unwrap_or(0),
            })
        })
        .collect::<Result<_, DbErr>>()
        .map_err(Into::into)
}

/// Buckets of [`histogram`]: one per point of the 0..10 scale.
pub const HISTOGRAM_BUCKETS: usize = 10;

/// How many latest rows of `scorecard_id` (of one profile, or all) fall in each point of
/// the 0..10 scale: bucket `k` holds `k <= value < k + 1`, the last one also 10 (values
/// below 0 count in the first, above 10 in the last).
pub async fn histogram(
    db: &impl Db,
    scorecard_id: &str,
    profile_id: Option<&str>,
) -> Result<[u64; HISTOGRAM_BUCKETS], StoreError> {
    let conn = db.c();
    // One pass, one row: a SUM per bucket (portable; no FLOOR on SQLite builds without
    // math functions, and CAST rounds on PostgreSQL).
    let mut sql = String::from("SELECT ");
    for k in 0..HISTOGRAM_BUCKETS {
        if k > 0 {
            sql.push_str(", ");
        }
        let cond = match k {
            0 => "value < 1".to_owned(),
            k if k == HISTOGRAM_BUCKETS - 1 => format!("value >= {k}"),
            k => format!("value >= {k} AND value < {}", k + 1),
        };
        sql.push_str(&format!(
            "CAST(COALESCE(SUM(CASE WHEN {cond} THEN 1 ELSE 0 END), 0) AS BIGINT) AS b{k}"
        ));
    }
    sql.push_str(" FROM score_latest WHERE scorecard_id = ?");
    let mut values = vec![Value::from(scorecard_id.to_owned())];
    if let Some(p) = profile_id {
        sql.push_str(" AND profile_id = ?");
        values.push(Value::from(p.to_owned()));
    }
    let row = conn
        .query_one_raw(stmt(conn.get_database_backend(), &sql, values))
        .await?;
    let mut out = [0u64; HISTOGRAM_BUCKETS];
    if let Some(r) = row {
        for (k, slot) in out.iter_mut().enumerate() {
            *slot = u64::try_from(r.try_get::<i64>("", &format!("b{k}"))?).unwrap_or(0);
        }
    }
    Ok(out)
}

/// The latest `limit` committed runs over a population (scope `all` or `profiles/...`;
/// one-account runs are left out), newest first.
pub async fn recent_runs(db: &impl Db, limit: u64) -> Result<Vec<score_run::Model>, StoreError> {
    use sea_orm::ColumnTrait;
    Ok(score_run::Entity::find()
        .filter(score_run::Column::FinishedAt.is_not_null())
        .filter(score_run::Column::Scope.not_like("account:%"))
        .order_by_desc(score_run::Column::Id)
        .limit(limit)
        .all(db.c())
        .await?)
}

/// Filters of [`at_risk`]; `None` or empty means any.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RiskFilter {
    /// Only this profile.
    pub profile_id: Option<String>,
    /// Only these bands.
    pub bands: Vec<String>,
    /// Only snapshots with a churn probability at least this.
    pub min_churn_probability: Option<f64>,
}

/// The latest profile-score snapshots matching `filter`, lowest score first (then
/// account id), at most `limit`.
pub async fn at_risk(
    db: &impl Db,
    filter: &RiskFilter,
    limit: u64,
) -> Result<Vec<SnapshotRecord>, StoreError> {
    let conn = db.c();
    let backend = conn.get_database_backend();
    let mut w = String::from(" WHERE l.scorecard_id = ?");
    let mut values = vec![Value::from(super::PROFILE_SCORECARD.to_owned())];
    if let Some(p) = &filter.profile_id {
        w.push_str(" AND l.profile_id = ?");
        values.push(Value::from(p.clone()));
    }
    if !filter.bands.is_empty() {
        w.push_str(" AND l.band IN ");
        w.push_str(&tuple(filter.bands.len()));
        values.extend(filter.bands.iter().map(|b| Value::from(b.clone())));
    }
    if let Some(c) = filter.min_churn_probability {
        w.push_str(" AND s.churn_probability >= ?");
        values.push(Value::from(c));
    }
    values.push(Value::from(i64::try_from(limit).unwrap_or(i64::MAX)));
    let sql = format!(
        "SELECT s.* FROM score_latest l JOIN score_snapshots s \
         ON s.account_id = l.account_id AND s.scorecard_id = l.scorecard_id \
         AND s.as_of = l.as_of AND s.run_id = l.run_id{w} \
         ORDER BY l.value ASC, l.account_id ASC LIMIT ?"
    );
    let mut rows = score_snapshot::Entity::find()
        .from_raw_sql(stmt(backend, &sql, values))
        .all(conn)
        .await?;
    crate::snapshot::names::expand(db, &mut rows).await?;
    Ok(rows)
}

/// The newest `limit` snapshots of (account, scorecard), oldest first (a history chart's
/// points, however long the history).
pub async fn recent_snapshots(
    db: &impl Db,
    account_id: &str,
    scorecard_id: &str,
    limit: u64,
) -> Result<Vec<SnapshotRecord>, StoreError> {
    use sea_orm::ColumnTrait;
    let mut rows = score_snapshot::Entity::find()
        .filter(score_snapshot::Column::AccountId.eq(account_id))
        .filter(score_snapshot::Column::ScorecardId.eq(scorecard_id))
        .order_by_desc(score_snapshot::Column::AsOf)
        .order_by_desc(score_snapshot::Column::RunId)
        .limit(limit)
        .all(db.c())
        .await?;
    rows.reverse();
    crate::snapshot::names::expand(db, &mut rows).await?;
    Ok(rows)
}

/// The newest `limit` CSM pulses of one account, newest first.
pub async fn recent_pulses(
    db: &impl Db,
    account_id: &str,
    limit: u64,
) -> Result<Vec<pulse::Model>, StoreError> {
    use sea_orm::ColumnTrait;
    Ok(pulse::Entity::find()
        .filter(pulse::Column::AccountId.eq(account_id))
        .order_by_desc(pulse::Column::At)
        .order_by_desc(pulse::Column::Id)
        .limit(limit)
        .all(db.c())
        .await?)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, Utc};

    use super::*;
    use crate::Store;
    use crate::scoring::{NewSnapshot, PROFILE_SCORECARD, RunRecord, write_run};

    fn snap(
        account: &str,
        profile: &str,
        value: f64,
        churn: Option<f64>,
        as_of: DateTime<Utc>,
    ) -> NewSnapshot {
        let band = if value < 3.0 {
            "red"
        } else if value < 7.0 {
            "yellow"
        } else {
            "green"
        };
        NewSnapshot {
            account_id: account.into(),
            scorecard_id: PROFILE_SCORECARD.into(),
            profile_id: profile.into(),
            as_of,
            value,
            band: band.into(),
            global_value: Some(value),
            global_band: band.into(),
            sub_scores: "{}".into(),
            momentum: 0.0,
            coverage_present: 3,
            coverage_total: 4,
            drivers: Vec::new(),
            churn_probability: churn,
            weights_source: "uniform".into(),
            population_fallback: false,
        }
    }

    fn run(scope: &str, at: DateTime<Utc>) -> RunRecord {
        RunRecord {
            scope: scope.into(),
            started_at: at,
            accounts_scored: 1,
            details: serde_json::json!({}),
            events: Vec::new(),
        }
    }

    async fn portfolio_aggregates_count_in_sql(store: Store) {
        let t0 = Utc::now() - Duration::days(2);
        let t1 = t0 + Duration::days(1);
        // First run: everything; second run moves a1 down and adds nothing else.
        let first = vec![
            snap("a1", "p1", 8.0, Some(0.1), t0),
            snap("a2", "p1", 0.0, Some(0.9), t0),
            snap("a3", "p1", 0.999, None, t0),
            snap("a4", "p2", 10.0, Some(0.05), t0),
            snap("a5", "p2", 5.5, Some(0.4), t0),
            snap("a6", "", 2.0, None, t0),
        ];
        let r1 = write_run(&store, &run("all", t0), &first).await.unwrap();
        let r2 = write_run(
            &store,
            &run("profiles/p1", t1),
            &[snap("a1", "p1", 2.5, Some(0.7), t1)],
        )
        .await
        .unwrap();
        let r3 = write_run(
            &store,
            &run("account:a5", t1),
            &[snap("a5", "p2", 6.0, Some(0.3), t1)],
        )
        .await
        .unwrap();
        // A run begun but never finished is not listed.
        let txn = store.begin_write().await.unwrap();
        super::super::start_run(&txn, "all", t1).await.unwrap();
        txn.commit().await.unwrap();

        let counts = band_counts(&store, PROFILE_SCORECARD).await.unwrap();
        let c = |p: &str, b: &str| {
            counts
                .iter()
                .find(|x| x.profile_id == p && x.band == b)
                .map_or(0, |x| x.count)
        };
        assert_eq!(
            (c("p1", "red"), c("p1", "yellow"), c("p1", "green")),
            (3, 0, 0)
        );
        assert_eq!(
            (c("p2", "yellow"), c("p2", "green"), c("", "red")),
            (1, 1, 1)
        );
        assert_eq!(counts.iter().map(|x| x.count).sum::<u64>(), 6);
        assert!(band_counts(&store, "other").await.unwrap().is_empty());

        let all = histogram(&store, PROFILE_SCORECARD, None).await.unwrap();
        assert_eq!(all, [2, 0, 2, 0, 0, 0, 1, 0, 0, 1]);
        let p2 = histogram(&store, PROFILE_SCORECARD, Some("p2"))
            .await
            .unwrap();
        assert_eq!(p2, [0, 0, 0, 0, 0, 0, 1, 0, 0, 1]);
        assert_eq!(histogram(&store, "none", None).await.unwrap(), [0; 10]);

        let runs = recent_runs(&store, 10).await.unwrap();
        assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), vec![r2, r1]);
        assert!(!runs.iter().any(|r| r.id == r3));
        assert_eq!(recent_runs(&store, 1).await.unwrap().len(), 1);

        let ids =
            |rows: Vec<SnapshotRecord>| rows.into_iter().map(|r| r.account_id).collect::<Vec<_>>();
        let every = at_risk(&store, &RiskFilter::default(), 100).await.unwrap();
        assert_eq!(ids(every), ["a2", "a3", "a6", "a1", "a5", "a4"]);
        let red_p1 = RiskFilter {
            profile_id: Some("p1".into()),
            bands: vec!["red".into()],
            min_churn_probability: Some(0.5),
        };
        let rows = at_risk(&store, &red_p1, 100).await.unwrap();
        assert_eq!(rows[1].churn_probability, Some(0.7));
        assert_eq!(ids(rows), ["a2", "a1"]);
        assert_eq!(
            ids(at_risk(&store, &RiskFilter::default(), 2).await.unwrap()),
            ["a2", "a3"]
        );

        let hist = recent_snapshots(&store, "a1", PROFILE_SCORECARD, 10)
            .await
            .unwrap();
        assert_eq!(
            hist.iter().map(|r| r.value).collect::<Vec<_>>(),
            vec![8.0, 2.5]
        );
        let last = recent_snapshots(&store, "a1", PROFILE_SCORECARD, 1)
            .await
            .unwrap();
        assert_eq!(last.iter().map(|r| r.value).collect::<Vec<_>>(), vec![2.5]);
    }

    async fn recent_pulses_are_the_accounts_newest(store: Store) {
        let t = Utc::now() - Duration::days(10);
        let rows: Vec<crate::ingestion::PulseRow> = (0..5)
            .map(|i| crate::ingestion::PulseRow {
                account_id: if i == 4 { "b".into() } else { "a".into() },
                author: "csm".into(),
                value: i + 1,
                note: format!("note {i}"),
                at: t + Duration::days(i64::from(i)),
            })
            .collect();
        crate::ingestion::record_pulses(&store, &rows)
            .await
            .unwrap();
        let got = recent_pulses(&store, "a", 2).await.unwrap();
        assert_eq!(got.iter().map(|p| p.value).collect::<Vec<_>>(), vec![4, 3]);
        assert_eq!(got[0].note, "note 3");
        assert!(recent_pulses(&store, "zzz", 5).await.unwrap().is_empty());
    }

    crate::store_test_suite!(
        portfolio_aggregates_count_in_sql,
        recent_pulses_are_the_accounts_newest
    );
}
