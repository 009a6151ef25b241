//! The readiness probe and the outage classification of the store.

use vitals_store::sea_orm::{ConnAcquireErr, DbErr, RuntimeErr};
use vitals_store::{Store, StoreError, is_unavailable};

/// A busy pool is not an outage: with every pooled connection taken (here by a write
/// transaction on a pool of one), the probe still answers on its own connection.
#[tokio::test]
async fn probe_answers_while_every_pooled_connection_is_taken() {
    let dir = std::env::temp_dir().join(format!("vitals-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut urls = vec![format!(
        "sqlite://{}?mode=rwc",
        dir.join("probe.db").display()
    )];
    if let Ok(base) = std::env::var(vitals_store::testing::POSTGRES_URL_ENV) {
        urls.push(base);
    }
    for url in urls {
        let store = Store::connect_with_pool_size(&url, Some(1)).await.unwrap();
        let tx = store.begin_write().await.unwrap();
        let probe = store.probe();
        let answered = tokio::time::timeout(std::time::Duration::from_secs(1), probe.ping()).await;
        assert!(
            matches!(answered, Ok(Ok(()))),
            "{url}: the probe waited for the pool: {answered:?}"
        );
        // The pool itself has no connection to give.
        let pool = tokio::time::timeout(std::time::Duration::from_millis(300), store.ping()).await;
        assert!(pool.is_err(), "{url}: the pool was not exhausted");
        tx.rollback().await.unwrap();
        store.close().await.unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn connection_errors_are_unavailable_and_others_are_not() {
    assert!(is_unavailable(&DbErr::ConnectionAcquire(
        ConnAcquireErr::Timeout
    )));
    assert!(StoreError::from(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)).is_unavailable());
    assert!(!StoreError::from(DbErr::Custom("x".into())).is_unavailable());
    assert!(!is_unavailable(&DbErr::Query(RuntimeErr::Internal(
        "syntax error".into()
    ))));
}
