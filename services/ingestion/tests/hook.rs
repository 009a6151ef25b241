//! The accounts hook (what the all-in-one uses to assign upserted accounts to their
//! health profile at once): called with the batch's ids after the commit and before the
//! call returns, only for batches that were written.

mod common;

use std::sync::{Arc, Mutex};

use common::url_for;
use tonic::Code;
use vitals_ingestion::{AccountsHook, IngestionArgs, register_with_hook};
use vitals_proto::ingestion::v1 as pb;
use vitals_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use vitals_server::{GrpcServer, ServerConfig};
use vitals_store::Store;
use vitals_store::sea_orm::{ConnectionTrait, Statement};
use vitals_test_support::{TestServer, backends};

/// One call of the hook: its ids, and how many of them were already stored.
type Call = (Vec<String>, usize);

/// Accounts of `ids` stored in the database, as seen from another connection.
async fn stored(store: &Store, ids: &[String]) -> usize {
    let c = store.conn();
    let mut n = 0;
    for id in ids {
        let row = c
            .query_one_raw(Statement::from_sql_and_values(
                c.get_database_backend(),
                match c.get_database_backend() {
                    vitals_store::sea_orm::DbBackend::Postgres => {
                        "SELECT COUNT(*) AS n FROM accounts WHERE id = $1"
                    }
                    _ => "SELECT COUNT(*) AS n FROM accounts WHERE id = ?",
                },
                [id.clone().into()],
            ))
            .await
            .expect("query")
            .expect("row");
        n += row.try_get::<i64>("", "n").expect("n") as usize;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_hook_sees_committed_batches_only() {
    for backend in backends() {
        let url = url_for(backend).await;
        let store = Store::connect(&url).await.expect("connect");
        store.migrate().await.expect("migrate");
        // Each call: (ids, how many of them the hook's own connection already sees).
        let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
        let hook: AccountsHook = {
            let (calls, store) = (calls.clone(), store.clone());
            Arc::new(move |ids: Vec<String>| {
                let (calls, store) = (calls.clone(), store.clone());
                Box::pin(async move {
                    let seen = stored(&store, &ids).await;
                    calls.lock().unwrap().push((ids, seen));
                })
            })
        };
        let config = ServerConfig::for_tests(url);
        let server = TestServer::start(|listener, shutdown| async move {
            let store = vitals_server::open_store(&config).await?;
            let mut grpc = GrpcServer::new();
            register_with_hook(
                &mut grpc,
                store.clone(),
                &IngestionArgs::default(),
                &config,
                Some(hook),
            )?;
            grpc.serve(&config, listener, shutdown).await?;
            store.close().await?;
            Ok(())
        })
        .await;
        let mut c = IngestionServiceClient::new(server.channel().await);
        let acc = |id: &str| pb::Account {
            account_id: id.into(),
            ..Default::default()
        };

        c.upsert_accounts(pb::UpsertAccountsRequest {
            accounts: vec![acc("b"), acc("a")],
            replace_attributes: false,
        })
        .await
        .expect("upsert");
        // Called before the response, after the commit (another connection sees both).
        assert_eq!(
            calls.lock().unwrap().clone(),
            vec![(vec!["b".to_string(), "a".to_string()], 2)],
            "{backend:?}"
        );

        // A rejected batch writes nothing and calls nothing.
        let e = c
            .upsert_accounts(pb::UpsertAccountsRequest {
                accounts: vec![acc("c"), acc("")],
                replace_attributes: false,
            })
            .await
            .expect_err("empty id");
        assert_eq!(e.code(), Code::InvalidArgument);
        assert_eq!(calls.lock().unwrap().len(), 1, "{backend:?}");

        // An update of a known account calls it again.
        c.upsert_accounts(pb::UpsertAccountsRequest {
            accounts: vec![acc("a")],
            replace_attributes: false,
        })
        .await
        .expect("upsert");
        assert_eq!(calls.lock().unwrap().len(), 2, "{backend:?}");
        assert_eq!(calls.lock().unwrap()[1], (vec!["a".to_string()], 1));

        store.close().await.expect("close");
        server.stop().await.expect("stop");
    }
}
