//! Peak memory and wall time of one `score_population` call, for docs/bench-scoring-core.md.
//!
//! `cargo run --release -p vitals-scoring-core --example peak_rss -- 100000`
//!
//! Linux only: builds the KPI matrix, resets the process's peak RSS (writing 5 to
//! /proc/self/clear_refs), scores once, then reads VmHWM from /proc/self/status.

use std::time::Instant;

use vitals_scoring_core::*;

#[path = "../benches/support/synth.rs"]
mod synth;

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let cat = synth::catalogue();
    let profiles = synth::profiles(&cat, 7);
    let data = synth::Scored::new(n, &cat);
    let input = data.input(&cat, &profiles);
    let m = &data.matrix;
    // Warm the thread pool so its stacks are not counted as scoring memory.
    rayon::broadcast(|_| ());
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_kib("VmRSS:");
    let t0 = Instant::now();
    let s = score_population(&input, &ScoreOptions { drivers: 3 }).expect("valid input");
    let elapsed = t0.elapsed();
    let peak = status_kib("VmHWM:");
    let matrix_mib = m.size_bytes() as f64 / 1048576.0;
    let extra_mib = (peak.saturating_sub(before)) as f64 / 1024.0;
    println!(
        "accounts: {n}, kpis: {}, profiles: {}",
        cat.len(),
        profiles.len()
    );
    println!(
        "matrix: {matrix_mib:.1} MiB; RSS before scoring: {:.1} MiB",
        before as f64 / 1024.0
    );
    println!(
        "peak RSS during scoring: {:.1} MiB = matrix x {:.2}; added by scoring: {extra_mib:.1} MiB = matrix x {:.2}",
        peak as f64 / 1024.0,
        peak as f64 / 1024.0 / matrix_mib,
        extra_mib / matrix_mib
    );
    println!("one call: {:.3} s", elapsed.as_secs_f64());
    let scored = s.results().filter(|r| r.score.is_some()).count();
    println!(
        "scored accounts: {scored}; first drivers down: {:?}",
        s.drivers_down(0).first()
    );
}
