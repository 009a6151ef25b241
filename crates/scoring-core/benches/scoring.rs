//! Benchmark 1: scoring a population from KPI values to profile scores with drivers
//! (70 KPIs, 10 profiles) at 10k / 100k / 1M accounts.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vitals_scoring_core::*;

#[path = "support/synth.rs"]
mod synth;

fn bench(c: &mut Criterion) {
    let cat = synth::catalogue();
    let profiles = synth::profiles(&cat, 7);
    let mut group = c.benchmark_group("score_population_70kpis_10profiles");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    for n in [10_000usize, 100_000, 1_000_000] {
        let m = synth::matrix(n, &cat, 42);
        let profile_of: Vec<u32> = (0..n as u32).map(|i| i % 10).collect();
        let signals = synth::signals(n, 3);
        let input = PopulationInput {
            kpis: cat.kpis(),
            matrix: &m,
            profile_of: &profile_of,
            profiles: &profiles,
            signals: Some(&signals),
        };
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("accounts", n), &n, |b, _| {
            b.iter(|| {
                black_box(
                    score_population(&input, &ScoreOptions { drivers: 3 }).expect("valid input"),
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
