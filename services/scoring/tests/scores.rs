//! ScoringService over real gRPC, on SQLite and (when configured) PostgreSQL: data comes
//! in through the store (as the ingestion service writes them), scores are computed, stored and read back.

mod common;

use std::collections::HashSet;

use common::{Env, FAKE_MODEL, FakeLearnerServer};
use tonic::Code;
use tonic::transport::Channel;
use vitals_proto::common::v1 as cpb;
use vitals_proto::scoring::v1 as pb;
use vitals_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
use vitals_scoring::ScoringArgs;
use vitals_test_support::{WAIT, backends};

fn list(req: pb::ListScoresRequest) -> pb::ListScoresRequest {
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scores_are_stored_listed_paged_and_explained() {
    for backend in backends() {
        let mut env = Env::start(backend, ScoringArgs::default()).await;
        let ids = env.ladder().await;

        let run = env.compute_all().await;
        assert_eq!(run.scored_count, 12, "{backend:?}");
        assert_eq!(
            run.snapshot_count, 12,
            "no scorecards: one snapshot per account"
        );
        assert_eq!(run.profiles.len(), 1);
        assert_eq!(run.profiles[0].profile, "profiles/default");
        assert_eq!(
            run.profiles[0].weights_source,
            cpb::WeightsSource::Uniform as i32
        );

        // Read back: the most active account scores above the least active one.
        let low = env.score(&ids[0]).await;
        let high = env.score(&ids[11]).await;
        assert!(high.value > low.value, "{} vs {}", high.value, low.value);
        assert_eq!(low.run_id, run.run_id);
        assert_eq!(low.scorecard, "scorecards/profile");
        assert_eq!(low.profile, "profiles/default");
        assert_eq!(low.weights_source, cpb::WeightsSource::Uniform as i32);
        assert_eq!(low.peer_count, 12);
        assert!(!low.population_fallback);
        assert_eq!(low.global_score, Some(low.value));
        let cov = low.coverage.expect("coverage");
        assert!(cov.kpis_present > 0 && cov.kpis_present <= cov.kpis_total);
        assert!(!low.category_scores.is_empty(), "full view has sub-scores");
        assert!(!low.drivers.is_empty(), "full view has drivers");
        assert!(
            low.drivers[0].contribution < 0.0,
            "the weakest account is pulled down"
        );
        assert!(
            low.churn_probability.is_none(),
            "no model, no churn probability"
        );

        // Listing: ascending by value, every account once, paging covers the same rows.
        let all = env
            .scoring
            .list_scores(list(pb::ListScoresRequest::default()))
            .await
            .expect("list")
            .into_inner();
        assert_eq!(all.total_size, 12);
        assert_eq!(all.snapshots.len(), 12);
        assert!(all.next_page_token.is_empty());
        assert!(all.snapshots.windows(2).all(|w| w[0].value <= w[1].value));
        assert!(
            all.snapshots[0].drivers.is_empty(),
            "basic view has no drivers"
        );
        let mut paged = Vec::new();
        let mut token = String::new();
        loop {
            let page = env
                .scoring
                .list_scores(pb::ListScoresRequest {
                    page_size: 5,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await
                .expect("page")
                .into_inner();
            assert!(page.snapshots.len() <= 5);
            paged.extend(page.snapshots.into_iter().map(|s| s.account_id));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        let expected: Vec<String> = all.snapshots.iter().map(|s| s.account_id.clone()).collect();
        assert_eq!(paged, expected);
        let desc = env
            .scoring
            .list_scores(pb::ListScoresRequest {
                order_by: "value desc".into(),
                ..Default::default()
            })
            .await
            .expect("desc")
            .into_inner();
        assert!(desc.snapshots.windows(2).all(|w| w[0].value >= w[1].value));

        // Filters: score range and bands, checked against the full listing.
        let (lo, hi) = (3.0, 7.0);
        let ranged = env
            .scoring
            .list_scores(pb::ListScoresRequest {
                min_value: Some(lo),
                max_value: Some(hi),
                ..Default::default()
            })
            .await
            .expect("range")
            .into_inner();
        let want = all
            .snapshots
            .iter()
            .filter(|s| s.value >= lo && s.value <= hi)
            .count();
        assert_eq!(ranged.total_size as usize, want);
        assert!(
            ranged
                .snapshots
                .iter()
                .all(|s| s.value >= lo && s.value <= hi)
        );
        let red_or_green = [cpb::Band::Red as i32, cpb::Band::Green as i32];
        let banded = env
            .scoring
            .list_scores(pb::ListScoresRequest {
                bands: red_or_green.to_vec(),
                ..Default::default()
            })
            .await
            .expect("bands")
            .into_inner();
        let want = all
            .snapshots
            .iter()
            .filter(|s| red_or_green.contains(&s.band))
            .count();
        assert_eq!(banded.snapshots.len(), want);
        assert!(
            banded
                .snapshots
                .iter()
                .all(|s| red_or_green.contains(&s.band))
        );
        let other = env
            .scoring
            .list_scores(pb::ListScoresRequest {
                profile: "profiles/other".into(),
                ..Default::default()
            })
            .await
            .expect("other profile")
            .into_inner();
        assert_eq!(other.total_size, 0);

        // History grows with each run, oldest first.
        let run2 = env.compute_all().await;
        assert_ne!(run2.run_id, run.run_id);
        let h = env
            .scoring
            .get_score_history(pb::GetScoreHistoryRequest {
                account_id: ids[3].clone(),
                ..Default::default()
            })
            .await
            .expect("history")
            .into_inner();
        assert_eq!(h.snapshots.len(), 2);
        assert_eq!(h.snapshots[0].run_id, run.run_id);
        assert_eq!(h.snapshots[1].run_id, run2.run_id);
        let latest = env.score(&ids[3]).await;
        assert_eq!(latest.run_id, run2.run_id);
        let listed = env
            .scoring
            .list_scores(pb::ListScoresRequest::default())
            .await
            .expect("list after run 2")
            .into_inner();
        assert_eq!(
            listed.total_size, 12,
            "the listing shows the latest snapshot only"
        );
        assert!(listed.snapshots.iter().all(|s| s.run_id == run2.run_id));

        // Distribution of the latest scores.
        let d = env
            .scoring
            .get_distribution(pb::GetDistributionRequest::default())
            .await
            .expect("distribution")
            .into_inner()
            .distribution
            .expect("distribution");
        assert_eq!(d.count, 12);
        assert_eq!(d.bins.len(), 10);
        assert_eq!(d.bins.iter().map(|b| b.count).sum::<u32>(), 12);
        let bc = d.band_counts.expect("band counts");
        assert_eq!(bc.red + bc.yellow + bc.green, 12);
        let mean = listed.snapshots.iter().map(|s| s.value).sum::<f64>() / 12.0;
        assert!((d.mean - mean).abs() < 1e-9);

        // Explanation: contributions add up to the distance from 5 (plus the usage
        // adjustment's share), ordered by size.
        let e = env
            .scoring
            .explain_score(pb::ExplainScoreRequest {
                account_id: ids[0].clone(),
                ..Default::default()
            })
            .await
            .expect("explain")
            .into_inner();
        let snap = e.snapshot.expect("snapshot");
        let sum: f64 = e.drivers.iter().map(|d| d.contribution).sum();
        assert!(
            (5.0 + sum - snap.value).abs() <= snap.usage_adjustment.abs() + 1e-3,
            "5 + {sum} vs {}",
            snap.value
        );
        assert!(
            e.drivers
                .windows(2)
                .all(|w| w[0].contribution.abs() >= w[1].contribution.abs())
        );

        // KPI catalogue.
        let kpis = env
            .scoring
            .list_kpis(pb::ListKpisRequest::default())
            .await
            .expect("kpis")
            .into_inner()
            .kpis;
        let names: HashSet<&str> = kpis.iter().map(|k| k.name.as_str()).collect();
        assert!(names.contains("active_days") && names.contains("events_login"));
        // Each key event type's detail KPIs, named, described and with their unit.
        for (name, display, unit, direction) in [
            (
                "events_login__share",
                "Events login: share",
                "ratio",
                cpb::KpiDirection::HigherIsBetter,
            ),
            (
                "events_login__days_since",
                "Events login: days since",
                "days",
                cpb::KpiDirection::LowerIsBetter,
            ),
            (
                "events_login__change_pct",
                "Events login: change pct",
                "percent",
                cpb::KpiDirection::HigherIsBetter,
            ),
        ] {
            let k = kpis.iter().find(|k| k.name == name).expect(name);
            assert_eq!(k.display_name, display);
            assert_eq!(k.unit, unit, "{name}");
            assert_eq!(k.direction, direction as i32, "{name}");
            assert_eq!(k.category, cpb::ScoreCategory::Usage as i32, "{name}");
            assert!(k.description.contains("`login`"), "{}", k.description);
        }
        let usage = env
            .scoring
            .list_kpis(pb::ListKpisRequest {
                category: cpb::ScoreCategory::Usage as i32,
            })
            .await
            .expect("usage kpis")
            .into_inner()
            .kpis;
        assert!(!usage.is_empty() && usage.len() < kpis.len());
        assert!(
            usage
                .iter()
                .all(|k| k.category == cpb::ScoreCategory::Usage as i32)
        );
        env.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_profile_and_one_account_runs() {
    for backend in backends() {
        let mut env = Env::start(backend, ScoringArgs::default()).await;
        let ids = env.ladder().await;
        let r = env
            .scoring
            .compute_scores(pb::ComputeScoresRequest {
                scope: Some(pb::compute_scores_request::Scope::Profile(
                    "profiles/default".into(),
                )),
                as_of: None,
            })
            .await
            .expect("profile run")
            .into_inner();
        assert_eq!(r.scored_count, 12, "{backend:?}");
        let r = env
            .scoring
            .compute_scores(pb::ComputeScoresRequest {
                scope: Some(pb::compute_scores_request::Scope::AccountId(ids[5].clone())),
                as_of: None,
            })
            .await
            .expect("account run")
            .into_inner();
        assert_eq!(r.scored_count, 1);
        assert_eq!(r.snapshot_count, 1);
        assert_eq!(env.score(&ids[5]).await.run_id, r.run_id);
        assert_ne!(
            env.score(&ids[4]).await.run_id,
            r.run_id,
            "other accounts untouched"
        );
        env.stop().await;
    }
}

async fn expect_invalid<T: std::fmt::Debug>(r: Result<T, tonic::Status>, field: &str) {
    let e = r.expect_err("must fail");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().starts_with(field), "{field}: {}", e.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_invalid_argument_naming_the_field() {
    for backend in backends() {
        let mut env = Env::start(backend, ScoringArgs::default()).await;
        // Nothing to score is not an error.
        let empty = env.compute_all().await;
        assert_eq!((empty.scored_count, empty.snapshot_count), (0, 0));
        let c = &mut env.scoring;
        expect_invalid(
            c.list_scores(pb::ListScoresRequest {
                page_size: -1,
                ..Default::default()
            })
            .await,
            "page_size",
        )
        .await;
        expect_invalid(
            c.list_scores(pb::ListScoresRequest {
                scorecard: "bogus".into(),
                ..Default::default()
            })
            .await,
            "scorecard",
        )
        .await;
        expect_invalid(
            c.list_scores(pb::ListScoresRequest {
                min_value: Some(11.0),
                ..Default::default()
            })
            .await,
            "min_value",
        )
        .await;
        expect_invalid(
            c.list_scores(pb::ListScoresRequest {
                order_by: "colour".into(),
                ..Default::default()
            })
            .await,
            "order_by",
        )
        .await;
        expect_invalid(
            c.list_scores(pb::ListScoresRequest {
                page_token: "zz".into(),
                ..Default::default()
            })
            .await,
            "page_token",
        )
        .await;
        expect_invalid(
            c.list_scores(pb::ListScoresRequest {
                bands: vec![9],
                ..Default::default()
            })
            .await,
            "bands[0]",
        )
        .await;
        expect_invalid(
            c.compute_scores(pb::ComputeScoresRequest {
                scope: Some(pb::compute_scores_request::Scope::Profile("default".into())),
                as_of: None,
            })
            .await,
            "profile",
        )
        .await;
        expect_invalid(
            c.compute_scores(pb::ComputeScoresRequest {
                scope: None,
                as_of: Some(common::ts(chrono::Utc::now() + chrono::Duration::days(2))),
            })
            .await,
            "as_of",
        )
        .await;
        expect_invalid(
            c.get_score(pb::GetScoreRequest::default()).await,
            "account_id",
        )
        .await;
        expect_invalid(
            c.get_score_history(pb::GetScoreHistoryRequest {
                account_id: "a".into(),
                scorecard: "scorecards/-".into(),
                ..Default::default()
            })
            .await,
            "scorecard",
        )
        .await;
        expect_invalid(
            c.watch_scores(pb::WatchScoresRequest {
                profile: "nope".into(),
                ..Default::default()
            })
            .await,
            "profile",
        )
        .await;
        let e = c
            .compute_scores(pb::ComputeScoresRequest {
                scope: Some(pb::compute_scores_request::Scope::Profile(
                    "profiles/missing".into(),
                )),
                as_of: None,
            })
            .await
            .expect_err("unknown profile");
        assert_eq!(e.code(), Code::NotFound);
        let e = c
            .get_score(pb::GetScoreRequest {
                account_id: "nobody".into(),
                ..Default::default()
            })
            .await
            .expect_err("no snapshot");
        assert_eq!(e.code(), Code::NotFound);
        env.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_scores_sees_a_band_change_caused_by_new_events() {
    for backend in backends() {
        let mut env = Env::start(backend, ScoringArgs::default()).await;
        env.usage_only().await;
        let ids = env.ladder().await;
        env.compute_all().await;
        let before = env.score(&ids[0]).await;
        assert_ne!(
            before.band,
            cpb::Band::Green as i32,
            "{backend:?}: {}",
            before.value
        );

        let mut stream = env
            .scoring
            .watch_scores(pb::WatchScoresRequest {
                profile: "profiles/default".into(),
                ..Default::default()
            })
            .await
            .expect("watch")
            .into_inner();
        // The least active account becomes the most active one.
        env.logins(&ids[0], 28, 20, "burst").await;
        let run = env.compute_all().await;
        assert!(run.band_change_count >= 1);
        let after = env.score(&ids[0]).await;
        assert_ne!(
            after.band, before.band,
            "{} -> {}",
            before.value, after.value
        );

        let mut seen = None;
        for _ in 0..run.band_change_count {
            let msg = tokio::time::timeout(WAIT, stream.message())
                .await
                .expect("a band change within the wait")
                .expect("stream ok")
                .expect("stream open");
            assert_eq!(msg.run_id, run.run_id);
            if msg.account_id == ids[0] {
                seen = Some(msg);
            }
        }
        let msg = seen.expect("the change of a00 was streamed");
        assert_eq!(msg.old_band, before.band);
        assert_eq!(msg.new_band, after.band);
        assert_eq!(msg.old_value, before.value);
        assert_eq!(msg.new_value, after.value);
        assert_eq!(msg.scorecard, "scorecards/profile");
        assert_eq!(msg.profile, "profiles/default");
        drop(stream);
        env.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_down_scores_with_fallback_weights() {
    for backend in backends() {
        // A learner that is not there at all: uniform weights, and the snapshot says so.
        let gone = {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            l.local_addr().expect("addr")
        };
        let args = ScoringArgs {
            learner_url: Some(format!("http://{gone}")),
            ..ScoringArgs::default()
        };
        let mut env = Env::start(backend, args).await;
        let ids = env.ladder().await;
        let run = env.compute_all().await;
        assert_eq!(run.scored_count, 12, "{backend:?}");
        assert_eq!(
            run.profiles[0].weights_source,
            cpb::WeightsSource::Uniform as i32
        );
        let s = env.score(&ids[2]).await;
        assert_eq!(s.weights_source, cpb::WeightsSource::Uniform as i32);
        assert_eq!(s.model, "");
        env.stop().await;

        // A learner that answers, then goes away: learned, then last known weights.
        let learner = FakeLearnerServer::start().await;
        let args = ScoringArgs {
            learner_url: Some(learner.url()),
            weights_ttl_secs: 0,
            ..ScoringArgs::default()
        };
        let mut env = Env::start(backend, args).await;
        let ids = env.ladder().await;
        let run = env.compute_all().await;
        assert_eq!(
            run.profiles[0].weights_source,
            cpb::WeightsSource::Learned as i32
        );
        assert_eq!(run.profiles[0].model, FAKE_MODEL);
        let learned = env.score(&ids[2]).await;
        assert_eq!(learned.weights_source, cpb::WeightsSource::Learned as i32);
        assert_eq!(learned.model, FAKE_MODEL);
        let p = learned
            .churn_probability
            .expect("a model gives a churn probability");
        assert!(p > 0.0 && p < 1.0);
        // Only the two weighted usage KPIs count in the usage category.
        let usage = learned
            .category_scores
            .iter()
            .find(|c| c.category == cpb::ScoreCategory::Usage as i32)
            .expect("usage sub-score");
        assert_eq!(usage.kpis_total, 2);
        let top = env.score(&ids[11]).await;
        assert!(
            top.churn_probability.expect("churn") < p,
            "more active, less risk"
        );

        learner.stop().await;
        let run = env.compute_all().await;
        assert_eq!(run.scored_count, 12);
        assert_eq!(
            run.profiles[0].weights_source,
            cpb::WeightsSource::LastKnown as i32
        );
        let last = env.score(&ids[2]).await;
        assert_eq!(last.run_id, run.run_id);
        assert_eq!(last.weights_source, cpb::WeightsSource::LastKnown as i32);
        assert_eq!(last.model, FAKE_MODEL);
        assert!(
            (last.value - learned.value).abs() < 1e-9,
            "same weights, same data"
        );
        env.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scorecards_global_score_and_why_it_changed() {
    use vitals_store::profiles::{ScorecardRecord, StoredMeasure, insert_scorecard};
    for backend in backends() {
        let mut env = Env::start(backend, ScoringArgs::default()).await;
        env.usage_only().await;
        let now = chrono::Utc::now();
        insert_scorecard(
            &env.store,
            &ScorecardRecord {
                id: "active".into(),
                display_name: "Active days".into(),
                description: String::new(),
                measure: StoredMeasure::Kpi {
                    kpi: "active_days".into(),
                },
                worst: 0.0,
                best: 28.0,
                yellow_from: 3.0,
                green_from: 7.0,
                impact: "medium".into(),
                segment: String::new(),
                tags: vec![],
                display_order: 0,
                enabled: true,
                include_in_global: true,
                created_at: now,
                updated_at: now,
            },
        )
        .await
        .expect("scorecard");
        let ids = env.ladder().await;
        let run1 = env.compute_all().await;
        assert_eq!(run1.scored_count, 12, "{backend:?}");
        assert_eq!(
            run1.snapshot_count, 24,
            "profile score + one scorecard each"
        );

        // The scorecard maps active days 0..28 onto 0..10.
        let card = env
            .scoring
            .get_score(pb::GetScoreRequest {
                account_id: ids[6].clone(),
                scorecard: "scorecards/active".into(),
                as_of: None,
            })
            .await
            .expect("scorecard score")
            .into_inner()
            .snapshot
            .expect("snapshot");
        assert_eq!(card.measure_value, Some(7.0));
        assert!((card.value - 2.5).abs() < 1e-6, "{}", card.value);
        assert_eq!(card.band, cpb::Band::Red as i32);
        assert!(card.global_score.is_none() && card.drivers.is_empty());
        // Global = (3 x profile + 2 x scorecard) / 5.
        let profile = env.score(&ids[6]).await;
        let want = (3.0 * profile.value + 2.0 * card.value) / 5.0;
        let global = profile.global_score.expect("global score");
        assert!((global - want).abs() < 1e-5, "{global} vs {want}");
        let every = env
            .scoring
            .list_scores(pb::ListScoresRequest {
                scorecard: "scorecards/-".into(),
                order_by: "account_id".into(),
                ..Default::default()
            })
            .await
            .expect("every scorecard")
            .into_inner();
        assert_eq!(every.total_size, 24);
        assert_eq!(every.snapshots[0].account_id, ids[0]);
        assert_eq!(every.snapshots[1].account_id, ids[0]);
        let d = env
            .scoring
            .get_distribution(pb::GetDistributionRequest {
                scorecard: "scorecards/active".into(),
                ..Default::default()
            })
            .await
            .expect("scorecard distribution")
            .into_inner()
            .distribution
            .expect("distribution");
        assert_eq!(d.count, 12);
        assert!((d.max - 12.0 / 28.0 * 10.0).abs() < 1e-6);

        // Why it changed: a00 gets much more active.
        let t1 = profile.as_of.expect("as_of");
        let before = env.score(&ids[0]).await;
        env.logins(&ids[0], 28, 20, "burst").await;
        let run2 = env.compute_all().await;
        let e = env
            .scoring
            .explain_score(pb::ExplainScoreRequest {
                account_id: ids[0].clone(),
                scorecard: String::new(),
                since: Some(t1),
            })
            .await
            .expect("explain since")
            .into_inner();
        let now = e.snapshot.expect("current");
        let base = e.baseline.expect("baseline");
        assert_eq!(now.run_id, run2.run_id);
        assert_eq!(base.run_id, run1.run_id);
        assert_eq!(base.value, before.value);
        assert!((e.score_change - (now.value - base.value)).abs() < 1e-9);
        assert!(e.score_change > 0.0);
        let logins = e
            .kpi_changes
            .iter()
            .find(|c| c.kpi == "events_login")
            .expect("events_login change");
        assert_eq!(logins.before_value, Some(1.0));
        assert_eq!(logins.after_value, Some(561.0));
        assert!(logins.contribution_change > 0.0);
        let kpi_sum: f64 = e.kpi_changes.iter().map(|c| c.contribution_change).sum();
        assert!(
            e.other_change.abs() < 0.5 && (kpi_sum + e.other_change - e.score_change).abs() < 1e-9
        );
        // GetScore in force at t1 is the first run's.
        let old = env
            .scoring
            .get_score(pb::GetScoreRequest {
                account_id: ids[0].clone(),
                scorecard: String::new(),
                as_of: Some(t1),
            })
            .await
            .expect("score at t1")
            .into_inner()
            .snapshot
            .expect("snapshot");
        assert_eq!(old.run_id, run1.run_id);
        env.stop().await;
    }
}

async fn value_of(c: &mut ScoringServiceClient<Channel>, account: &str) -> f64 {
    common::score_of(c, account).await.value
}

/// GetScore serves the latest scores from memory (docs/scoring-service.md, "Score
/// cache"): a run of the same process is seen at once; a run of another replica on the
/// same database within `--score-cache-refresh-ms`, and not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_score_cache_follows_runs_of_this_and_other_replicas() {
    for backend in backends() {
        let mut env = Env::start(backend, ScoringArgs::default()).await;
        env.usage_only().await;
        let ids = env.ladder().await;
        env.compute_all().await;
        let hour = ScoringArgs {
            score_cache_refresh_ms: 3_600_000,
            ..ScoringArgs::default()
        };
        let quick = ScoringArgs {
            score_cache_refresh_ms: 50,
            ..ScoringArgs::default()
        };
        let (slow_server, mut slow) = env.replica(hour).await;
        let (quick_server, mut quick) = env.replica(quick).await;
        let (off_server, mut off) = env
            .replica(ScoringArgs {
                score_cache_entries: 0,
                ..ScoringArgs::default()
            })
            .await;
        let before = value_of(&mut env.scoring, &ids[0]).await;
        for c in [&mut slow, &mut quick, &mut off] {
            assert_eq!(value_of(c, &ids[0]).await, before, "{backend:?}");
        }

        // A run of the first server: it sees its new score at once.
        env.logins(&ids[0], 28, 20, "burst").await;
        env.compute_all().await;
        let after = value_of(&mut env.scoring, &ids[0]).await;
        assert_ne!(after, before, "{backend:?}: the run changed nothing");
        // Without a cache: at once too.
        assert_eq!(value_of(&mut off, &ids[0]).await, after, "{backend:?}");
        // The other replicas: within their refresh interval.
        let deadline = tokio::time::Instant::now() + WAIT;
        while value_of(&mut quick, &ids[0]).await != after {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{backend:?}: a 50 ms refresh did not see the other replica's run"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // ... and not before: this one checks once an hour, so it still serves what it
        // cached (what the documentation says may happen for up to the interval).
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(value_of(&mut slow, &ids[0]).await, before, "{backend:?}");
        // A point-in-time read never comes from the cache.
        let at_now = slow
            .get_score(pb::GetScoreRequest {
                account_id: ids[0].clone(),
                as_of: Some(common::ts(chrono::Utc::now())),
                ..Default::default()
            })
            .await
            .expect("get score as of now")
            .into_inner()
            .snapshot
            .expect("snapshot")
            .value;
        assert_eq!(at_now, after, "{backend:?}");

        for s in [slow_server, quick_server, off_server] {
            s.stop().await.expect("replica stops cleanly");
        }
        env.stop().await;
    }
}

/// A run fills the cache of its own process with the scores it wrote (docs/scoring-service.md,
/// "Score cache"): GetScore then answers from memory exactly what a read of the database
/// answers (drivers, categories, override), and without reading the database at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_fills_the_score_cache_with_what_the_database_answers() {
    for backend in backends() {
        let mut env = Env::start(backend, ScoringArgs::default()).await;
        env.usage_only().await;
        let ids = env.ladder().await;
        env.compute_all().await;
        env.scoring
            .set_override(override_request(&ids[1], 1.5, 3_600))
            .await
            .expect("set override");
        // A replica that looks at the database's changes once an hour, and one without a
        // cache (every answer read from the database).
        let (cached_server, mut cached) = env
            .replica(ScoringArgs {
                score_cache_refresh_ms: 3_600_000,
                ..ScoringArgs::default()
            })
            .await;
        let (off_server, mut off) = env
            .replica(ScoringArgs {
                score_cache_entries: 0,
                ..ScoringArgs::default()
            })
            .await;
        // The replica's own run: nothing asked of it before.
        cached
            .compute_scores(pb::ComputeScoresRequest::default())
            .await
            .expect("compute scores on the replica");
        for id in &ids[1..] {
            let from_cache = common::score_of(&mut cached, id).await;
            let from_db = common::score_of(&mut off, id).await;
            assert_eq!(from_cache, from_db, "{backend:?}: {id}");
            assert!(!from_cache.drivers.is_empty(), "{backend:?}: {id}");
        }
        assert_eq!(
            override_value(&mut cached, &ids[1]).await,
            Some(1.5),
            "{backend:?}"
        );
        // Another process's run, which this replica will not see for an hour: an account
        // it was never asked about still shows its own run's score, so that score came
        // from the run, not from a read after it.
        let before = common::score_of(&mut off, &ids[0]).await;
        env.logins(&ids[0], 28, 20, "burst").await;
        env.compute_all().await;
        let after = common::score_of(&mut off, &ids[0]).await;
        assert_ne!(
            after.value, before.value,
            "{backend:?}: the run changed nothing"
        );
        assert_eq!(
            common::score_of(&mut cached, &ids[0]).await,
            before,
            "{backend:?}"
        );

        for s in [cached_server, off_server] {
            s.stop().await.expect("replica stops cleanly");
        }
        env.stop().await;
    }
}

async fn override_value(c: &mut ScoringServiceClient<Channel>, account: &str) -> Option<f64> {
    c.get_score(pb::GetScoreRequest {
        account_id: account.into(),
        ..Default::default()
    })
    .await
    .expect("get score")
    .into_inner()
    .snapshot
    .expect("snapshot")
    .manual_override
    .and_then(|o| o.value)
}

fn override_request(account: &str, value: f64, expires_in_s: i64) -> pb::SetOverrideRequest {
    pb::SetOverrideRequest {
        account_id: account.into(),
        scorecard: String::new(),
        manual_override: Some(pb::ScoreOverride {
            value: Some(value),
            band: cpb::Band::Red as i32,
            reason_code: "exec_escalation".into(),
            expire_time: Some(common::ts(
                chrono::Utc::now() + chrono::Duration::seconds(expires_in_s),
            )),
            ..Default::default()
        }),
    }
}

/// A cached GetScore answer holds the override read with it: an override set or cleared
/// on this process is seen at once, one set on another replica within
/// `--score-cache-refresh-ms`, and an override that expires stops showing on a cache hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_score_cache_follows_overrides_of_this_and_other_replicas() {
    for backend in backends() {
        let mut env = Env::start(backend, ScoringArgs::default()).await;
        env.usage_only().await;
        let ids = env.ladder().await;
        env.compute_all().await;
        let (quick_server, mut quick) = env
            .replica(ScoringArgs {
                score_cache_refresh_ms: 50,
                ..ScoringArgs::default()
            })
            .await;
        // Both cache the score with no override.
        assert_eq!(override_value(&mut env.scoring, &ids[0]).await, None);
        assert_eq!(override_value(&mut quick, &ids[0]).await, None);

        env.scoring
            .set_override(override_request(&ids[0], 1.5, 3_600))
            .await
            .expect("set override");
        assert_eq!(
            override_value(&mut env.scoring, &ids[0]).await,
            Some(1.5),
            "{backend:?}: this process sees its override at once"
        );
        let deadline = tokio::time::Instant::now() + WAIT;
        while override_value(&mut quick, &ids[0]).await != Some(1.5) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{backend:?}: the other replica did not see the override"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }

        quick
            .clear_override(pb::ClearOverrideRequest {
                account_id: ids[0].clone(),
                reason_code: "resolved".into(),
                ..Default::default()
            })
            .await
            .expect("clear override");
        assert_eq!(override_value(&mut quick, &ids[0]).await, None);
        let deadline = tokio::time::Instant::now() + WAIT;
        while override_value(&mut env.scoring, &ids[0]).await.is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{backend:?}: the first server did not see the clear"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }

        // An override that expires: shown while cached, gone after its expiry with no
        // other change.
        // (4 s: a loaded CI machine can take over a second between the set and the read.)
        let set_at = tokio::time::Instant::now();
        env.scoring
            .set_override(override_request(&ids[1], 2.5, 4))
            .await
            .expect("set expiring override");
        let shown = override_value(&mut env.scoring, &ids[1]).await;
        if set_at.elapsed() < std::time::Duration::from_secs(3) {
            assert_eq!(shown, Some(2.5), "{backend:?}: the override did not show");
        }
        tokio::time::sleep_until(set_at + std::time::Duration::from_millis(4_500)).await;
        assert_eq!(
            override_value(&mut env.scoring, &ids[1]).await,
            None,
            "{backend:?}: an expired override still showed"
        );

        quick_server.stop().await.expect("replica stops cleanly");
        env.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_with_json_drivers_from_before_migration_10_read_the_same() {
    use vitals_scoring::domain::stored::decode_drivers;
    use vitals_store::sea_orm::{ConnectionTrait, DbBackend, Statement, Value};
    for backend in backends() {
        let mut env = Env::start(backend, ScoringArgs::default()).await;
        let ids = env.ladder().await;
        env.compute_all().await;
        let account = ids[3].clone();
        let later = common::ts(chrono::Utc::now() + chrono::Duration::days(1));
        let reads = async |scoring: &mut ScoringServiceClient<Channel>| {
            let explained = scoring
                .explain_score(pb::ExplainScoreRequest {
                    account_id: account.clone(),
                    ..Default::default()
                })
                .await
                .expect("explain")
                .into_inner();
            // With an as_of: read from the database, not the score cache.
            let got = scoring
                .get_score(pb::GetScoreRequest {
                    account_id: account.clone(),
                    as_of: Some(later),
                    ..Default::default()
                })
                .await
                .expect("get score")
                .into_inner()
                .snapshot
                .expect("snapshot");
            let listed = scoring
                .list_scores(pb::ListScoresRequest {
                    view: pb::ScoreView::Full as i32,
                    ..Default::default()
                })
                .await
                .expect("list")
                .into_inner()
                .snapshots;
            (explained, got, listed)
        };
        let new_form = reads(&mut env.scoring).await;
        assert!(new_form.0.drivers.len() > 3, "{backend:?}");
        assert!(!new_form.1.drivers.is_empty());
        assert!(new_form.2.iter().all(|s| !s.drivers.is_empty()));

        // The row as the code before migration 10 wrote it: the drivers as JSON arrays
        // in `drivers`, nothing in `drivers_bin`.
        let conn = env.store.conn();
        let row = vitals_store::scoring::snapshot_at(&env.store, &account, "profile", None)
            .await
            .expect("read")
            .expect("snapshot");
        assert_eq!(row.drivers, serde_json::Value::Null);
        let drivers =
            decode_drivers(row.drivers_bin.as_deref().expect("binary drivers")).expect("decodes");
        let json = serde_json::to_string(&drivers).expect("json");
        assert!(json.starts_with("[[\""), "{json}");
        let b = conn.get_database_backend();
        let sql = if b == DbBackend::Postgres {
            "UPDATE score_snapshots SET drivers = CAST($1 AS json), drivers_bin = NULL WHERE id = $2"
        } else {
            "UPDATE score_snapshots SET drivers = ?, drivers_bin = NULL WHERE id = ?"
        };
        let done = conn
            .execute_raw(Statement::from_sql_and_values(
                b,
                sql,
                [Value::from(json), Value::from(row.id)],
            ))
            .await
            .expect("rewrite");
        assert_eq!(done.rows_affected(), 1);

        let old_form = reads(&mut env.scoring).await;
        assert_eq!(old_form, new_form, "{backend:?}");
        env.stop().await;
    }
}
