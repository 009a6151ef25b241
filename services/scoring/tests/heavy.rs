//! Scoring runs are heavy work (docs/reliability.md, "Heavy work: budget, memory,
//! cancellation"): each holds a slot of the process's budget; a full budget refuses with
//! RESOURCE_EXHAUSTED naming the limit, and once the server drains a run is refused (or
//! stopped) and writes nothing.

use std::time::Duration;

use tonic::Code;
use vitals_scoring::{Scope, ScoringArgs, ScoringService};
use vitals_server::WorkBudget;
use vitals_store::entity::score_run;
use vitals_store::sea_orm::{EntityTrait, PaginatorTrait};
use vitals_test_support::{backends, fresh_store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoring_runs_hold_a_heavy_work_slot_and_stop_when_the_server_drains() {
    for backend in backends() {
        let store = fresh_store(backend).await.expect("store");
        let work = WorkBudget::new(1, Duration::ZERO);
        let service =
            ScoringService::with_budget(store.clone(), &ScoringArgs::default(), None, work.clone());
        let runs = || async {
            score_run::Entity::find()
                .count(store.conn())
                .await
                .expect("count")
        };

        service
            .compute(Scope::All, None)
            .await
            .expect("a run with a free slot");
        assert_eq!(runs().await, 1, "{backend:?}");
        assert_eq!(work.in_flight(), 0, "the run gave its slot back");

        // Every slot busy, no queueing: refused, naming the setting.
        let busy = work.start("Train").await.expect("the only slot");
        let err = service
            .compute(Scope::All, None)
            .await
            .expect_err("no free slot");
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), Code::ResourceExhausted, "{backend:?}");
        assert!(
            status.message().contains("VITALS_HEAVY_CONCURRENCY"),
            "{}",
            status.message()
        );
        drop(busy);

        // Draining: refused with UNAVAILABLE, nothing written.
        work.shutdown();
        let status = tonic::Status::from(
            service
                .compute(Scope::All, None)
                .await
                .expect_err("the server drains"),
        );
        assert_eq!(status.code(), Code::Unavailable, "{backend:?}");
        assert_eq!(
            runs().await,
            1,
            "{backend:?}: no run written while draining"
        );
        store.close().await.expect("close");
    }
}
