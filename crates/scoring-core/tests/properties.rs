//! Property tests of the comparative scoring (proptest).

use std::borrow::Cow;

use proptest::prelude::*;
use vitals_scoring_core::*;

const CATS: [Category; 6] = [
    Category::Usage,
    Category::Conversations,
    Category::Pulse,
    Category::Contract,
    Category::Custom,
    Category::ScoreField,
];

/// A random scoring problem: KPI definitions, a matrix, profiles, assignments, signals.
#[derive(Debug, Clone)]
struct Problem {
    kpis: Vec<KpiDef>,
    matrix: KpiMatrix,
    profile_of: Vec<u32>,
    profiles: Vec<ProfileConfig>,
    signals: Vec<AccountSignals>,
}

impl Problem {
    fn input(&self) -> PopulationInput<'_> {
        PopulationInput {
            kpis: &self.kpis,
            matrix: &self.matrix,
            profile_of: &self.profile_of,
            profiles: &self.profiles,
            signals: Some(&self.signals),
        }
    }
}

fn kpi_def(i: usize, cat: usize, lower: bool) -> KpiDef {
    let category = CATS[cat];
    let mode = if category == Category::ScoreField {
        ScoreMode::Absolute { min: 1.0, max: 5.0 }
    } else {
        ScoreMode::Comparative
    };
    KpiDef {
        name: Cow::Owned(format!("k{i}")),
        category,
        direction: if lower {
            Direction::LowerIsBetter
        } else {
            Direction::HigherIsBetter
        },
        mode,
        trend: false,
        doc: Cow::Borrowed(""),
    }
}

fn problem() -> impl Strategy<Value = Problem> {
    (1usize..30, 1usize..7, 1usize..4).prop_flat_map(|(n, k, np)| {
        let defs = prop::collection::vec((0usize..6, any::<bool>()), k);
        // Small integer values make ties frequent; ~20 % missing.
        let cell = prop_oneof![1 => Just(None), 4 => (0i32..8).prop_map(|v| Some(f64::from(v)))];
        let cells = prop::collection::vec(cell, n * k);
        let weight = prop_oneof![1 => Just(0.0), 4 => 0.1f64..5.0];
        let profile = (
            prop::collection::vec(weight.clone(), 5),
            prop::collection::vec(weight, k),
            0usize..12,
            0.0f64..3.0,
        )
            .prop_map(|(cw, kw, min_population, trend_weight)| ProfileConfig {
                category_weights: CategoryWeights {
                    usage: cw[0],
                    conversations: cw[1],
                    pulse: cw[2],
                    contract: cw[3],
                    custom: cw[4],
                },
                kpi_weights: Some(kw),
                min_population,
                trend_weight,
            });
        let profiles = prop::collection::vec(profile, np);
        let profile_of = prop::collection::vec(0u32..np as u32, n);
        let signal = (
            prop::option::of(-1.0f64..=1.0),
            prop::option::of(1.0f64..=5.0),
        )
            .prop_map(|(m, w)| AccountSignals {
                momentum: m,
                webhook: w.map(webhook_points),
            });
        let signals = prop::collection::vec(signal, n);
        (defs, cells, profiles, profile_of, signals).prop_map(
            move |(defs, cells, profiles, profile_of, signals)| {
                let kpis: Vec<KpiDef> = defs
                    .iter()
                    .enumerate()
                    .map(|(i, &(c, l))| kpi_def(i, c, l))
                    .collect();
                let values = cells.iter().map(|v| v.unwrap_or(f64::NAN)).collect();
                let matrix = KpiMatrix::from_row_major(n, k, values).unwrap();
                Problem {
                    kpis,
                    matrix,
                    profile_of,
                    profiles,
                    signals,
                }
            },
        )
    })
}

fn opts() -> ScoreOptions {
    ScoreOptions { drivers: 3 }
}

fn in_range(x: f64) -> bool {
    (0.0..=10.0).contains(&x)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn scores_stay_in_0_10(p in problem()) {
        let s = score_population(&p.input(), &opts()).unwrap();
        for (i, r) in s.results().enumerate() {
            if let Some(x) = r.score { prop_assert!(in_range(x), "score {x}"); }
            for c in r.categories.iter().flatten() { prop_assert!(in_range(*c), "category {c}"); }
            prop_assert!(r.coverage.present <= r.coverage.total);
            for d in s.drivers_down(i).iter().chain(s.drivers_up(i)) {
                prop_assert!(in_range(f64::from(d.kpi_score)));
                prop_assert!((0.0..=1.0).contains(&d.percentile));
            }
            for k in 0..p.kpis.len() {
                if let Some(q) = s.percentile(i, k) { prop_assert!(q > 0.0 && q < 1.0); }
            }
        }
    }

    #[test]
    fn contributions_add_up_to_the_score(p in problem()) {
        let input = p.input();
        let s = score_population(&input, &opts()).unwrap();
        for i in 0..p.matrix.n_accounts() {
            let e = explain_account(&input, &s, i).unwrap();
            if let Some(score) = e.score.score {
                let sum: f64 = e.contributions.iter().map(|c| c.contribution).sum();
                prop_assert!((5.0 + sum + e.adjustment_contribution - score).abs() < 1e-9);
                // The stored drivers are the extremes of the full list.
                if let Some(d) = s.drivers_down(i).first() {
                    prop_assert!((f64::from(d.contribution) - e.contributions[0].contribution).abs() < 1e-5);
                }
            }
        }
    }

    #[test]
    fn a_better_value_never_lowers_the_score(p in problem(), pick in any::<prop::sample::Index>(), delta in 0.5f64..5.0) {
        let n = p.matrix.n_accounts();
        let k = p.kpis.len();
        let cell = pick.index(n * k);
        let (i, kc) = (cell / k, cell % k);
        prop_assume!(p.matrix.get(i, kc).is_some());
        let before = score_population(&p.input(), &opts()).unwrap();
        let v = p.matrix.get(i, kc).unwrap();
        let better = match p.kpis[kc].direction {
            Direction::HigherIsBetter => v + delta,
            Direction::LowerIsBetter => v - delta,
        };
        let mut q = p.clone();
        q.matrix.set(i, kc, Some(better));
        let after = score_population(&q.input(), &opts()).unwrap();
        // The score exists or not independently of the value (only presence matters).
        match (before.account(i).score, after.account(i).score) {
            (Some(b), Some(a)) => prop_assert!(a >= b - 1e-9, "{b} -> {a}"),
            (None, None) => {}
            (b, a) => prop_assert!(false, "score appeared or vanished: {b:?} -> {a:?}"),
        }
        for (cb, ca) in before.account(i).categories.iter().zip(after.account(i).categories) {
            if let (Some(cb), Some(ca)) = (cb, ca) { prop_assert!(ca >= cb - 1e-9); }
        }
        if let (Some(pb), Some(pa)) = (before.percentile(i, kc), after.percentile(i, kc)) {
            prop_assert!(pa >= pb);
        }
    }

    #[test]
    fn results_do_not_depend_on_input_order(p in problem(), seed in any::<u64>()) {
        let n = p.matrix.n_accounts();
        let k = p.kpis.len();
        // A deterministic shuffle from the seed (Fisher-Yates with an LCG).
        let mut perm: Vec<usize> = (0..n).collect();
        let mut x = seed | 1;
        for j in (1..n).rev() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            perm.swap(j, (x >> 33) as usize % (j + 1));
        }
        let mut values = Vec::with_capacity(n * k);
        for &src in &perm { values.extend_from_slice(p.matrix.row(src)); }
        let q = Problem {
            kpis: p.kpis.clone(),
            matrix: KpiMatrix::from_row_major(n, k, values).unwrap(),
            profile_of: perm.iter().map(|&s| p.profile_of[s]).collect(),
            profiles: p.profiles.clone(),
            signals: perm.iter().map(|&s| p.signals[s]).collect(),
        };
        let a = score_population(&p.input(), &opts()).unwrap();
        let b = score_population(&q.input(), &opts()).unwrap();
        for (dst, &src) in perm.iter().enumerate() {
            prop_assert_eq!(a.account(src), b.account(dst));
            prop_assert_eq!(a.drivers_down(src), b.drivers_down(dst));
            prop_assert_eq!(a.drivers_up(src), b.drivers_up(dst));
        }
    }

    #[test]
    fn ties_share_a_percentile(p in problem()) {
        let s = score_population(&p.input(), &opts()).unwrap();
        let n = p.matrix.n_accounts();
        for kc in 0..p.kpis.len() {
            for i in 0..n {
                for j in (i + 1)..n {
                    let same_group = p.profile_of[i] == p.profile_of[j];
                    if same_group && p.matrix.get(i, kc).is_some() && p.matrix.get(i, kc) == p.matrix.get(j, kc) {
                        prop_assert_eq!(s.percentile(i, kc), s.percentile(j, kc));
                    }
                }
            }
        }
    }

    #[test]
    fn an_all_missing_kpi_changes_nothing(p in problem(), cat in 0usize..6, lower in any::<bool>(), w in 0.1f64..5.0) {
        let n = p.matrix.n_accounts();
        let k = p.kpis.len();
        let mut values = Vec::with_capacity(n * (k + 1));
        for i in 0..n {
            values.extend_from_slice(p.matrix.row(i));
            values.push(f64::NAN);
        }
        let mut kpis = p.kpis.clone();
        kpis.push(kpi_def(k, cat, lower));
        let profiles: Vec<ProfileConfig> = p.profiles.iter().map(|c| {
            let mut c = c.clone();
            if let Some(kw) = c.kpi_weights.as_mut() { kw.push(w); }
            c
        }).collect();
        let q = Problem { kpis, matrix: KpiMatrix::from_row_major(n, k + 1, values).unwrap(), profiles, ..p.clone() };
        let a = score_population(&p.input(), &opts()).unwrap();
        let b = score_population(&q.input(), &opts()).unwrap();
        for i in 0..n {
            let (ra, rb) = (a.account(i), b.account(i));
            prop_assert_eq!(ra.score, rb.score);
            prop_assert_eq!(ra.categories, rb.categories);
            prop_assert_eq!(ra.coverage.present, rb.coverage.present);
            prop_assert_eq!(a.drivers_down(i), b.drivers_down(i));
            prop_assert_eq!(a.drivers_up(i), b.drivers_up(i));
        }
    }

    #[test]
    fn scorecard_mapping_is_clamped_and_monotone(worst in -100.0f64..100.0, span in prop_oneof![-50.0f64..-0.01, 0.01f64..50.0], x in -300.0f64..300.0, dx in 0.0f64..10.0) {
        let m = ScoreMapping::new(worst, worst + span).unwrap();
        let a = m.score(x).unwrap();
        prop_assert!(in_range(a));
        // Moving towards "best" never lowers the score.
        let towards_best = if span > 0.0 { x + dx } else { x - dx };
        prop_assert!(m.score(towards_best).unwrap() >= a);
    }

    #[test]
    fn distribution_is_consistent(scores in prop::collection::vec(0.0f64..=10.0, 0..200)) {
        let d = distribution(scores.iter().copied(), &BandThresholds::default());
        prop_assert_eq!(d.histogram.iter().sum::<u64>() as usize, scores.len());
        prop_assert_eq!(d.bands.iter().sum::<u64>() as usize, scores.len());
        if let (Some(p10), Some(med), Some(p90)) = (d.p10, d.median, d.p90) {
            prop_assert!(p10 <= med && med <= p90);
        }
    }
}
