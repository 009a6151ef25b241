//! Health profiles over gRPC on SQLite and PostgreSQL: validation, field masks, cross
//! products, the population report.

mod common;

use common::{Env, attrs, quiet_args};
use serde_json::json;
use tonic::Code;
use vitals_proto::common::v1 as cpb;
use vitals_proto::profiles::v1 as pb;
use vitals_test_support::backends;

fn weights(usage: f64, conversations: f64, pulse: f64, contract: f64) -> cpb::CategoryWeights {
    cpb::CategoryWeights {
        usage,
        conversations,
        pulse,
        contract,
        ..Default::default()
    }
}

fn create(id: &str, w: Option<cpb::CategoryWeights>) -> pb::CreateHealthProfileRequest {
    pb::CreateHealthProfileRequest {
        profile_id: id.into(),
        health_profile: Some(pb::HealthProfile {
            display_name: format!("Profile {id}"),
            category_weights: w,
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn bad_weights_are_refused_and_masks_touch_only_their_fields() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        let mut c = env.client.clone();
        for (w, field, msg) in [
            (
                weights(0.0, 0.0, 0.0, 0.0),
                "health_profile.category_weights",
                "at least one weight must be > 0",
            ),
            (
                weights(1.0, -0.5, 0.0, 0.0),
                "health_profile.category_weights.conversations",
                "must be >= 0",
            ),
            (
                weights(f64::NAN, 1.0, 0.0, 0.0),
                "health_profile.category_weights.usage",
                "must be finite",
            ),
            (
                weights(1.0, 1.0, f64::INFINITY, 0.0),
                "health_profile.category_weights.pulse",
                "must be finite",
            ),
        ] {
            let err = c
                .create_health_profile(create("w", Some(w)))
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{backend:?}");
            assert_eq!(err.message(), format!("{field}: {msg}"), "{backend:?}");
        }
        // A custom score field weight alone is enough; a negative one is not.
        let mut w = weights(0.0, 0.0, 0.0, 0.0);
        w.custom_score_fields.insert("nps".into(), 2.0);
        c.create_health_profile(create("fields", Some(w.clone())))
            .await
            .expect("field weight");
        w.custom_score_fields.insert("csat".into(), -1.0);
        let err = c
            .create_health_profile(create("fields2", Some(w)))
            .await
            .unwrap_err();
        assert!(
            err.message()
                .starts_with("health_profile.category_weights.custom_score_fields[\"csat\"]"),
            "{}",
            err.message()
        );

        // Unset weights mean every category weighs 1; defaults are filled in.
        let p = c
            .create_health_profile(create("plain", None))
            .await
            .unwrap()
            .into_inner()
            .health_profile
            .unwrap();
        assert_eq!(p.name, "profiles/plain");
        assert_eq!(p.category_weights.as_ref().unwrap().usage, 1.0);
        assert_eq!(p.min_population, Some(10));
        assert_eq!(p.weights_mode, pb::WeightsMode::Manual as i32);
        assert!(p.create_time.is_some());

        // Taken id; bad id; bad kpi; bad ranges.
        let err = c
            .create_health_profile(create("plain", None))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists);
        let err = c
            .create_health_profile(create("Bad_Id", None))
            .await
            .unwrap_err();
        assert!(
            err.message().starts_with("profile_id:"),
            "{}",
            err.message()
        );
        let mut req = create("k", None);
        req.health_profile.as_mut().unwrap().kpis =
            vec!["active_days".into(), "events_login".into(), "bogus".into()];
        let err = c.create_health_profile(req).await.unwrap_err();
        assert!(
            err.message().starts_with("health_profile.kpis[2]:"),
            "{}",
            err.message()
        );
        let mut req = create("k", None);
        req.health_profile.as_mut().unwrap().window_days = Some(3);
        let err = c.create_health_profile(req).await.unwrap_err();
        assert!(
            err.message().starts_with("health_profile.window_days:"),
            "{}",
            err.message()
        );
        let mut req = create("k", None);
        req.health_profile.as_mut().unwrap().band_thresholds = Some(cpb::BandThresholds {
            yellow_from: Some(8.0),
            green_from: Some(4.0),
        });
        let err = c.create_health_profile(req).await.unwrap_err();
        assert!(
            err.message().starts_with("health_profile.band_thresholds:"),
            "{}",
            err.message()
        );

        // An id derived from the display name, with a suffix when taken.
        for expect in ["enterprise-eu", "enterprise-eu-2"] {
            let p = c
                .create_health_profile(pb::CreateHealthProfileRequest {
                    profile_id: String::new(),
                    health_profile: Some(pb::HealthProfile {
                        display_name: "Enterprise (EU)".into(),
                        ..Default::default()
                    }),
                })
                .await
                .unwrap()
                .into_inner()
                .health_profile
                .unwrap();
            assert_eq!(p.name, format!("profiles/{expect}"), "{backend:?}");
        }

        // The mask: only the weights change; zero weights through update are refused.
        let upd = |w: cpb::CategoryWeights, paths: &[&str]| pb::UpdateHealthProfileRequest {
            health_profile: Some(pb::HealthProfile {
                name: "profiles/plain".into(),
                display_name: "ignored".into(),
                category_weights: Some(w),
                priority: 77,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|s| s.to_string()).collect(),
            }),
        };
        let p = c
            .update_health_profile(upd(weights(3.0, 1.0, 1.0, 2.0), &["category_weights"]))
            .await
            .unwrap()
            .into_inner()
            .health_profile
            .unwrap();
        assert_eq!(p.category_weights.as_ref().unwrap().usage, 3.0);
        assert_eq!(p.display_name, "Profile plain");
        assert_eq!(p.priority, 0);
        let err = c
            .update_health_profile(upd(weights(0.0, 0.0, 0.0, 0.0), &["categoryWeights"]))
            .await
            .unwrap_err();
        assert_eq!(
            err.message(),
            "health_profile.category_weights: at least one weight must be > 0"
        );
        for bad in [&["create_time"][..], &["name"], &["nonsense"], &[]] {
            let err = c
                .update_health_profile(upd(weights(1.0, 0.0, 0.0, 0.0), bad))
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}");
            assert!(
                err.message().starts_with("update_mask:"),
                "{}",
                err.message()
            );
        }
        let got = c
            .get_health_profile(pb::GetHealthProfileRequest {
                name: "profiles/plain".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .health_profile
            .unwrap();
        assert_eq!(
            got.category_weights.unwrap().usage,
            3.0,
            "{backend:?}: failed updates wrote"
        );

        // Making another profile the default clears the flag on the previous one.
        c.update_health_profile(pb::UpdateHealthProfileRequest {
            health_profile: Some(pb::HealthProfile {
                name: "profiles/plain".into(),
                is_default: true,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["is_default".into()],
            }),
        })
        .await
        .unwrap();
        let defaults: Vec<String> = c
            .list_health_profiles(pb::ListHealthProfilesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .health_profiles
            .into_iter()
            .filter(|p| p.is_default)
            .map(|p| p.name)
            .collect();
        assert_eq!(defaults, ["profiles/plain"], "{backend:?}");

        // Paging.
        let first = c
            .list_health_profiles(pb::ListHealthProfilesRequest {
                page_size: 2,
                page_token: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(first.health_profiles.len(), 2);
        assert!(!first.next_page_token.is_empty());
        let err = c
            .list_health_profiles(pb::ListHealthProfilesRequest {
                page_size: -1,
                page_token: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        env.stop().await;
    }
}

fn dim(name: &str, labels: &[&str]) -> pb::Dimension {
    pb::Dimension {
        name: name.into(),
        values: labels
            .iter()
            .map(|l| pb::DimensionValue {
                label: (*l).into(),
                rule: format!("{name} == \"{l}\""),
            })
            .collect(),
    }
}

#[tokio::test]
async fn cross_product_creates_every_combination_with_combined_rules() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        let mut c = env.client.clone();
        let req = pb::CreateProfileCrossProductRequest {
            dimensions: vec![
                dim("season", &["winter", "summer"]),
                dim("plan", &["basic", "premium"]),
            ],
            template: Some(pb::HealthProfile {
                category_weights: Some(weights(2.0, 1.0, 1.0, 1.0)),
                min_population: Some(3),
                ..Default::default()
            }),
            base_priority: 100,
            id_prefix: "sp".into(),
        };
        let made = c
            .create_profile_cross_product(req.clone())
            .await
            .unwrap()
            .into_inner()
            .health_profiles;
        let got: Vec<(&str, &str, i32)> = made
            .iter()
            .map(|p| (p.name.as_str(), p.display_name.as_str(), p.priority))
            .collect();
        assert_eq!(
            got,
            vec![
                ("profiles/sp-winter-basic", "winter / basic", 100),
                ("profiles/sp-winter-premium", "winter / premium", 101),
                ("profiles/sp-summer-basic", "summer / basic", 102),
                ("profiles/sp-summer-premium", "summer / premium", 103),
            ],
            "{backend:?}"
        );
        assert_eq!(
            made[1].assignment_rule,
            r#"(season == "winter") && (plan == "premium")"#
        );
        assert_eq!(made[1].min_population, Some(3));
        assert_eq!(made[1].category_weights.as_ref().unwrap().usage, 2.0);

        // The combined rules assign accounts.
        env.put_account(
            "w-p",
            attrs(&[("season", json!("winter")), ("plan", json!("premium"))]),
            "active",
        )
        .await;
        env.put_account(
            "s-b",
            attrs(&[("season", json!("summer")), ("plan", json!("basic"))]),
            "active",
        )
        .await;
        env.put_account(
            "s-x",
            attrs(&[("season", json!("summer")), ("plan", json!("gold"))]),
            "active",
        )
        .await;
        env.reassign(false).await;
        assert_eq!(
            env.stored("w-p").await.0.as_deref(),
            Some("sp-winter-premium")
        );
        assert_eq!(
            env.stored("s-b").await.0.as_deref(),
            Some("sp-summer-basic")
        );
        assert_eq!(env.stored("s-x").await.0.as_deref(), Some("default"));

        // Again: every id is taken, nothing is created.
        let err = c
            .create_profile_cross_product(req.clone())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "{backend:?}");
        let n = c
            .list_health_profiles(pb::ListHealthProfilesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .health_profiles
            .len();
        assert_eq!(n, 5);

        // Limits.
        let mut big = req.clone();
        big.dimensions = (0..5).map(|i| dim(&format!("d{i}"), &["a"])).collect();
        let err = c.create_profile_cross_product(big).await.unwrap_err();
        assert!(
            err.message().starts_with("dimensions:"),
            "{}",
            err.message()
        );
        let mut many = req.clone();
        let labels: Vec<String> = (0..11).map(|i| format!("v{i}")).collect();
        let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
        many.dimensions = vec![dim("a", &refs), dim("b", &refs)];
        many.id_prefix = "m".into();
        let err = c.create_profile_cross_product(many).await.unwrap_err();
        assert!(
            err.message().contains("121 combinations"),
            "{}",
            err.message()
        );
        let mut slash = req;
        slash.dimensions = vec![dim("a", &["x/y"])];
        let err = c.create_profile_cross_product(slash).await.unwrap_err();
        assert!(
            err.message().starts_with("dimensions[0].values[0].label:"),
            "{}",
            err.message()
        );
        env.stop().await;
    }
}

#[tokio::test]
async fn population_report_counts_members_and_flags_small_profiles() {
    for backend in backends() {
        let env = Env::start(backend, quiet_args()).await;
        let mut c = env.client.clone();
        let mut req = create("premium", None);
        let hp = req.health_profile.as_mut().unwrap();
        hp.assignment_rule = r#"plan == "premium""#.into();
        hp.min_population = Some(2);
        c.create_health_profile(req).await.unwrap();
        env.put_account("p1", attrs(&[("plan", json!("premium"))]), "active")
            .await;
        env.put_account("p2", attrs(&[("plan", json!("premium"))]), "trial")
            .await;
        env.put_account("p3", attrs(&[("plan", json!("premium"))]), "churned")
            .await;
        for i in 0..4 {
            env.put_account(
                &format!("b{i}"),
                attrs(&[("plan", json!("basic"))]),
                "active",
            )
            .await;
        }
        env.reassign(false).await;
        // Pin one basic account to premium; add one account after the run.
        c.assign_accounts(pb::AssignAccountsRequest {
            profile: "profiles/premium".into(),
            account_ids: vec!["b0".into()],
            filter: String::new(),
        })
        .await
        .unwrap();
        env.put_account("late", json!({}), "unassigned").await;
        let r = c
            .get_population_report(pb::GetPopulationReportRequest {})
            .await
            .unwrap()
            .into_inner();
        let rows: Vec<(&str, u32, u32, u32, bool)> = r
            .profiles
            .iter()
            .map(|p| {
                (
                    p.profile.as_str(),
                    p.member_count,
                    p.pinned_count,
                    p.min_population,
                    p.below_minimum,
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("profiles/premium", 3, 1, 2, false),
                ("profiles/default", 3, 0, 10, true),
            ],
            "{backend:?}: churned p3 is not counted"
        );
        assert_eq!((r.total_count, r.unassigned_count), (6, 1), "{backend:?}");
        env.stop().await;
    }
}
