//! The passes of [`score_population`]: grouping, percentiles, raw means, calibration
//! and the final pass (steps 1-5 of the module documentation).

use rayon::prelude::*;

use super::types::EMPTY_DRIVER;
use super::{
    AccountSignals, Driver, MAX_DRIVERS, Packed, PopulationInput, PopulationScores, Resolved,
    ScoreOptions, accumulate, evaluate, raw_means, resolve,
};
use crate::ScoringError;
use crate::catalogue::ScoreMode;
use crate::percentile::{order_key, orient, rank_sorted, raw_percentile_of_key};

/// Columns ranked together in one pass over the rows: the matrix is row-major, so
/// gathering several adjacent columns at once reads each row's cache line once.
const COLUMN_BLOCK: usize = 4;

/// Stands for the whole portfolio (the comparison population of every profile in
/// fallback) in the list of (profile, KPI) pairs without variation.
const PORTFOLIO: u32 = u32::MAX;

/// Scores a whole population: profile scores, category sub-scores, coverage, fallback
/// flags and the top drivers of every account. Deterministic and independent of row
/// order (apart from the rows of the output following the input).
pub fn score_population(
    input: &PopulationInput<'_>,
    options: &ScoreOptions,
) -> Result<PopulationScores, ScoringError> {
    check_input(input, options)?;
    let n = input.matrix.n_accounts();
    let k = input.matrix.n_kpis();
    let sizes = profile_sizes(input)?;
    let mut resolved = resolve(input, &sizes)?;
    let groups = Groups::new(input, &sizes);
    let any_fallback = resolved
        .iter()
        .zip(&sizes)
        .any(|(r, &s)| r.fallback && s > 0);

    let (percentiles, flat) = {
        let ranking = Ranking {
            input,
            resolved: &resolved,
            groups: &groups,
            any_fallback,
        };
        ranking.percentiles()
    };
    mark_uninformative(input, &mut resolved, &flat);
    let raw = raw_pass(input, &resolved, &percentiles);
    let (calibrated, centers) = calibrate(&raw, &resolved, &groups, any_fallback, n);
    drop(groups);
    for (p, r) in resolved.iter_mut().enumerate() {
        r.center = std::array::from_fn(|c| centers[c][p]);
    }
    let slots = (2 * options.drivers).max(1);
    let mut results = raw;
    let drivers = final_pass(
        input,
        &resolved,
        &percentiles,
        &calibrated,
        options.drivers,
        &mut results,
    );
    Ok(PopulationScores {
        n,
        n_kpis: k,
        slots,
        results,
        drivers,
        percentiles,
        calibrated,
        resolved,
    })
}

fn check_input(input: &PopulationInput<'_>, options: &ScoreOptions) -> Result<(), ScoringError> {
    let n = input.matrix.n_accounts();
    let k = input.matrix.n_kpis();
    if input.kpis.len() != k {
        return Err(ScoringError::LengthMismatch {
            field: "kpis",
            expected: k,
            actual: input.kpis.len(),
        });
    }
    if input.profile_of.len() != n {
        return Err(ScoringError::LengthMismatch {
            field: "profile_of",
            expected: n,
            actual: input.profile_of.len(),
        });
    }
    if let Some(s) = input.signals
        && s.len() != n
    {
        return Err(ScoringError::LengthMismatch {
            field: "signals",
            expected: n,
            actual: s.len(),
        });
    }
    if options.drivers > MAX_DRIVERS {
        return Err(ScoringError::InvalidConfig {
            field: "drivers",
            reason: format!("at most {MAX_DRIVERS}, got {}", options.drivers),
        });
    }
    if n > u32::MAX as usize {
        return Err(ScoringError::InvalidConfig {
            field: "matrix",
            reason: "too many accounts".into(),
        });
    }
    Ok(())
}

/// Members per profile; an error names the first account of an unknown profile.
fn profile_sizes(input: &PopulationInput<'_>) -> Result<Vec<usize>, ScoringError> {
    let n_prof = input.profiles.len();
    let mut sizes = vec![0usize; n_prof];
    for (i, &p) in input.profile_of.iter().enumerate() {
        let slot = sizes
            .get_mut(p as usize)
            .ok_or(ScoringError::UnknownProfile {
                account: i,
                profile: p,
                profiles: n_prof,
            })?;
        *slot += 1;
    }
    Ok(sizes)
}

/// Rows grouped by profile with a counting sort: `members[offsets[p]..offsets[p + 1]]`.
struct Groups {
    offsets: Vec<usize>,
    members: Vec<u32>,
}

impl Groups {
    fn new(input: &PopulationInput<'_>, sizes: &[usize]) -> Self {
        let n_prof = sizes.len();
        let mut offsets = vec![0usize; n_prof + 1];
        for p in 0..n_prof {
            offsets[p + 1] = offsets[p] + sizes[p];
        }
        let mut fill = offsets.clone();
        let mut members = vec![0u32; input.profile_of.len()];
        for (i, &p) in input.profile_of.iter().enumerate() {
            members[fill[p as usize]] = i as u32;
            fill[p as usize] += 1;
        }
        Self { offsets, members }
    }

    #[inline]
    fn of(&self, p: usize) -> &[u32] {
        &self.members[self.offsets[p]..self.offsets[p + 1]]
    }
}

/// The percentile pass: each task ranks a block of adjacent KPI columns.
struct Ranking<'a, 'i> {
    input: &'a PopulationInput<'i>,
    resolved: &'a [Resolved],
    groups: &'a Groups,
    any_fallback: bool,
}

impl Ranking<'_, '_> {
    fn comparative(&self, kc: usize) -> bool {
        matches!(self.input.kpis[kc].mode, ScoreMode::Comparative)
    }

    /// Column-major percentiles and the (profile or [`PORTFOLIO`], KPI) pairs without
    /// variation.
    fn percentiles(&self) -> (Vec<f32>, Vec<(u32, u32)>) {
        let n = self.input.matrix.n_accounts();
        let k = self.input.matrix.n_kpis();
        let mut percentiles = vec![f32::NAN; n * k];
        let mut flat: Vec<(u32, u32)> = Vec::new();
        if n > 0 && k > 0 {
            let found: Vec<Vec<(u32, u32)>> = percentiles
                .par_chunks_mut(n * COLUMN_BLOCK)
                .enumerate()
                .map_init(
                    || -> [Vec<(u64, u32)>; COLUMN_BLOCK] { Default::default() },
                    |bufs, (b, block)| {
                        let mut flat = Vec::new();
                        self.rank_by_profile(bufs, b * COLUMN_BLOCK, block, &mut flat);
                        if self.any_fallback {
                            self.rank_in_portfolio(
                                &mut bufs[0],
                                b * COLUMN_BLOCK,
                                block,
                                &mut flat,
                            );
                        }
                        flat
                    },
                )
                .collect();
            flat = found.concat();
        }
        (percentiles, flat)
    }

    /// Ranks columns `k0..` of `block` within each profile not in fallback.
    #[inline]
    fn rank_by_profile(
        &self,
        bufs: &mut [Vec<(u64, u32)>; COLUMN_BLOCK],
        k0: usize,
        block: &mut [f32],
        flat: &mut Vec<(u32, u32)>,
    ) {
        let n = self.input.matrix.n_accounts();
        let k = self.input.matrix.n_kpis();
        let values = self.input.matrix.values();
        let kb = block.len() / n;
        for p in 0..self.resolved.len() {
            if self.resolved[p].fallback {
                continue;
            }
            for buf in bufs.iter_mut() {
                buf.clear();
            }
            for &i in self.groups.of(p) {
                let at = i as usize * k + k0;
                for (j, &v) in values[at..at + kb].iter().enumerate() {
                    if !v.is_nan() {
                        bufs[j].push((order_key(v), i));
                    }
                }
            }
            for (j, buf) in bufs.iter_mut().enumerate().take(kb) {
                if buf.len() < 2 {
                    // No value, or one that compares with nothing: a comparative KPI is
                    // left missing (an absolute one keeps its neutral percentile,
                    // reported in its drivers).
                    flat.push((p as u32, (k0 + j) as u32));
                    if buf.is_empty() || self.comparative(k0 + j) {
                        continue;
                    }
                }
                let dir = self.input.kpis[k0 + j].direction;
                let col = &mut block[j * n..(j + 1) * n];
                rank_sorted(buf, |i, p| col[i as usize] = orient(p, dir) as f32);
                // rank_sorted leaves buf sorted: no variation = first key = last.
                if buf[0].0 == buf[buf.len() - 1].0 {
                    flat.push((p as u32, (k0 + j) as u32));
                }
            }
        }
    }

    /// Ranks the members of too-small profiles against the whole portfolio.
    #[inline]
    fn rank_in_portfolio(
        &self,
        buf: &mut Vec<(u64, u32)>,
        k0: usize,
        block: &mut [f32],
        flat: &mut Vec<(u32, u32)>,
    ) {
        let n = self.input.matrix.n_accounts();
        let k = self.input.matrix.n_kpis();
        let values = self.input.matrix.values();
        let kb = block.len() / n;
        for j in 0..kb {
            let kc = k0 + j;
            let dir = self.input.kpis[kc].direction;
            buf.clear();
            for i in 0..n {
                let v = values[i * k + kc];
                if !v.is_nan() {
                    buf.push((order_key(v), i as u32));
                }
            }
            buf.sort_unstable_by_key(|e| e.0);
            if buf.len() < 2 || buf[0].0 == buf[buf.len() - 1].0 {
                flat.push((PORTFOLIO, kc as u32));
            }
            if buf.is_empty() || (buf.len() < 2 && self.comparative(kc)) {
                continue;
            }
            let col = &mut block[j * n..(j + 1) * n];
            for p in (0..self.resolved.len()).filter(|&p| self.resolved[p].fallback) {
                for &i in self.groups.of(p) {
                    let v = values[i as usize * k + kc];
                    if !v.is_nan() {
                        let raw = raw_percentile_of_key(buf, order_key(v));
                        col[i as usize] = orient(raw, dir) as f32;
                    }
                }
            }
        }
    }
}

/// Uninformative KPIs per profile (active comparative ones only).
fn mark_uninformative(input: &PopulationInput<'_>, resolved: &mut [Resolved], flat: &[(u32, u32)]) {
    let k = input.matrix.n_kpis();
    let comparative = |kc: usize| matches!(input.kpis[kc].mode, ScoreMode::Comparative);
    let mut none = vec![false; resolved.len() * k];
    let mut portfolio = vec![false; k];
    for &(p, kc) in flat {
        if p == PORTFOLIO {
            portfolio[kc as usize] = true;
        } else {
            none[p as usize * k + kc as usize] = true;
        }
    }
    for (p, r) in resolved.iter_mut().enumerate() {
        r.uninformative = r
            .active
            .iter()
            .filter(|a| comparative(a.k))
            .filter(|a| {
                if r.fallback {
                    portfolio[a.k]
                } else {
                    none[p * k + a.k]
                }
            })
            .map(|a| a.k as u32)
            .collect();
    }
}

/// Raw pass: each account's raw category means, kept in its result slot until the
/// final pass overwrites it.
fn raw_pass(input: &PopulationInput<'_>, resolved: &[Resolved], pct: &[f32]) -> Vec<Packed> {
    let n = input.matrix.n_accounts();
    let k = input.matrix.n_kpis();
    let values = input.matrix.values();
    let mut results = vec![Packed::EMPTY; n];
    results
        .par_iter_mut()
        .enumerate()
        .for_each_init(Vec::new, |kpi_scores, (i, res)| {
            let r = &resolved[input.profile_of[i] as usize];
            let row = &values[i * k..(i + 1) * k];
            let p_of = |kc: usize| f64::from(pct[kc * n + i]);
            let (sum, wsum, _) = accumulate(input.kpis, r, row, &p_of, kpi_scores);
            res.categories = raw_means(&sum, &wsum).map(|x| x as f32);
        });
    results
}

/// Calibration: per category, mid-rank percentile of each raw mean within the
/// comparison population (column-major, category x account), and the population's
/// median raw mean per category and profile.
fn calibrate(
    results: &[Packed],
    resolved: &[Resolved],
    groups: &Groups,
    any_fallback: bool,
    n: usize,
) -> (Vec<f32>, Vec<Vec<f64>>) {
    let n_prof = resolved.len();
    let mut calibrated = vec![f32::NAN; 5 * n];
    if n == 0 {
        return (calibrated, vec![vec![f64::NAN; n_prof]; 5]);
    }
    let centers = calibrated
        .par_chunks_mut(n)
        .enumerate()
        .map(|(c, col)| {
            let raw = |i: u32| results[i as usize].categories[c];
            let mut centers = vec![f64::NAN; n_prof];
            let mut buf: Vec<(u64, u32)> = Vec::new();
            for p in 0..n_prof {
                if resolved[p].fallback {
                    continue;
                }
                buf.clear();
                buf.extend(
                    groups
                        .of(p)
                        .iter()
                        .filter(|&&i| !raw(i).is_nan())
                        .map(|&i| (order_key(f64::from(raw(i))), i)),
                );
                rank_sorted(&mut buf, |i, q| col[i as usize] = q as f32);
                centers[p] = median(&buf, raw);
            }
            if any_fallback {
                buf.clear();
                buf.extend(
                    (0..n as u32)
                        .filter(|&i| !raw(i).is_nan())
                        .map(|i| (order_key(f64::from(raw(i))), i)),
                );
                buf.sort_unstable_by_key(|e| e.0);
                let m = median(&buf, raw);
                for p in (0..n_prof).filter(|&p| resolved[p].fallback) {
                    centers[p] = m;
                    for &i in groups.of(p) {
                        let x = raw(i);
                        if !x.is_nan() {
                            let q = raw_percentile_of_key(&buf, order_key(f64::from(x)));
                            col[i as usize] = q as f32;
                        }
                    }
                }
            }
            centers
        })
        .collect();
    (calibrated, centers)
}

/// Final pass: scores into `results` and the top `half` drivers each way per account;
/// no allocation per account (the KPI-score buffer is per thread).
fn final_pass(
    input: &PopulationInput<'_>,
    resolved: &[Resolved],
    pct: &[f32],
    cal: &[f32],
    half: usize,
    results: &mut [Packed],
) -> Vec<Driver> {
    let n = input.matrix.n_accounts();
    let k = input.matrix.n_kpis();
    let values = input.matrix.values();
    let slots = (2 * half).max(1);
    let mut drivers = vec![EMPTY_DRIVER; n * slots];
    results
        .par_iter_mut()
        .zip(drivers.par_chunks_mut(slots))
        .enumerate()
        .for_each_init(Vec::new, |kpi_scores, (i, (res, dslots))| {
            let r = &resolved[input.profile_of[i] as usize];
            let row = &values[i * k..(i + 1) * k];
            let p_of = |kc: usize| f64::from(pct[kc * n + i]);
            let cal_of = |c: usize| f64::from(cal[c * n + i]);
            let signals = input.signals.map_or(AccountSignals::default(), |sg| sg[i]);
            let e = evaluate(input.kpis, r, row, p_of, cal_of, signals, kpi_scores);
            *res = Packed::from(&e.score);
            if half == 0 || e.score.score.is_none() {
                return;
            }
            let (down, up) = dslots.split_at_mut(half);
            let (mut n_down, mut n_up) = (0usize, 0usize);
            for (a, &ks) in r.active.iter().zip(kpi_scores.iter()) {
                if ks.is_nan() {
                    continue;
                }
                let c = e.contribution(a.slot, a.w, ks);
                if c == 0.0 {
                    continue;
                }
                let d = Driver {
                    kpi: a.k as u32,
                    contribution: c as f32,
                    percentile: p_of(a.k) as f32,
                    kpi_score: ks as f32,
                };
                if c < 0.0 {
                    insert_top(down, &mut n_down, d, |a, b| a.contribution < b.contribution);
                } else {
                    insert_top(up, &mut n_up, d, |a, b| a.contribution > b.contribution);
                }
            }
        });
    drivers
}

/// Median of the raw means behind `sorted` (sorted by key); NaN when empty.
fn median(sorted: &[(u64, u32)], raw: impl Fn(u32) -> f32) -> f64 {
    let m = sorted.len();
    if m == 0 {
        return f64::NAN;
    }
    let a = f64::from(raw(sorted[(m - 1) / 2].1));
    let b = f64::from(raw(sorted[m / 2].1));
    a + (b - a) / 2.0
}

/// Keeps `slots[..*len]` sorted by `better` (ties: lower KPI index first) with at most
/// `slots.len()` entries; O(len) per insert, no allocation.
#[inline]
fn insert_top(
    slots: &mut [Driver],
    len: &mut usize,
    d: Driver,
    better: impl Fn(&Driver, &Driver) -> bool,
) {
    let cap = slots.len();
    if *len == cap && !better(&d, &slots[cap - 1]) {
        return;
    }
    // Position: after every entry that is better or equal (equal = earlier KPI).
    let pos = slots[..*len]
        .iter()
        .position(|e| better(&d, e))
        .unwrap_or(*len);
    let end = (*len).min(cap - 1);
    slots.copy_within(pos..end, pos + 1);
    slots[pos] = d;
    *len = (*len + 1).min(cap);
}
