//! Benchmark 1: scoring a population from KPI values to profile scores with drivers
//! (94 KPIs, 10 profiles) at 10k / 100k / 1M accounts, and at 100k in the issue's own
//! shape (70 KPIs: 2 of the 8 event types key).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vitals_scoring_core::*;

#[path = "support/synth.rs"]
mod synth;

fn bench(c: &mut Criterion) {
    let shapes = [
        (
            "score_population_94kpis_10profiles",
            synth::catalogue(),
            &[10_000usize, 100_000, 1_000_000][..],
        ),
        (
            "score_population_70kpis_10profiles",
            synth::catalogue_with_keys(Some(vec![0, 1])),
            &[100_000usize][..],
        ),
    ];
    for (name, cat, sizes) in shapes {
        let profiles = synth::profiles(&cat, 7);
        let mut group = c.benchmark_group(name);
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(3));
        for &n in sizes {
            let data = synth::Scored::new(n, &cat);
            let input = data.input(&cat, &profiles);
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::new("accounts", n), &n, |b, _| {
                b.iter(|| {
                    black_box(
                        score_population(&input, &ScoreOptions { drivers: 3 })
                            .expect("valid input"),
                    )
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
