//! A database that already holds bad CEL (saved by a version without today's checks):
//! the all-in-one starts, serves, assigns upserted accounts and computes scores, skipping
//! the bad rule and segment instead of dying (the 1,500-term chain aborted every
//! restart within a second).

mod common;

use chrono::Utc;
use tonic_health::pb::health_check_response::ServingStatus;
use vitals_proto::ingestion::v1 as ipb;
use vitals_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use vitals_proto::profiles::v1 as ppb;
use vitals_proto::profiles::v1::profiles_service_client::ProfilesServiceClient;
use vitals_proto::scoring::v1 as spb;
use vitals_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
use vitals_store::Store;
use vitals_store::profiles::{self as sp, ScorecardRecord, StoredMeasure};
use vitals_test_support::{TestServer, backends, health};

fn chain(n: usize) -> String {
    format!("{} > 0", vec!["1"; n].join("+"))
}

/// Writes what an older version could have stored: a profile whose rule is the chain
/// that overflowed the stack, one with an unknown function, and a scorecard whose
/// segment is the chain.
async fn store_bad_cel(url: &str) {
    let store = Store::connect(url).await.expect("connect");
    store.migrate().await.expect("migrate");
    let now = Utc::now();
    for (i, rule) in [chain(1500), "foo(plan)".to_string()].iter().enumerate() {
        let mut p = vitals_profiles::assign::default_profile(now);
        p.id = format!("bad{i}");
        p.display_name = format!("Bad {i}");
        p.rule = rule.clone();
        p.priority = i as i32;
        p.is_default = false;
        assert!(
            sp::insert_profile_if_absent(&store, &p)
                .await
                .expect("insert profile")
        );
    }
    sp::insert_scorecard(
        &store,
        &ScorecardRecord {
            id: "seats".into(),
            display_name: "Seats".into(),
            description: String::new(),
            measure: StoredMeasure::Attribute {
                attribute: "seats".into(),
            },
            worst: 0.0,
            best: 100.0,
            yellow_from: 3.0,
            green_from: 7.0,
            impact: "medium".into(),
            segment: chain(1500),
            tags: vec![],
            display_order: 0,
            enabled: true,
            include_in_global: true,
            created_at: now,
            updated_at: now,
        },
    )
    .await
    .expect("insert scorecard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_holding_bad_cel_starts_serves_and_assigns() {
    for backend in backends() {
        let url = common::shared_url(backend, "cel").await;
        store_bad_cel(&url).await;
        let config = vitals::ServeConfig::for_tests(url);
        let server = TestServer::start(move |l, s| vitals::run(config, l, s)).await;
        let channel = server.channel().await;

        IngestionServiceClient::new(channel.clone())
            .upsert_accounts(ipb::UpsertAccountsRequest {
                accounts: (0..3)
                    .map(|i| ipb::Account {
                        account_id: format!("acc{i}"),
                        display_name: format!("Account {i}"),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .await
            .expect("UpsertAccounts with bad rules stored");
        assert_eq!(
            health(server.addr, "").await,
            Ok(ServingStatus::Serving),
            "{backend:?}"
        );
        let mut profiles = ProfilesServiceClient::new(channel.clone());
        let got = profiles
            .get_account_profile(ppb::GetAccountProfileRequest {
                account_id: "acc0".into(),
            })
            .await
            .expect("account profile")
            .into_inner();
        assert_eq!(got.profile, "profiles/default", "{backend:?}");

        // Scoring skips the stored segment that cannot compile any more.
        let run = ScoringServiceClient::new(channel)
            .compute_scores(spb::ComputeScoresRequest {
                scope: None,
                as_of: None,
            })
            .await
            .expect("scores computed with a bad stored segment")
            .into_inner();
        assert_eq!(run.scored_count, 3, "{backend:?}");
        assert_eq!(
            health(server.addr, "").await,
            Ok(ServingStatus::Serving),
            "{backend:?}"
        );
        server.stop().await.expect("clean stop");
    }
}
