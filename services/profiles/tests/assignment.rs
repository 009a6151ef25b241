//! Assignment over gRPC on SQLite and PostgreSQL: the default profile, rule priority,
//! pins, dry runs, deletion, the schedules, bad rules.

mod common;

use std::time::Duration;

use common::{Env, attrs, quiet_args};
use serde_json::json;
use tonic::Code;
use vitals_profiles::ProfilesArgs;
use vitals_profiles::assign::{self, RunOptions, Scope};
use vitals_proto::profiles::v1 as pb;
use vitals_test_support::backends;

const RULE: i32 = pb::AssignmentSource::Rule as i32;
const DEFAULT: i32 = pb::AssignmentSource::Default as i32;
const PINNED: i32 = pb::AssignmentSource::Pinned as i32;

#[tokio::test]
async fn default_profile_exists_from_first_start() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        let mut c = env.client.clone();
        let p = c
            .get_health_profile(pb::GetHealthProfileRequest {
                name: "profiles/default".into(),
            })
            .await
            .expect("default profile")
            .into_inner()
            .health_profile
            .unwrap();
        assert!(p.is_default, "{backend:?}");
        let list = c
            .list_health_profiles(pb::ListHealthProfilesRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            list.health_profiles.len(),
            1,
            "{backend:?}: exactly one default"
        );
        // Deleting the default is refused.
        let err = c
            .delete_health_profile(pb::DeleteHealthProfileRequest {
                name: "profiles/default".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{backend:?}");
        // Clearing is_default directly is refused.
        let err = c
            .update_health_profile(pb::UpdateHealthProfileRequest {
                health_profile: Some(pb::HealthProfile {
                    name: "profiles/default".into(),
                    is_default: false,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["is_default".into()],
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{backend:?}");
        assert!(
            err.message().starts_with("health_profile.is_default:"),
            "{}",
            err.message()
        );
        env.stop().await;
    }
}

#[tokio::test]
async fn rules_in_priority_order_first_match_wins_rest_to_default() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        env.profile("premium", r#"plan == "premium""#, 10).await;
        env.profile("big", "seats >= 50.0", 20).await;
        env.put_account(
            "a1",
            attrs(&[("plan", json!("premium")), ("seats", json!(60))]),
            "active",
        )
        .await;
        env.put_account(
            "a2",
            attrs(&[("plan", json!("basic")), ("seats", json!(80))]),
            "active",
        )
        .await;
        env.put_account(
            "a3",
            attrs(&[("plan", json!("basic")), ("seats", json!(5))]),
            "active",
        )
        .await;
        env.put_account("a4", json!({}), "active").await;

        let r = env.reassign(false).await;
        assert_eq!((r.evaluated_count, r.moved_count), (4, 4), "{backend:?}");
        let to: Vec<(&str, &str, &str)> = r
            .moves
            .iter()
            .map(|m| {
                (
                    m.account_id.as_str(),
                    m.from_profile.as_str(),
                    m.to_profile.as_str(),
                )
            })
            .collect();
        assert_eq!(
            to,
            vec![
                ("a1", "", "profiles/premium"),
                ("a2", "", "profiles/big"),
                ("a3", "", "profiles/default"),
                ("a4", "", "profiles/default"),
            ],
            "{backend:?}"
        );
        let a1 = env.profile_of("a1").await.unwrap();
        assert_eq!(
            (a1.profile.as_str(), a1.source, a1.pinned),
            ("profiles/premium", RULE, false)
        );
        assert!(a1.assign_time.is_some());
        let a3 = env.profile_of("a3").await.unwrap();
        assert_eq!(
            (a3.profile.as_str(), a3.source),
            ("profiles/default", DEFAULT)
        );
        assert_eq!(
            env.stored("a2").await,
            (Some("big".into()), false),
            "{backend:?}"
        );

        // A second run moves nobody.
        assert_eq!(env.reassign(false).await.moved_count, 0, "{backend:?}");

        // Raising big above premium moves a1 (both rules match it).
        env.client
            .clone()
            .update_health_profile(pb::UpdateHealthProfileRequest {
                health_profile: Some(pb::HealthProfile {
                    name: "profiles/big".into(),
                    priority: 5,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["priority".into()],
                }),
            })
            .await
            .expect("update priority");
        // The update alone does not move anyone.
        assert_eq!(env.stored("a1").await.0.as_deref(), Some("premium"));
        let r = env.reassign(false).await;
        assert_eq!(r.moved_count, 1, "{backend:?}");
        assert_eq!(r.moves[0].account_id, "a1");
        assert_eq!(r.moves[0].from_profile, "profiles/premium");
        assert_eq!(r.moves[0].to_profile, "profiles/big");

        // Listing is in evaluation order.
        let names: Vec<String> = env
            .client
            .clone()
            .list_health_profiles(pb::ListHealthProfilesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .health_profiles
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(
            names,
            ["profiles/big", "profiles/premium", "profiles/default"]
        );

        // Churned accounts that already have a profile are not evaluated.
        env.put_account("a4", json!({}), "churned").await;
        let r = env.reassign(true).await;
        assert_eq!(r.evaluated_count, 3, "{backend:?}");
        env.stop().await;
    }
}

#[tokio::test]
async fn pins_hold_until_unpinned() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        env.profile("premium", r#"plan == "premium""#, 10).await;
        for (id, plan) in [("p1", "premium"), ("b1", "basic"), ("b2", "basic")] {
            env.put_account(id, attrs(&[("plan", json!(plan))]), "active")
                .await;
        }
        env.reassign(false).await;
        let mut c = env.client.clone();

        // Pin b1 to premium by id.
        let r = c
            .assign_accounts(pb::AssignAccountsRequest {
                profile: "profiles/premium".into(),
                account_ids: vec!["b1".into()],
                filter: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((r.assigned_count, r.moved_count), (1, 1), "{backend:?}");
        let b1 = env.profile_of("b1").await.unwrap();
        assert_eq!(
            (b1.profile.as_str(), b1.source, b1.pinned),
            ("profiles/premium", PINNED, true)
        );

        // Rules leave it alone.
        let r = env.reassign(false).await;
        assert_eq!((r.moved_count, r.pinned_count), (0, 1), "{backend:?}");
        assert_eq!(env.stored("b1").await, (Some("premium".into()), true));

        // Pin by filter: the basic accounts to default (b1 moves back, b2 stays).
        let r = c
            .assign_accounts(pb::AssignAccountsRequest {
                profile: "profiles/default".into(),
                account_ids: vec![],
                filter: r#"plan == "basic""#.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((r.assigned_count, r.moved_count), (2, 1), "{backend:?}");
        assert_eq!(env.stored("b2").await, (Some("default".into()), true));

        // Pin p1 to default, then unpin it: the rule takes it back at once.
        c.assign_accounts(pb::AssignAccountsRequest {
            profile: "profiles/default".into(),
            account_ids: vec!["p1".into()],
            filter: String::new(),
        })
        .await
        .unwrap();
        let r = c
            .unpin_accounts(pb::UnpinAccountsRequest {
                account_ids: vec!["p1".into(), "b2".into()],
                filter: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((r.unpinned_count, r.moved_count), (2, 1), "{backend:?}");
        assert_eq!(env.stored("p1").await, (Some("premium".into()), false));
        let p1 = env.profile_of("p1").await.unwrap();
        assert_eq!((p1.source, p1.pinned), (RULE, false));
        // Unpinning an account that is not pinned counts nothing.
        let r = c
            .unpin_accounts(pb::UnpinAccountsRequest {
                account_ids: vec!["p1".into()],
                filter: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.unpinned_count, 0);

        // Unknown ids and bad selectors.
        let err = c
            .assign_accounts(pb::AssignAccountsRequest {
                profile: "profiles/premium".into(),
                account_ids: vec!["b2".into(), "nope".into()],
                filter: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{backend:?}");
        assert!(
            err.message().contains("account_ids[1]") && err.message().contains("nope"),
            "{}",
            err.message()
        );
        // Nothing was assigned.
        assert_eq!(env.stored("b2").await, (Some("default".into()), false));
        let err = c
            .assign_accounts(pb::AssignAccountsRequest {
                profile: "profiles/premium".into(),
                account_ids: vec!["b2".into()],
                filter: "true".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        let err = c
            .assign_accounts(pb::AssignAccountsRequest {
                profile: "profiles/ghost".into(),
                account_ids: vec!["b2".into()],
                filter: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);

        // Deleting a profile reassigns its members, pinned ones included.
        c.assign_accounts(pb::AssignAccountsRequest {
            profile: "profiles/premium".into(),
            account_ids: vec!["b2".into()],
            filter: String::new(),
        })
        .await
        .unwrap();
        let r = c
            .delete_health_profile(pb::DeleteHealthProfileRequest {
                name: "profiles/premium".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.reassigned_count, 2, "{backend:?}: p1 and b2");
        assert_eq!(env.stored("p1").await, (Some("default".into()), false));
        assert_eq!(env.stored("b2").await, (Some("default".into()), false));
        env.stop().await;
    }
}

#[tokio::test]
async fn dry_run_reports_and_writes_nothing() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        env.profile("premium", r#"plan == "premium""#, 10).await;
        env.put_account("x", attrs(&[("plan", json!("premium"))]), "active")
            .await;
        env.put_account("y", attrs(&[("plan", json!("basic"))]), "active")
            .await;
        let r = env.reassign(true).await;
        assert!(r.dry_run);
        assert_eq!((r.evaluated_count, r.moved_count), (2, 2), "{backend:?}");
        assert_eq!(r.moves[0].to_profile, "profiles/premium");
        assert_eq!(
            env.stored("x").await,
            (None, false),
            "{backend:?}: dry run wrote"
        );
        assert_eq!(
            env.profile_of("x").await.unwrap_err().code(),
            Code::NotFound
        );

        // Once assigned, a dry run after a plan change reports the move but keeps it.
        env.reassign(false).await;
        env.put_account("y", attrs(&[("plan", json!("premium"))]), "active")
            .await;
        let r = env.reassign(true).await;
        assert_eq!(r.moved_count, 1);
        assert_eq!(r.moves[0].from_profile, "profiles/default");
        assert_eq!(env.stored("y").await.0.as_deref(), Some("default"));
        // max_moves truncates the list, not the counts.
        env.put_account("x", attrs(&[("plan", json!("basic"))]), "active")
            .await;
        let r = env
            .client
            .clone()
            .reassign_accounts(pb::ReassignAccountsRequest {
                dry_run: true,
                max_moves: 1,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (r.moved_count, r.moves.len(), r.moves_truncated),
            (2, 1, true)
        );
        assert_eq!(env.stored("x").await.0.as_deref(), Some("premium"));
        env.stop().await;
    }
}

/// Polls until `check` holds, for at most 30 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn schedule_moves_an_account_whose_plan_changed() {
    for backend in backends() {
        let args = ProfilesArgs {
            reassign_interval_secs: 0,
            assign_pending_interval_secs: 1,
        };
        let env = Env::start(backend, args).await;
        env.profile("premium", r#"plan == "premium""#, 10).await;
        // A new account gets a profile with nobody calling the service.
        env.put_account("acme", attrs(&[("plan", json!("basic"))]), "active")
            .await;
        eventually("acme in default", || async {
            env.stored("acme").await.0.as_deref() == Some("default")
        })
        .await;
        // Its plan changes: the schedule moves it.
        env.put_account("acme", attrs(&[("plan", json!("premium"))]), "active")
            .await;
        eventually("acme in premium", || async {
            env.stored("acme").await.0.as_deref() == Some("premium")
        })
        .await;
        let p = env.profile_of("acme").await.unwrap();
        assert_eq!(
            (p.profile.as_str(), p.source),
            ("profiles/premium", RULE),
            "{backend:?}"
        );
        env.stop().await;
    }
}

#[tokio::test]
async fn weekly_run_and_upsert_hook_are_the_same_functions() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        env.profile("premium", r#"plan == "premium""#, 10).await;
        env.put_account("a", attrs(&[("plan", json!("basic"))]), "active")
            .await;
        env.put_account("b", attrs(&[("plan", json!("premium"))]), "active")
            .await;
        // What ingestion calls after an upsert: only the named accounts.
        let r = assign::assign_accounts(&env.store, &["a".into()])
            .await
            .unwrap();
        assert_eq!((r.evaluated, r.moved), (1, 1), "{backend:?}");
        assert_eq!(env.stored("a").await.0.as_deref(), Some("default"));
        assert_eq!(env.stored("b").await.0, None);
        // What the weekly schedule runs: everyone.
        env.put_account("a", attrs(&[("plan", json!("premium"))]), "active")
            .await;
        let r = assign::reassign(
            &env.store,
            RunOptions {
                scope: Scope::All,
                dry_run: false,
                max_moves: 10,
            },
        )
        .await
        .unwrap();
        assert_eq!(r.moved, 2, "{backend:?}");
        assert_eq!(env.stored("a").await.0.as_deref(), Some("premium"));
        assert_eq!(env.stored("b").await.0.as_deref(), Some("premium"));
        // The pending pass finds nothing left to do.
        assert_eq!(
            assign::assign_pending(&env.store).await.unwrap().evaluated,
            0
        );
        env.stop().await;
    }
}

#[tokio::test]
async fn the_upsert_hook_assigns_only_the_named_accounts() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        env.profile("premium", r#"plan == "premium""#, 10).await;
        env.put_account("a", attrs(&[("plan", json!("premium"))]), "active")
            .await;
        env.put_account("b", attrs(&[("plan", json!("premium"))]), "active")
            .await;
        env.put_account("c", attrs(&[("plan", json!("basic"))]), "active")
            .await;
        // What the all-in-one runs after an UpsertAccounts batch of a and c.
        let hook = assign::accounts_hook(env.store.clone());
        hook(vec!["a".into(), "c".into()]).await;
        assert_eq!(env.stored("a").await.0.as_deref(), Some("premium"));
        assert_eq!(env.stored("c").await.0.as_deref(), Some("default"));
        assert_eq!(env.stored("b").await.0, None, "{backend:?}");
        // Unknown ids are ignored, not an error.
        hook(vec!["nobody".into()]).await;
        assert_eq!(env.stored("b").await.0, None);
        env.stop().await;
    }
}

#[tokio::test]
async fn bad_cel_is_invalid_argument_with_field_and_position() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        let mut c = env.client.clone();
        let err = c
            .create_health_profile(pb::CreateHealthProfileRequest {
                profile_id: "broken".into(),
                health_profile: Some(pb::HealthProfile {
                    display_name: "Broken".into(),
                    assignment_rule: "plan == \"premium\" &&".into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{backend:?}");
        let msg = err.message();
        assert!(msg.starts_with("health_profile.assignment_rule: "), "{msg}");
        assert!(msg.contains("line 1, column"), "{msg}");
        // Nothing was created.
        let err = c
            .get_health_profile(pb::GetHealthProfileRequest {
                name: "profiles/broken".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);

        let err = c
            .assign_accounts(pb::AssignAccountsRequest {
                profile: "profiles/default".into(),
                account_ids: vec![],
                filter: "seats >".into(),
            })
            .await
            .unwrap_err();
        assert!(
            err.message()
                .starts_with("filter: invalid cel at line 1, column"),
            "{}",
            err.message()
        );

        let err = c
            .create_scorecard(pb::CreateScorecardRequest {
                scorecard_id: "s".into(),
                scorecard: Some(pb::Scorecard {
                    display_name: "S".into(),
                    measure: Some(pb::scorecard::Measure::Attribute(pb::AttributeMeasure {
                        attribute: "seats".into(),
                    })),
                    worst_value: 0.0,
                    best_value: 10.0,
                    segment: "plan ==\n  == 3".into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap_err();
        assert!(
            err.message()
                .starts_with("scorecard.segment: invalid cel at line 2"),
            "{}",
            err.message()
        );

        let err = c
            .create_profile_cross_product(pb::CreateProfileCrossProductRequest {
                dimensions: vec![pb::Dimension {
                    name: "plan".into(),
                    values: vec![
                        pb::DimensionValue {
                            label: "a".into(),
                            rule: "plan == \"a\"".into(),
                        },
                        pb::DimensionValue {
                            label: "b".into(),
                            rule: "plan = \"b\"".into(),
                        },
                    ],
                }],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(
            err.message().starts_with("dimensions[0].values[1].rule: "),
            "{}",
            err.message()
        );
        env.stop().await;
    }
}
