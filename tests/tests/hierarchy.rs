//! Parent and child accounts over the real all-in-one, on SQLite and PostgreSQL: a parent
//! upserted in the same batch as its children (with subscriptions and usage), a scoring
//! run, the parent's snapshot rolling up its direct children's scores (MRR-weighted by
//! default, recomputed here from the children's own snapshots; `--rollup min` on a second
//! server), the ListScores and ListAccounts parent filters, and the parents refused
//! (unknown, itself, a cycle) with the field named and nothing written; clearing a
//! parent with the empty string.

mod common;

use chrono::Utc;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;
use vitals_proto::ingestion::v1 as ipb;
use vitals_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use vitals_proto::scoring::v1 as spb;
use vitals_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
use vitals_test_support::{Backend, TestServer, backends};

fn ts(secs: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    }
}

fn days_ago(d: i64) -> prost_types::Timestamp {
    ts(Utc::now().timestamp() - d * 86_400)
}

fn account(id: &str, parent: Option<&str>) -> ipb::Account {
    ipb::Account {
        account_id: id.into(),
        display_name: format!("Account {id}"),
        create_time: Some(days_ago(400)),
        parent_id: parent.map(Into::into),
        ..Default::default()
    }
}

async fn start(url: &str, rollup: vitals_scoring::RollupMethod) -> TestServer {
    let mut config = vitals::ServeConfig::for_tests(url.to_string());
    config.scoring.rollup = rollup;
    TestServer::start(move |l, s| vitals::run(config, l, s)).await
}

/// The children of `hq` (MRR 300, 100, none) and unrelated peers, with different usage
/// so that their scores differ.
async fn seed(ing: &mut IngestionServiceClient<Channel>) {
    let mut accounts = vec![
        account("kid-1", Some("hq")),
        account("kid-2", Some("hq")),
        account("kid-3", Some("hq")),
        // The parent after its children: the batch is checked as a whole.
        account("hq", None),
    ];
    accounts.extend((0..4).map(|i| account(&format!("peer-{i}"), None)));
    let r = ing
        .upsert_accounts(ipb::UpsertAccountsRequest {
            accounts,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.created_count, 8);
    let subs = [("hq", 1000.0), ("kid-1", 300.0), ("kid-2", 100.0)]
        .iter()
        .chain(&[("peer-0", 50.0), ("peer-1", 80.0)])
        .map(|(a, mrr)| ipb::Subscription {
            subscription_id: format!("sub-{a}"),
            account_id: (*a).into(),
            product: "core".into(),
            start_time: Some(days_ago(300)),
            mrr: *mrr,
            billing_period_months: 1,
            ..Default::default()
        })
        .collect();
    ing.upsert_subscriptions(ipb::UpsertSubscriptionsRequest {
        subscriptions: subs,
    })
    .await
    .unwrap();
    let usage = [
        ("kid-1", 30),
        ("kid-2", 3),
        ("kid-3", 12),
        ("hq", 8),
        ("peer-0", 20),
        ("peer-1", 1),
        ("peer-2", 6),
    ];
    let mut events = Vec::new();
    for (a, n) in usage {
        for i in 0..n {
            events.push(ipb::Event {
                event_id: format!("{a}-e{i}"),
                account_id: a.into(),
                event_type: "login".into(),
                user_id: format!("u{}", i % 4),
                occur_time: Some(days_ago(1 + i64::from(i) % 20)),
                ..Default::default()
            });
        }
    }
    let acks: Vec<_> = {
        use tokio_stream::StreamExt;
        let mut s = ing
            .ingest_events(tokio_stream::iter([ipb::IngestEventsRequest {
                sequence: 1,
                events,
            }]))
            .await
            .unwrap()
            .into_inner();
        let mut acks = Vec::new();
        while let Some(a) = s.next().await {
            acks.push(a.unwrap());
        }
        acks
    };
    assert_eq!(acks[0].accepted_count, 80);
}

async fn score(c: &mut ScoringServiceClient<Channel>, id: &str) -> spb::ScoreSnapshot {
    c.get_score(spb::GetScoreRequest {
        account_id: id.into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .snapshot
    .unwrap()
}

async fn compute(c: &mut ScoringServiceClient<Channel>) {
    let r = c
        .compute_scores(spb::ComputeScoresRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.scored_count, 8);
}

/// The parent's snapshot rolls up its children's, MRR-weighted (kid-3 has no MRR: weight
/// 0), and only the parent has a roll-up.
async fn check_rollup(backend: Backend, c: &mut ScoringServiceClient<Channel>) {
    let kids = [("kid-1", 300.0), ("kid-2", 100.0), ("kid-3", 0.0)];
    let mut sum = 0.0;
    let mut values = Vec::new();
    for (id, mrr) in kids {
        let s = score(c, id).await;
        assert_eq!(s.rollup_score, None, "{backend:?} {id}");
        assert_eq!((s.rollup_children, s.rollup_method.as_str()), (0, ""));
        sum += s.value * mrr;
        values.push(s.value);
    }
    assert!(
        values.windows(2).any(|w| w[0] != w[1]),
        "{backend:?}: the children's scores should differ: {values:?}"
    );
    let want = sum / 400.0;
    let hq = score(c, "hq").await;
    let got = hq.rollup_score.expect("hq has a roll-up");
    assert!((got - want).abs() < 1e-5, "{backend:?}: {got} vs {want}");
    assert_eq!(hq.rollup_children, 3);
    assert_eq!(hq.rollup_method, "mrr-weighted");
    // The parent's own score is its own, not the roll-up.
    assert!(hq.value.is_finite());
}

/// `r` is INVALID_ARGUMENT naming `field` (message and BadRequest details) and saying `says`.
fn refused<T: std::fmt::Debug>(
    r: Result<tonic::Response<T>, tonic::Status>,
    field: &str,
    says: &str,
) {
    let e = r.expect_err("refused");
    assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    assert!(
        e.message().starts_with(&format!("{field}: ")) && e.message().contains(says),
        "want {field}: ...{says}..., got {:?}",
        e.message()
    );
    let details = e.get_details_bad_request().expect("BadRequest details");
    assert_eq!(details.field_violations[0].field, field);
}

async fn check_refused(ing: &mut IngestionServiceClient<Channel>) {
    let mut upsert = async |accounts: Vec<ipb::Account>| {
        ing.upsert_accounts(ipb::UpsertAccountsRequest {
            accounts,
            ..Default::default()
        })
        .await
    };
    // hq -> kid-2 -> hq.
    let r = upsert(vec![account("new-1", None), account("hq", Some("kid-2"))]).await;
    refused(
        r,
        "accounts[1].parent_id",
        "cycle of parents: hq -> kid-2 -> hq",
    );
    let r = upsert(vec![account("new-1", Some("ghost"))]).await;
    refused(r, "accounts[0].parent_id", "\"ghost\" does not exist");
    let r = upsert(vec![account("kid-1", Some("kid-1"))]).await;
    refused(r, "accounts[0].parent_id", "its own parent");
    // A cycle within one batch.
    let r = upsert(vec![account("x", Some("y")), account("y", Some("x"))]).await;
    refused(r, "accounts[0].parent_id", "cycle");
    // Nothing of the refused batches was written.
    for id in ["new-1", "x", "y"] {
        let e = ing
            .get_account(ipb::GetAccountRequest {
                account_id: id.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{id}");
    }
}

async fn parent_of(ing: &mut IngestionServiceClient<Channel>, id: &str) -> Option<String> {
    ing.get_account(ipb::GetAccountRequest {
        account_id: id.into(),
    })
    .await
    .unwrap()
    .into_inner()
    .account
    .unwrap()
    .parent_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parents_roll_up_their_children_and_filter_lists() {
    for backend in backends() {
        let url = common::shared_url(backend, "hierarchy").await;
        let server = start(&url, Default::default()).await;
        let channel = server.channel().await;
        let mut ing = IngestionServiceClient::new(channel.clone());
        let mut sc = ScoringServiceClient::new(channel);
        seed(&mut ing).await;
        assert_eq!(parent_of(&mut ing, "kid-1").await.as_deref(), Some("hq"));
        assert_eq!(parent_of(&mut ing, "hq").await, None);
        compute(&mut sc).await;
        check_rollup(backend, &mut sc).await;

        // ListScores and ListAccounts: the children of hq.
        let list = sc
            .list_scores(spb::ListScoresRequest {
                parent_id: "hq".into(),
                order_by: "account_id".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let ids: Vec<&str> = list
            .snapshots
            .iter()
            .map(|s| s.account_id.as_str())
            .collect();
        assert_eq!(ids, ["kid-1", "kid-2", "kid-3"], "{backend:?}");
        assert_eq!(list.total_size, 3);
        let accounts = ing
            .list_accounts(ipb::ListAccountsRequest {
                parent_id: "hq".into(),
                page_size: 2,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(accounts.total_size, 3);
        assert_eq!(accounts.accounts.len(), 2);
        assert!(!accounts.next_page_token.is_empty());

        check_refused(&mut ing).await;
        // An update without parent_id keeps it; the empty string clears it.
        let mut keep = account("kid-3", None);
        keep.display_name = "Renamed".into();
        let mut clear = account("kid-2", None);
        clear.parent_id = Some(String::new());
        ing.upsert_accounts(ipb::UpsertAccountsRequest {
            accounts: vec![keep, clear],
            ..Default::default()
        })
        .await
        .unwrap();
        assert_eq!(parent_of(&mut ing, "kid-3").await.as_deref(), Some("hq"));
        assert_eq!(parent_of(&mut ing, "kid-2").await, None);

        // Another server on the same database, with `--rollup min`.
        let min = start(&url, vitals_scoring::RollupMethod::Min).await;
        let mut sc_min = ScoringServiceClient::new(min.channel().await);
        compute(&mut sc_min).await;
        let k1 = score(&mut sc_min, "kid-1").await.value;
        let k3 = score(&mut sc_min, "kid-3").await.value;
        let hq = score(&mut sc_min, "hq").await;
        assert_eq!(hq.rollup_children, 2, "{backend:?}");
        assert_eq!(hq.rollup_method, "min");
        assert!((hq.rollup_score.unwrap() - k1.min(k3)).abs() < 1e-9);
    }
}
