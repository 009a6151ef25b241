//! CEL hardening over gRPC on SQLite and PostgreSQL: parse limits (the 1,500-term chain
//! that overflowed the stack), rules that must be bool and use known functions, the cost
//! of comprehensions (the nested `all` that kept a server busy for 38 s), and stored rules
//! that fail being skipped rather than fatal.

mod common;

use std::time::{Duration, Instant};

use chrono::Utc;
use common::{Env, attrs, quiet_args};
use serde_json::json;
use tonic::{Code, Request};
use tonic_health::pb::health_check_response::ServingStatus;
use vitals_proto::profiles::v1 as pb;
use vitals_store::profiles as sp;
use vitals_test_support::{backends, health};

/// The input: 1,500 terms, 3,003 bytes.
fn chain(n: usize) -> String {
    format!("{} > 0", vec!["1"; n].join("+"))
}

/// The second input: four nested comprehensions over literal lists.
fn nested_all() -> String {
    let l = format!("[{}]", ["0"; 10].join(","));
    format!("{l}.all(a, {l}.all(b, {l}.all(c, {l}.all(d, a + b + c + d == 0))))")
}

fn draft(segment: &str) -> pb::Scorecard {
    pb::Scorecard {
        measure: Some(pb::scorecard::Measure::Attribute(pb::AttributeMeasure {
            attribute: "seats".into(),
        })),
        worst_value: 0.0,
        best_value: 100.0,
        segment: segment.into(),
        ..Default::default()
    }
}

/// A preview with a client deadline, so that a server that runs away fails the test
/// instead of hanging it.
fn preview(segment: &str) -> Request<pb::PreviewScorecardRequest> {
    let mut r = Request::new(pb::PreviewScorecardRequest {
        scorecard: Some(draft(segment)),
        as_of: None,
    });
    r.set_timeout(Duration::from_secs(20));
    r
}

fn profile_req(rule: &str) -> pb::CreateHealthProfileRequest {
    pb::CreateHealthProfileRequest {
        profile_id: "p".into(),
        health_profile: Some(pb::HealthProfile {
            display_name: "P".into(),
            assignment_rule: rule.into(),
            priority: 1,
            ..Default::default()
        }),
    }
}

fn assert_invalid(r: Result<impl std::fmt::Debug, tonic::Status>, field: &str, what: &str) {
    let e = r.expect_err("refused");
    assert_eq!(e.code(), Code::InvalidArgument, "{field}: {}", e.message());
    assert!(
        e.message().starts_with(&format!("{field}: ")) && e.message().contains(what),
        "{field} / {what}: {}",
        e.message()
    );
}

async fn serving(env: &Env) {
    assert_eq!(
        health(env.server.addr, "").await,
        Ok(ServingStatus::Serving),
        "the server still answers health checks"
    );
}

async fn some_accounts(env: &Env, n: usize) {
    for i in 0..n {
        let plan = if i % 2 == 0 { "premium" } else { "basic" };
        env.put_account(
            &format!("a{i:04}"),
            attrs(&[("plan", json!(plan)), ("seats", json!(i as f64))]),
            "active",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_1500_terms_is_refused_everywhere_and_the_server_stays_up() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        some_accounts(&env, 4).await;
        let mut c = env.client.clone();
        let long = chain(1500);
        assert_eq!(long.len(), 3003);
        let deep = "too deep";
        assert_invalid(
            c.preview_scorecard(preview(&long)).await,
            "scorecard.segment",
            deep,
        );
        assert_invalid(
            c.create_health_profile(profile_req(&long)).await,
            "health_profile.assignment_rule",
            deep,
        );
        assert_invalid(
            c.create_scorecard(pb::CreateScorecardRequest {
                scorecard: Some(pb::Scorecard {
                    display_name: "S".into(),
                    ..draft(&long)
                }),
                scorecard_id: "s".into(),
            })
            .await,
            "scorecard.segment",
            deep,
        );
        assert_invalid(
            c.assign_accounts(pb::AssignAccountsRequest {
                profile: "profiles/default".into(),
                account_ids: vec![],
                filter: long.clone(),
            })
            .await,
            "filter",
            deep,
        );
        // Much worse inputs under 4,096 bytes.
        for worse in [
            chain(2045),
            format!("{}true{}", "(".repeat(2000), ")".repeat(2000)),
            format!("x{} == 1", ".a".repeat(2040)),
        ] {
            assert!(worse.len() <= 4096);
            assert_invalid(
                c.preview_scorecard(preview(&worse)).await,
                "scorecard.segment",
                deep,
            );
        }
        serving(&env).await;
        let r = c
            .preview_scorecard(preview("plan == \"premium\""))
            .await
            .expect("an ordinary preview still works")
            .into_inner();
        assert_eq!(r.segment_count, 2, "{backend:?}");
        env.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_boolean_rules_and_unknown_functions_are_refused_when_saved() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        let mut c = env.client.clone();
        let existing = env.profile("q", "plan == \"a\"", 5).await;
        for (src, what) in [
            (
                "1 + 2",
                "must be a bool expression, not an arithmetic result",
            ),
            ("foo(x)", "unknown function \"foo\""),
            (
                "plan == \"a\" && lower(plan) == \"a\"",
                "unknown function \"lower\"",
            ),
        ] {
            assert_invalid(
                c.create_health_profile(profile_req(src)).await,
                "health_profile.assignment_rule",
                what,
            );
            assert_invalid(
                c.update_health_profile(pb::UpdateHealthProfileRequest {
                    health_profile: Some(pb::HealthProfile {
                        assignment_rule: src.into(),
                        ..existing.clone()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["assignment_rule".into()],
                    }),
                })
                .await,
                "health_profile.assignment_rule",
                what,
            );
            assert_invalid(
                c.create_scorecard(pb::CreateScorecardRequest {
                    scorecard: Some(pb::Scorecard {
                        display_name: "S".into(),
                        ..draft(src)
                    }),
                    scorecard_id: "s".into(),
                })
                .await,
                "scorecard.segment",
                what,
            );
            assert_invalid(
                c.preview_scorecard(preview(src)).await,
                "scorecard.segment",
                what,
            );
            assert_invalid(
                c.assign_accounts(pb::AssignAccountsRequest {
                    profile: "profiles/q".into(),
                    account_ids: vec![],
                    filter: src.into(),
                })
                .await,
                "filter",
                what,
            );
            assert_invalid(
                c.unpin_accounts(pb::UnpinAccountsRequest {
                    account_ids: vec![],
                    filter: src.into(),
                })
                .await,
                "filter",
                what,
            );
        }
        // `profile` is bound in segments only.
        assert_invalid(
            c.create_health_profile(profile_req("profile == \"profiles/q\""))
                .await,
            "health_profile.assignment_rule",
            "scorecard segments only",
        );
        c.preview_scorecard(preview("profile == \"profiles/q\""))
            .await
            .expect("profile is known in a segment");
        // Nothing was written.
        let list = c
            .list_health_profiles(pb::ListHealthProfilesRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(list.health_profiles.len(), 2, "{backend:?}");
        assert_eq!(
            list.health_profiles
                .iter()
                .find(|p| p.name == "profiles/q")
                .map(|p| p.assignment_rule.as_str()),
            Some("plan == \"a\"")
        );
        env.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_comprehensions_are_bounded_and_health_answers_meanwhile() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        some_accounts(&env, 300).await;
        let mut c = env.client.clone();

        // The input is refused by its estimated cost, at once.
        let started = Instant::now();
        assert_invalid(
            c.preview_scorecard(preview(&nested_all())).await,
            "scorecard.segment",
            "estimated 11110 steps",
        );
        assert!(started.elapsed() < Duration::from_secs(5));

        // The most an accepted expression may cost (31 + 31 x 31 = 992 steps per
        // account), twice at once: both finish, and health answers meanwhile.
        let l = format!("[{}]", ["0"; 31].join(","));
        let heavy = format!("{l}.all(a, {l}.all(b, a == b))");
        let started = Instant::now();
        let (mut c1, mut c2) = (c.clone(), c.clone());
        let h1 = heavy.clone();
        let h2 = heavy.clone();
        let runs = tokio::spawn(async move {
            tokio::join!(
                c1.preview_scorecard(preview(&h1)),
                c2.preview_scorecard(preview(&h2))
            )
        });
        let mut checks = 0;
        while !runs.is_finished() {
            let t = Instant::now();
            let h = tokio::time::timeout(Duration::from_secs(2), health(env.server.addr, ""))
                .await
                .expect("a health check answers within 2 s while CEL runs");
            assert_eq!(h, Ok(ServingStatus::Serving));
            assert!(t.elapsed() < Duration::from_secs(2));
            checks += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (r1, r2) = runs.await.unwrap();
        assert_eq!(r1.expect("heavy preview").into_inner().segment_count, 300);
        assert_eq!(r2.expect("heavy preview").into_inner().segment_count, 300);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
        eprintln!(
            "{backend:?}: two previews at the cost limit over 300 accounts in {:?}, {checks} health checks answered meanwhile",
            started.elapsed()
        );

        // Past the run-time budget (the estimate counts a computed range as 200 items,
        // this one has 1,200): RESOURCE_EXHAUSTED naming the field.
        let zeros = ["0"; 400].join(",");
        let e = c
            .preview_scorecard(preview(&format!(
                "[[{zeros}]].exists(l, (l + l + l).all(x, x == 0))"
            )))
            .await
            .expect_err("budget spent");
        assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
        assert!(
            e.message()
                .starts_with("scorecard.segment: took more than 1000 comprehension steps"),
            "{}",
            e.message()
        );
        serving(&env).await;
        env.stop().await;
    }
}

/// A profile as an older version could have stored it, with any rule.
fn stored_profile(id: &str, rule: &str, priority: i32) -> sp::ProfileRecord {
    let now = Utc::now();
    let mut p = vitals_profiles::assign::default_profile(now);
    p.id = id.into();
    p.display_name = id.to_uppercase();
    p.rule = rule.into();
    p.priority = priority;
    p.is_default = false;
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_rules_that_fail_are_skipped_not_fatal() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        some_accounts(&env, 6).await;
        // Written straight into the store, as a version without the checks could have:
        // the chain that overflowed the stack, an unknown function, a non-bool, a rule
        // past the run-time step budget, and a type error at run time.
        let zeros = ["0"; 400].join(",");
        for (i, rule) in [
            chain(1500),
            "foo(plan)".to_string(),
            "1 + 2".to_string(),
            format!("[[{zeros}]].exists(l, (l + l + l).all(x, x == 0))"),
            "plan > 3".to_string(),
        ]
        .iter()
        .enumerate()
        {
            let p = stored_profile(&format!("bad{i}"), rule, i as i32);
            assert!(sp::insert_profile_if_absent(&env.store, &p).await.unwrap());
        }
        // A good rule after them still decides.
        env.profile("premium", "plan == \"premium\"", 100).await;
        let r = env.reassign(false).await;
        assert_eq!(r.evaluated_count, 6, "{backend:?}");
        for i in 0..6 {
            let want = if i % 2 == 0 {
                "profiles/premium"
            } else {
                "profiles/default"
            };
            let got = env.profile_of(&format!("a{i:04}")).await.unwrap();
            assert_eq!(got.profile, want, "{backend:?} a{i:04}");
        }
        serving(&env).await;
        env.stop().await;
    }
}
