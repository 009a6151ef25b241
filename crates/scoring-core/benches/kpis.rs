//! Benchmark 2: KPI computation from daily roll-ups (plus interactions, pulses,
//! contracts, custom values) for 100,000 accounts x 90 days, as of one day.

use std::hint::black_box;
use std::time::Duration;

use chrono::Days;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vitals_scoring_core::*;

#[path = "support/synth.rs"]
mod synth;

fn bench(c: &mut Criterion) {
    let cat = synth::catalogue();
    let days = 90;
    // 90 days of data: the current 28-day window and two past ones for the trend.
    let config = KpiConfig {
        history_windows: 2,
        data_start: synth::as_of().checked_sub_days(Days::new(days - 1)),
        ..KpiConfig::default()
    };
    let mut group = c.benchmark_group("compute_kpis_90days");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    for n in [10_000usize, 100_000] {
        let pop = synth::population(n, days, 11);
        let inputs = pop.inputs();
        eprintln!(
            "{n} accounts: {} roll-up rows, {} interactions",
            pop.usage.len(),
            pop.interactions.len()
        );
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("accounts", n), &n, |b, _| {
            b.iter(|| {
                black_box(
                    compute_kpis(&cat, &config, synth::as_of(), &inputs).expect("valid config"),
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
