//! A scorecard preview loads and measures every account, so it is heavy work
//! (docs/reliability.md, "Heavy work: budget, memory, cancellation"): it holds a slot of
//! the process's budget, a full budget refuses it with RESOURCE_EXHAUSTED naming the
//! limit, and a draining server refuses it with UNAVAILABLE.

use std::time::Duration;

use tonic::Code;
use vitals_profiles::ProfilesService;
use vitals_proto::profiles::v1 as pb;
use vitals_server::WorkBudget;
use vitals_test_support::{backends, fresh_store};

fn request() -> pb::PreviewScorecardRequest {
    pb::PreviewScorecardRequest {
        scorecard: Some(pb::Scorecard {
            measure: Some(pb::scorecard::Measure::EventCount(pb::EventCountMeasure {
                event_type: "login".into(),
                window_days: 30,
                aggregation: pb::EventAggregation::Count as i32,
            })),
            worst_value: 0.0,
            best_value: 40.0,
            ..Default::default()
        }),
        as_of: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previews_hold_a_heavy_work_slot_and_are_refused_when_none_is_free() {
    for backend in backends() {
        let store = fresh_store(backend).await.expect("store");
        let work = WorkBudget::new(1, Duration::ZERO);
        let service = ProfilesService::with_budget(store.clone(), work.clone());

        service
            .preview(request())
            .await
            .expect("a preview with a free slot");
        assert_eq!(work.in_flight(), 0, "the preview gave its slot back");

        // Every slot busy, no queueing: refused, naming the setting.
        let busy = work.start("Train").await.expect("the only slot");
        let status =
            tonic::Status::from(service.preview(request()).await.expect_err("no free slot"));
        assert_eq!(status.code(), Code::ResourceExhausted, "{backend:?}");
        assert!(
            status.message().contains("PreviewScorecard")
                && status.message().contains("VITALS_HEAVY_CONCURRENCY"),
            "{}",
            status.message()
        );
        drop(busy);

        // Draining: refused with UNAVAILABLE.
        work.shutdown();
        let status = tonic::Status::from(
            service
                .preview(request())
                .await
                .expect_err("the server drains"),
        );
        assert_eq!(status.code(), Code::Unavailable, "{backend:?}");
        store.close().await.expect("close");
    }
}
