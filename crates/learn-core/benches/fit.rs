//! Fit time on 100,000 observations x 70 features (target: <= 2 s on 2 cores), for the
//! Newton solver used by the crate and, for comparison, linfa-logistic's L-BFGS.
//!
//! Run: `cargo bench -p vitals-learn-core --bench fit`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::Array1;
use vitals_learn_core::synthetic::{SplitMix64, logistic_dataset};
use vitals_learn_core::{
    ClassWeight, LogisticModel, LogisticOptions, Standardizer, TrainOptions, fit_cv,
};

const N: usize = 100_000;
const P: usize = 70;

fn truth() -> Vec<f64> {
    let mut rng = SplitMix64::new(7);
    (0..P)
        .map(|j| if j % 3 == 0 { 0.5 * rng.normal() } else { 0.0 })
        .collect()
}

fn bench_fit(c: &mut Criterion) {
    let data = logistic_dataset(N, -3.0, &truth(), 42);
    let mut group = c.benchmark_group("fit_100k_x_70");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));

    group.bench_function("newton_balanced_lambda_1e-3", |b| {
        let opts = LogisticOptions {
            lambda: 1e-3,
            class_weight: ClassWeight::Balanced,
            ..LogisticOptions::default()
        };
        b.iter(|| {
            black_box(
                LogisticModel::fit(&data.feature_names, data.x.view(), &data.labels, &opts).ok(),
            )
        })
    });

    group.bench_function("newton_with_time_ordered_cv_11_lambdas", |b| {
        let opts = TrainOptions::default();
        b.iter(|| black_box(fit_cv(&data, &opts).ok()))
    });

    group.bench_function("linfa_logistic_lbfgs_unweighted", |b| {
        // Same objective without class weights: linfa's loss is a sum, ours a mean, so
        // alpha = lambda * n.
        let z = Standardizer::fit(data.x.view())
            .transform(data.x.view())
            .ok();
        let z = z.unwrap_or_default();
        let y: Array1<bool> = data.labels.iter().copied().collect();
        let ds = Dataset::new(z, y);
        b.iter(|| {
            black_box(
                LogisticRegression::default()
                    .alpha(1e-3 * N as f64)
                    .max_iterations(200)
                    .fit(&ds)
                    .ok(),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench_fit);
criterion_main!(benches);
