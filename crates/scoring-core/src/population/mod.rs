//! Scoring a whole population in one call (docs/scoring.md §2-7, §9).
//!
//! 1. Accounts are grouped by profile (counting sort, O(n)).
//! 2. For every KPI column (in parallel), each profile's present values are sorted and
//!    given mid-rank percentiles, O(n log n); members of a profile smaller than its
//!    `min_population` are ranked against the whole portfolio instead and flagged.
//!    A KPI with no variation in the comparison population (fewer than 2 present
//!    values, or all present values equal) is reported as uninformative; with fewer
//!    than 2 present values it is treated as missing.
//! 3. For every account (in parallel): the raw category means (weighted means of KPI
//!    scores, missing KPIs skipped).
//! 4. For every category (in parallel): the calibrated category score, 10 x the
//!    mid-rank percentile of the account's raw category mean among the same comparison
//!    population (a comparative score of comparative scores), and the population's
//!    median raw mean (the centre of the explanations).
//! 5. For every account (in parallel): usage adjustments (momentum, webhook), the
//!    profile score, coverage and the top drivers, with no allocation per account.
//!
//! Memory beyond the input matrix: one `f32` percentile per matrix cell (half the
//! matrix), five `f32` calibrated category percentiles per account, the per-account
//! results and the drivers.

use crate::catalogue::{Category, KpiDef, ScoreMode};
use crate::compute::AccountSignals;
use crate::percentile::orient;
use crate::{KpiMatrix, ScoringError};

mod passes;
mod types;

pub use passes::score_population;
pub use types::*;

/// Results of [`score_population`], in input row order.
#[derive(Debug, Clone)]
pub struct PopulationScores {
    n: usize,
    n_kpis: usize,
    slots: usize,
    results: Vec<Packed>,
    drivers: Vec<Driver>,
    /// Column-major (KPI x account) direction-adjusted percentiles, NaN = missing.
    percentiles: Vec<f32>,
    /// Column-major (category x account) calibrated category percentiles (0..1), NaN =
    /// the category has no present KPI.
    calibrated: Vec<f32>,
    /// The profiles as resolved for this run (for [`explain_account`]).
    resolved: Vec<Resolved>,
}

impl PopulationScores {
    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether there are no accounts.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Result of account `i` (panics if `i >= len()`). Scores are stored as `f32`
    /// (7 significant digits, ample for a 0..10 score) to keep memory low.
    pub fn account(&self, i: usize) -> AccountScore {
        self.results[i].unpack()
    }

    /// All results in row order.
    pub fn results(&self) -> impl ExactSizeIterator<Item = AccountScore> + '_ {
        self.results.iter().map(Packed::unpack)
    }

    /// The KPIs pulling account `i` down most (most negative contribution first).
    pub fn drivers_down(&self, i: usize) -> &[Driver] {
        let s = &self.drivers[i * self.slots..i * self.slots + self.slots / 2];
        &s[..s.iter().take_while(|d| d.kpi != u32::MAX).count()]
    }

    /// The KPIs pulling account `i` up most (most positive contribution first).
    pub fn drivers_up(&self, i: usize) -> &[Driver] {
        let s = &self.drivers[i * self.slots + self.slots / 2..(i + 1) * self.slots];
        &s[..s.iter().take_while(|d| d.kpi != u32::MAX).count()]
    }

    /// Direction-adjusted peer percentiles of KPI `k` for every account in row order
    /// (NaN = missing): the learner's feature column, without copying.
    pub fn percentile_column(&self, k: usize) -> Option<&[f32]> {
        (k < self.n_kpis).then(|| &self.percentiles[k * self.n..(k + 1) * self.n])
    }

    /// Direction-adjusted peer percentile (0..1) of KPI `k` for account `i`; `None`
    /// when missing. These are the learner's KPI features.
    pub fn percentile(&self, i: usize, k: usize) -> Option<f64> {
        if i >= self.n || k >= self.n_kpis {
            return None;
        }
        let p = self.percentiles[k * self.n + i];
        (!p.is_nan()).then_some(f64::from(p))
    }

    /// KPI columns that count in profile `profile` (weight above 0, scored
    /// comparatively) but carry no comparative information in its comparison
    /// population (the profile, or the whole portfolio for a profile in fallback): fewer
    /// than 2 present values (then treated as missing) or all present values equal
    /// (then every member has percentile 0.5, which the calibration of the category
    /// scores makes neutral). Ascending; empty for an unknown profile.
    pub fn uninformative_kpis(&self, profile: usize) -> &[u32] {
        self.resolved
            .get(profile)
            .map_or(&[][..], |r| r.uninformative.as_slice())
    }

    /// Calibrated score (0..10, before the usage adjustment) of category `c` (in
    /// [`Category::WEIGHTED`] order) for account `i`: 10 x the mid-rank percentile of the
    /// account's raw category mean among its comparison population. `None` when the
    /// category has no present KPI. The raw mean itself is in [`explain_account`].
    pub fn calibrated_category(&self, i: usize, c: usize) -> Option<f64> {
        if i >= self.n || c >= 5 {
            return None;
        }
        let p = self.calibrated[c * self.n + i];
        (!p.is_nan()).then_some(10.0 * f64::from(p))
    }
}

/// Compact storage of an [`AccountScore`] (36 bytes instead of 112): NaN = `None`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Packed {
    score: f32,
    categories: [f32; 5],
    usage_adjustment: f32,
    coverage: Coverage,
    fallback: bool,
}

impl Packed {
    const EMPTY: Packed = Packed {
        score: f32::NAN,
        categories: [f32::NAN; 5],
        usage_adjustment: 0.0,
        coverage: Coverage {
            present: 0,
            total: 0,
        },
        fallback: false,
    };

    fn from(s: &AccountScore) -> Self {
        let f = |x: Option<f64>| x.map_or(f32::NAN, |v| v as f32);
        Packed {
            score: f(s.score),
            categories: s.categories.map(f),
            usage_adjustment: s.usage_adjustment as f32,
            coverage: s.coverage,
            fallback: s.fallback,
        }
    }

    fn unpack(&self) -> AccountScore {
        let f = |x: f32| (!x.is_nan()).then_some(f64::from(x));
        AccountScore {
            score: f(self.score),
            categories: self.categories.map(f),
            usage_adjustment: f64::from(self.usage_adjustment),
            coverage: self.coverage,
            fallback: self.fallback,
        }
    }
}

/// A KPI that counts in a profile (weight above 0), resolved once per profile.
#[derive(Debug, Clone, Copy)]
struct Active {
    /// KPI column.
    k: usize,
    /// Category position (0..5), or [`FIELD_SLOT`] for a custom score field.
    slot: usize,
    /// Weight within its category (or in the profile score for a score field).
    w: f64,
}

/// Slot of the custom score fields in [`Eval::factor`].
const FIELD_SLOT: usize = 5;

/// Per-profile configuration resolved once.
#[derive(Debug, Clone)]
struct Resolved {
    cat: [f64; 5],
    active: Vec<Active>,
    trend_weight: f64,
    fallback: bool,
    /// Active comparative KPIs with no variation in the comparison population.
    uninformative: Vec<u32>,
    /// Median raw category mean of the comparison population, per category (NaN when
    /// no member has the category): the centre of the explanations.
    center: [f64; 5],
}

fn check_weight(field: impl FnOnce() -> String, w: f64) -> Result<(), ScoringError> {
    if w.is_finite() && w >= 0.0 {
        Ok(())
    } else {
        Err(ScoringError::InvalidWeight {
            field: field(),
            value: w,
        })
    }
}

fn resolve(input: &PopulationInput<'_>, sizes: &[usize]) -> Result<Vec<Resolved>, ScoringError> {
    let k = input.kpis.len();
    input
        .profiles
        .iter()
        .enumerate()
        .map(|(p, cfg)| {
            let cat = cfg.category_weights.as_array();
            for (c, w) in cat.iter().enumerate() {
                check_weight(
                    || {
                        format!(
                            "profiles[{p}].category_weights.{}",
                            Category::WEIGHTED[c].as_str()
                        )
                    },
                    *w,
                )?;
            }
            check_weight(|| format!("profiles[{p}].trend_weight"), cfg.trend_weight)?;
            if let Some(w) = &cfg.kpi_weights
                && w.len() != k
            {
                return Err(ScoringError::LengthMismatch {
                    field: "kpi_weights",
                    expected: k,
                    actual: w.len(),
                });
            }
            let mut active = Vec::new();
            for (j, def) in input.kpis.iter().enumerate() {
                let w = cfg.kpi_weights.as_ref().map_or(1.0, |ws| ws[j]);
                check_weight(|| format!("profiles[{p}].kpi_weights[{j}]"), w)?;
                let slot = def.category.index().unwrap_or(FIELD_SLOT);
                // A KPI counts when it and its category both weigh something.
                if w > 0.0 && (slot == FIELD_SLOT || cat[slot] > 0.0) {
                    active.push(Active { k: j, slot, w });
                }
            }
            Ok(Resolved {
                cat,
                active,
                trend_weight: cfg.trend_weight,
                fallback: sizes[p] < cfg.min_population,
                uninformative: Vec::new(),
                center: [f64::NAN; 5],
            })
        })
        .collect()
}

/// KPI score 0..10 of a present value.
#[inline]
fn kpi_score(def: &KpiDef, value: f64, percentile: f64) -> f64 {
    match def.mode {
        ScoreMode::Comparative => 10.0 * percentile,
        ScoreMode::Absolute { min, max } => {
            let x = if max > min {
                ((value - min) / (max - min)).clamp(0.0, 1.0)
            } else {
                0.5
            };
            10.0 * orient(x, def.direction)
        }
    }
}

/// Weighted sums of the present KPI scores per slot (5 categories + score fields),
/// the sums of their weights and the number of present KPIs. Writes the KPI score of
/// every active KPI into `kpi_scores` (NaN when missing). Shared by the raw pass and
/// [`evaluate`] so that both see the same presence and the same raw means.
#[inline]
fn accumulate(
    kpis: &[KpiDef],
    r: &Resolved,
    row: &[f64],
    pct: &impl Fn(usize) -> f64,
    kpi_scores: &mut Vec<f64>,
) -> ([f64; 6], [f64; 6], u16) {
    kpi_scores.clear();
    let mut sum = [0.0f64; 6];
    let mut wsum = [0.0f64; 6];
    let mut present = 0u16;
    for a in &r.active {
        let v = row[a.k];
        let def = &kpis[a.k];
        // A comparative KPI without a percentile (missing, or fewer than 2 present values
        // in the comparison population) is missing.
        let p = pct(a.k);
        if v.is_nan() || (matches!(def.mode, ScoreMode::Comparative) && p.is_nan()) {
            kpi_scores.push(f64::NAN);
            continue;
        }
        let s = kpi_score(def, v, p);
        kpi_scores.push(s);
        sum[a.slot] += a.w * s;
        wsum[a.slot] += a.w;
        present = present.saturating_add(1);
    }
    (sum, wsum, present)
}

/// Raw category means (weighted means of the present KPI scores), NaN when absent.
fn raw_means(sum: &[f64; 6], wsum: &[f64; 6]) -> [f64; 5] {
    std::array::from_fn(|c| {
        if wsum[c] > 0.0 {
            sum[c] / wsum[c]
        } else {
            f64::NAN
        }
    })
}

/// Below this distance (in KPI-score points) between an account's raw category mean and
/// the population's median, the KPIs' own deviations no longer explain the calibrated
/// deviation and it is shared out by weight (keeps the attribution well conditioned).
const MIN_CENTERED_DEVIATION: f64 = 0.05;

/// One account evaluated: the scores and what turns a KPI score s into its
/// contribution: `factor[slot] x w x (gain[slot] x (s - center[slot]) + share[slot])`.
struct Eval {
    score: AccountScore,
    /// W_c / (den x sum of present KPI weights of c); 1 / den for score fields.
    factor: [f64; 6],
    /// Calibrated deviation / raw deviation from the centre (1 for score fields).
    gain: [f64; 6],
    /// Median raw mean of the category (5 for score fields).
    center: [f64; 6],
    /// Calibrated deviation shared out by weight when the raw deviation is too small.
    share: [f64; 6],
    /// Weight of the usage category / den (for the adjustment's contribution).
    usage_share: f64,
}

impl Eval {
    /// Contribution of a present KPI of weight `w` in `slot` with KPI score `s`.
    #[inline]
    fn contribution(&self, slot: usize, w: f64, s: f64) -> f64 {
        self.factor[slot] * w * (self.gain[slot] * (s - self.center[slot]) + self.share[slot])
    }
}

/// Evaluates one account from its KPI percentiles and its calibrated category
/// percentiles (`cal(c)`, 0..1); writes the KPI score of every active KPI into
/// `kpi_scores` (NaN when missing). Shared by the hot loop and [`explain_account`] so
/// they agree.
#[inline]
fn evaluate(
    kpis: &[KpiDef],
    r: &Resolved,
    row: &[f64],
    pct: impl Fn(usize) -> f64,
    cal: impl Fn(usize) -> f64,
    signals: AccountSignals,
    kpi_scores: &mut Vec<f64>,
) -> Eval {
    let (sum, wsum, present) = accumulate(kpis, r, row, &pct, kpi_scores);
    let raw = raw_means(&sum, &wsum);
    let mut categories: CategoryScores = [None; 5];
    let mut gain = [1.0f64; 6];
    let mut center = [5.0f64; 6];
    let mut share = [0.0f64; 6];
    for c in 0..5 {
        if raw[c].is_nan() {
            continue;
        }
        let q = cal(c);
        // The calibration pass saw the same presence; if it did not (cannot happen), the
        // raw mean stands in.
        let calibrated = if q.is_nan() { raw[c] } else { 10.0 * q };
        categories[c] = Some(calibrated);
        // Attribution of calibrated - 5 to the category's KPIs: in proportion to their
        // deviation from the population's median raw mean when the account's raw mean is
        // clearly off the median (then both deviations have the same sign), else by weight.
        let dev = calibrated - 5.0;
        let raw_dev = raw[c] - r.center[c];
        let g = dev / raw_dev;
        if raw_dev.abs() >= MIN_CENTERED_DEVIATION && g.is_finite() && g >= 0.0 {
            gain[c] = g;
            center[c] = r.center[c];
        } else {
            gain[c] = 0.0;
            center[c] = 0.0;
            share[c] = dev;
        }
    }
    let mut usage_adjustment = 0.0;
    if let Some(u) = categories[0] {
        let adj =
            signals.momentum.map_or(0.0, |m| m * r.trend_weight) + signals.webhook.unwrap_or(0.0);
        let adjusted = (u + adj).clamp(0.0, 10.0);
        usage_adjustment = adjusted - u;
        categories[0] = Some(adjusted);
    }
    // Score fields are components of their own: their weighted sum joins the categories'.
    let (mut num, mut den) = (sum[FIELD_SLOT], wsum[FIELD_SLOT]);
    for (v, w) in categories.iter().zip(r.cat) {
        if let Some(v) = v {
            num += w * v;
            den += w;
        }
    }
    let score = (den > 0.0).then(|| (num / den).clamp(0.0, 10.0));
    let mut factor = [0.0f64; 6];
    let mut usage_share = 0.0;
    if den > 0.0 {
        for c in 0..5 {
            if wsum[c] > 0.0 {
                factor[c] = r.cat[c] / (den * wsum[c]);
            }
        }
        factor[FIELD_SLOT] = 1.0 / den;
        if categories[0].is_some() {
            usage_share = r.cat[0] / den;
        }
    }
    Eval {
        score: AccountScore {
            score,
            categories,
            usage_adjustment,
            coverage: Coverage {
                present,
                total: r.active.len().min(u16::MAX as usize) as u16,
            },
            fallback: r.fallback,
        },
        factor,
        gain,
        center,
        share,
        usage_share,
    }
}

/// One KPI's part in an account's score.
#[derive(Debug, Clone, PartialEq)]
pub struct KpiContribution {
    /// KPI column.
    pub kpi: usize,
    /// KPI name (snapshots are compared by name, which survives catalogue changes).
    pub name: String,
    /// Its value.
    pub value: f64,
    /// Direction-adjusted peer percentile (0..1).
    pub percentile: f64,
    /// KPI score 0..10.
    pub kpi_score: f64,
    /// Effective weight in the profile score (the effective weights of an account's
    /// present components sum to 1).
    pub weight: f64,
    /// weight x (KPI score - 5), in score points.
    pub contribution: f64,
}

/// Full breakdown of one account's score. `score = 5 + sum(contribution) +
/// adjustment_contribution` holds exactly (up to rounding).
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The scores, as in [`PopulationScores::account`].
    pub score: AccountScore,
    /// Every present KPI with a weight, most negative contribution first.
    pub contributions: Vec<KpiContribution>,
    /// Share of the score coming from the usage adjustment (momentum, webhook):
    /// usage weight / sum of weights x usage adjustment.
    pub adjustment_contribution: f64,
}

/// Full breakdown of account `i` (for "explain" requests and snapshots). `scores` must
/// come from [`score_population`] on the same `input`.
pub fn explain_account(
    input: &PopulationInput<'_>,
    scores: &PopulationScores,
    i: usize,
) -> Result<Explanation, ScoringError> {
    let n = input.matrix.n_accounts();
    if i >= n || scores.len() != n || input.profile_of.len() != n {
        return Err(ScoringError::LengthMismatch {
            field: "account",
            expected: n,
            actual: i,
        });
    }
    let p = input.profile_of[i] as usize;
    // The profiles as resolved by score_population (weights, fallback), so the
    // explanation matches the stored result; O(KPIs) per call.
    let r = scores.resolved.get(p).ok_or(ScoringError::UnknownProfile {
        account: i,
        profile: p as u32,
        profiles: scores.resolved.len(),
    })?;
    let row = input.matrix.row(i);
    let p_of = |kc: usize| scores.percentile(i, kc).unwrap_or(f64::NAN);
    let cal_of = |c: usize| f64::from(scores.calibrated[c * n + i]);
    let signals = input.signals.map_or(AccountSignals::default(), |sg| sg[i]);
    let mut kpi_scores = Vec::with_capacity(r.active.len());
    let e = evaluate(input.kpis, r, row, p_of, cal_of, signals, &mut kpi_scores);
    let mut contributions = Vec::new();
    if e.score.score.is_some() {
        for (a, &ks) in r.active.iter().zip(&kpi_scores) {
            if ks.is_nan() {
                continue;
            }
            contributions.push(KpiContribution {
                kpi: a.k,
                name: input.kpis[a.k].name.to_string(),
                value: row[a.k],
                percentile: p_of(a.k),
                kpi_score: ks,
                weight: e.factor[a.slot] * a.w,
                contribution: e.contribution(a.slot, a.w, ks),
            });
        }
    }
    contributions.sort_by(|a, b| {
        a.contribution
            .total_cmp(&b.contribution)
            .then(a.kpi.cmp(&b.kpi))
    });
    let adjustment_contribution = e.usage_share * e.score.usage_adjustment;
    Ok(Explanation {
        score: e.score,
        contributions,
        adjustment_contribution,
    })
}
