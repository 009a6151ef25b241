//! Storage of the tokens Vitals creates itself: today only the all-in-one's first-start
//! admin token. Only the SHA-256 of a token is stored (`auth_tokens.token_sha256`, 64
//! lowercase hex digits); the token itself is given to its owner once (the all-in-one
//! writes it to a file of mode 0600) and never stored here.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, OnConflict, Query};
use sea_orm::{ConnectionTrait, FromQueryResult};

use crate::{Store, StoreError};

/// `auth_tokens.name` of the all-in-one's first-start admin token.
pub const FIRST_START_ADMIN: &str = "first-start-admin";

/// A stored token hash.
#[derive(Clone, Debug, PartialEq, Eq, FromQueryResult)]
pub struct StoredToken {
    /// Unique name (e.g. [`FIRST_START_ADMIN`]).
    pub name: String,
    /// `read`, `ingest` or `admin`.
    pub role: String,
    /// SHA-256 of the token, 64 lowercase hex digits.
    pub token_sha256: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// Every stored token hash, by name.
pub async fn list_tokens(store: &Store) -> Result<Vec<StoredToken>, StoreError> {
    let t = Alias::new("auth_tokens");
    let q = Query::select()
        .columns([
            Alias::new("name"),
            Alias::new("role"),
            Alias::new("token_sha256"),
            Alias::new("created_at"),
        ])
        .from(t)
        .order_by(Alias::new("name"), sea_orm::sea_query::Order::Asc)
        .to_owned();
    let db = store.conn();
    let stmt = db.get_database_backend().build(&q);
    Ok(StoredToken::find_by_statement(stmt).all(db).await?)
}

/// Stores `token` unless a token named `token.name` exists; returns whether it was
/// stored. Two processes racing on a fresh database store exactly one.
pub async fn insert_token_if_absent(
    store: &Store,
    token: &StoredToken,
) -> Result<bool, StoreError> {
    let q = Query::insert()
        .into_table(Alias::new("auth_tokens"))
        .columns([
            Alias::new("name"),
            Alias::new("role"),
            Alias::new("token_sha256"),
            Alias::new("created_at"),
        ])
        .values_panic([
            Expr::val(token.name.clone()),
            Expr::val(token.role.clone()),
            Expr::val(token.token_sha256.clone()),
            Expr::val(token.created_at),
        ])
        .on_conflict(
            OnConflict::column(Alias::new("name"))
                .do_nothing()
                .to_owned(),
        )
        .to_owned();
    let db = store.conn();
    let stmt = db.get_database_backend().build(&q);
    let res = db.execute_raw(stmt).await?;
    Ok(res.rows_affected() == 1)
}

/// Deletes the token named `name`; returns whether there was one. The all-in-one uses it
/// when it cannot hand a new first-start token to anyone (its file cannot be written),
/// so that the next start makes a new one instead of accepting a token nobody has.
pub async fn delete_token(store: &Store, name: &str) -> Result<bool, StoreError> {
    let q = Query::delete()
        .from_table(Alias::new("auth_tokens"))
        .and_where(sea_orm::sea_query::ExprTrait::eq(
            Expr::col(Alias::new("name")),
            name,
        ))
        .to_owned();
    let db = store.conn();
    let stmt = db.get_database_backend().build(&q);
    let res = db.execute_raw(stmt).await?;
    Ok(res.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn first_insert_wins_and_only_hashes_are_kept(store: Store) {
        assert!(list_tokens(&store).await.unwrap().is_empty());
        let at = DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let a = StoredToken {
            name: FIRST_START_ADMIN.into(),
            role: "admin".into(),
            token_sha256: "a".repeat(64),
            created_at: at,
        };
        let b = StoredToken {
            token_sha256: "b".repeat(64),
            ..a.clone()
        };
        assert!(insert_token_if_absent(&store, &a).await.unwrap());
        assert!(!insert_token_if_absent(&store, &b).await.unwrap());
        assert_eq!(list_tokens(&store).await.unwrap(), vec![a]);
        assert!(delete_token(&store, FIRST_START_ADMIN).await.unwrap());
        assert!(!delete_token(&store, FIRST_START_ADMIN).await.unwrap());
        assert!(list_tokens(&store).await.unwrap().is_empty());
        assert!(insert_token_if_absent(&store, &b).await.unwrap());
    }

    crate::store_test_suite!(first_insert_wins_and_only_hashes_are_kept);
}
