//! The schema applies on every back end, twice without harm, and stores what it is given.

use chrono::{TimeZone, Utc};
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, PaginatorTrait};
use vitals_store::entity::{account, usage_daily};
use vitals_store::testing::{backends, fresh_store};
use vitals_store::{Store, StoreError};

#[tokio::test]
async fn migrations_are_idempotent_and_tables_round_trip() {
    for backend in backends() {
        let store = fresh_store(backend).await.expect("fresh store");
        // A second run is a no-op, as it is at every start-up.
        store.migrate().await.expect("second migrate");

        let at = Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap();
        account::Model {
            id: "acme".into(),
            name: "Acme".into(),
            attributes: serde_json::json!({"plan": {"string": "premium"}, "seats": {"number": 50.0}}),
            profile_id: None,
            pinned: false,
            status: "active".into(),
            created_at: at,
            updated_at: at,
        }
        .into_active_model()
        .insert(store.conn())
        .await
        .expect("insert account");
        usage_daily::Model {
            account_id: "acme".into(),
            day: at.date_naive(),
            event_type: "login".into(),
            count: 3,
            distinct_users: 2,
            value_sum: 1.5,
        }
        .into_active_model()
        .insert(store.conn())
        .await
        .expect("insert roll-up");

        let got = account::Entity::find_by_id("acme")
            .one(store.conn())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.created_at, at, "{backend:?}");
        assert_eq!(got.attributes["seats"]["number"], 50.0, "{backend:?}");
        let n = usage_daily::Entity::find()
            .count(store.conn())
            .await
            .unwrap();
        assert_eq!(n, 1, "{backend:?}");

        // The idempotency key of events is the primary key: a duplicate is refused.
        let dup = account::Model {
            name: "Other".into(),
            ..got.clone()
        }
        .into_active_model()
        .insert(store.conn())
        .await;
        assert!(dup.is_err(), "{backend:?}: duplicate primary key accepted");
    }
}

#[tokio::test]
async fn bad_urls_are_refused_with_a_clear_error() {
    let err = Store::connect("mysql://localhost/x").await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err}");
    let err = Store::connect("postgres://nobody:secret@127.0.0.1:1/none")
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("cannot connect"), "{msg}");
    assert!(!msg.contains("secret"), "password leaked: {msg}");
}
