//! Deterministic synthetic data for tests, benchmarks and demos: observations drawn from a
//! known logistic model, so a fit can be checked against the truth. No external RNG crate:
//! SplitMix64 is enough for simulation and keeps the results identical everywhere.

use chrono::{Days, NaiveDate};
use ndarray::Array2;

use crate::dataset::Dataset;

/// SplitMix64 pseudo-random generator (Steele, Lea, Flood 2014).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]: ln is finite
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Draws `n` observations with independent standard-normal features and labels from
/// `P(churn) = sigmoid(intercept + coefficients . x)`. Dates run over `n / 100 + 1`
/// consecutive days from 2020-01-01 in row order (so time-ordered splits work); account
/// ids are `a<row>`. Feature names are `f0, f1, ...`.
pub fn logistic_dataset(n: usize, intercept: f64, coefficients: &[f64], seed: u64) -> Dataset {
    let p = coefficients.len();
    let mut rng = SplitMix64::new(seed);
    let mut x = Array2::<f64>::zeros((n, p));
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let mut eta = intercept;
        for j in 0..p {
            let v = rng.normal();
            x[[i, j]] = v;
            eta += coefficients[j] * v;
        }
        let prob = 1.0 / (1.0 + (-eta).exp());
        labels.push(rng.uniform() < prob);
    }
    let start = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap_or_default();
    let dates = (0..n)
        .map(|i| {
            start
                .checked_add_days(Days::new((i / 100) as u64))
                .unwrap_or(start)
        })
        .collect();
    Dataset {
        feature_names: (0..p).map(|j| format!("f{j}")).collect(),
        x,
        labels,
        dates,
        accounts: (0..n).map(|i| format!("a{i}")).collect(),
    }
}
