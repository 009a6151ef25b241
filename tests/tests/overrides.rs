//! Manual score overrides over the real all-in-one with auth on: an admin (token label
//! `csm alice`) sets a band and score with a reason; GetScore and ListScores show it next
//! to the computed values, which stay as computed (also after another run); a read token
//! may list the audit but not set; clear is audited too; bad input names the field. On
//! SQLite and PostgreSQL.

mod common;

use chrono::Utc;
use tonic::Code;
use tonic::transport::Channel;
use vitals_proto::common::v1 as cpb;
use vitals_proto::scoring::v1 as pb;
use vitals_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
use vitals_store::Store;
use vitals_test_support::{backends, seed};

const ADMIN: &str = "overrides-admin-token";
const READ: &str = "overrides-read-token";

async fn seed_accounts(store: &Store) {
    vitals_scorecard::defaults::ensure_default_profile(store)
        .await
        .unwrap();
    let ids: Vec<String> = (0..6).map(|i| format!("a{i}")).collect();
    seed::accounts(store, &ids, Utc::now() - chrono::Duration::days(400))
        .await
        .unwrap();
}

async fn get(c: &mut ScoringServiceClient<Channel>, account: &str) -> pb::ScoreSnapshot {
    let r = pb::GetScoreRequest {
        account_id: account.into(),
        ..Default::default()
    };
    c.get_score(common::with_token(tonic::Request::new(r), READ))
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap()
}

async fn compute(c: &mut ScoringServiceClient<Channel>) {
    c.compute_scores(common::with_token(
        tonic::Request::new(pb::ComputeScoresRequest::default()),
        ADMIN,
    ))
    .await
    .unwrap();
}

fn set_request(account: &str, value: Option<f64>, band: cpb::Band) -> pb::SetOverrideRequest {
    pb::SetOverrideRequest {
        account_id: account.into(),
        scorecard: String::new(),
        manual_override: Some(pb::ScoreOverride {
            value,
            band: band as i32,
            reason_code: "exec_escalation".into(),
            note: "CEO asked to cancel".into(),
            expire_time: Some(prost_types::Timestamp {
                seconds: Utc::now().timestamp() + 86_400,
                nanos: 0,
            }),
            ..Default::default()
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_show_next_to_the_computed_score_and_are_audited() {
    for backend in backends() {
        let url = common::shared_url(backend, "overrides").await;
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        seed_accounts(&store).await;
        let server = common::all_in_one_with_tokens(&url, (ADMIN, "csm alice"), READ, |_| {}).await;
        let mut c = ScoringServiceClient::new(server.channel().await);

        // No score yet: NOT_FOUND.
        let e = c
            .set_override(common::with_token(
                tonic::Request::new(set_request("a0", Some(1.0), cpb::Band::Red)),
                ADMIN,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{backend:?}");
        compute(&mut c).await;
        let computed = get(&mut c, "a0").await;
        assert!(computed.manual_override.is_none());

        // A read token may not set.
        let e = c
            .set_override(common::with_token(
                tonic::Request::new(set_request("a0", Some(1.0), cpb::Band::Red)),
                READ,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        // Bad input names the field.
        for (req, field) in [
            (
                set_request("a0", Some(11.0), cpb::Band::Red),
                "manual_override.value",
            ),
            (
                set_request("a0", None, cpb::Band::Unspecified),
                "manual_override",
            ),
            (
                pb::SetOverrideRequest {
                    manual_override: Some(pb::ScoreOverride {
                        reason_code: "Bad Code".into(),
                        ..set_request("a0", Some(1.0), cpb::Band::Red)
                            .manual_override
                            .unwrap()
                    }),
                    ..set_request("a0", Some(1.0), cpb::Band::Red)
                },
                "manual_override.reason_code",
            ),
        ] {
            let e = c
                .set_override(common::with_token(tonic::Request::new(req), ADMIN))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument);
            assert!(e.message().starts_with(field), "{}", e.message());
        }

        let set = c
            .set_override(common::with_token(
                tonic::Request::new(set_request("a0", Some(1.0), cpb::Band::Red)),
                ADMIN,
            ))
            .await
            .unwrap()
            .into_inner()
            .manual_override
            .unwrap();
        assert_eq!(set.set_by, "csm alice");

        // Both values: the computed ones as before, the override beside them; after
        // another run too (runs never write the override into snapshots).
        compute(&mut c).await;
        let s = get(&mut c, "a0").await;
        assert_eq!(
            (s.value, s.band),
            (computed.value, computed.band),
            "{backend:?}"
        );
        let o = s.manual_override.expect("override shown");
        assert_eq!((o.value, o.band), (Some(1.0), cpb::Band::Red as i32));
        assert_eq!(o.reason_code, "exec_escalation");
        let list = c
            .list_scores(common::with_token(
                tonic::Request::new(pb::ListScoresRequest::default()),
                READ,
            ))
            .await
            .unwrap()
            .into_inner();
        let shown: Vec<&str> = list
            .snapshots
            .iter()
            .filter(|s| s.manual_override.is_some())
            .map(|s| s.account_id.as_str())
            .collect();
        assert_eq!(shown, vec!["a0"]);

        // Clear (audited), then the audit trail: who, when, what, why.
        c.clear_override(common::with_token(
            tonic::Request::new(pb::ClearOverrideRequest {
                account_id: "a0".into(),
                reason_code: "resolved".into(),
                ..Default::default()
            }),
            ADMIN,
        ))
        .await
        .unwrap();
        assert!(get(&mut c, "a0").await.manual_override.is_none());
        let e = c
            .clear_override(common::with_token(
                tonic::Request::new(pb::ClearOverrideRequest {
                    account_id: "a0".into(),
                    reason_code: "resolved".into(),
                    ..Default::default()
                }),
                ADMIN,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        let audit = c
            .list_override_audit(common::with_token(
                tonic::Request::new(pb::ListOverrideAuditRequest {
                    account_id: "a0".into(),
                    ..Default::default()
                }),
                READ,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(audit.total_size, 2);
        let e = &audit.entries;
        assert_eq!(e[0].action, pb::OverrideAction::Clear as i32);
        assert_eq!(
            e[0].manual_override.as_ref().unwrap().reason_code,
            "resolved"
        );
        assert_eq!(e[1].action, pb::OverrideAction::Set as i32);
        assert_eq!(e[1].actor, "csm alice");
        assert_eq!(e[1].scorecard, "scorecards/profile");
        let o = e[1].manual_override.as_ref().unwrap();
        assert_eq!(
            (o.value, o.note.as_str()),
            (Some(1.0), "CEO asked to cancel")
        );
        assert!(o.expire_time.is_some() && e[1].time.is_some());

        server.stop().await.unwrap();
        store.close().await.unwrap();
    }
}
