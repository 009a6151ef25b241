//! Comparative scoring worked by hand (the arithmetic is in the comments).

use std::borrow::Cow;
use vitals_scoring_core::*;

fn def(name: &'static str, category: Category, direction: Direction, mode: ScoreMode) -> KpiDef {
    KpiDef {
        name: Cow::Borrowed(name),
        category,
        direction,
        mode,
        trend: false,
        doc: Cow::Borrowed(""),
    }
}

fn kpis() -> Vec<KpiDef> {
    vec![
        def(
            "k0",
            Category::Usage,
            Direction::HigherIsBetter,
            ScoreMode::Comparative,
        ),
        def(
            "k1",
            Category::Usage,
            Direction::LowerIsBetter,
            ScoreMode::Comparative,
        ),
        def(
            "k2",
            Category::Pulse,
            Direction::HigherIsBetter,
            ScoreMode::Comparative,
        ),
        def(
            "k3",
            Category::ScoreField,
            Direction::HigherIsBetter,
            ScoreMode::Absolute { min: 1.0, max: 5.0 },
        ),
    ]
}

fn matrix() -> KpiMatrix {
    KpiMatrix::from_rows(&[
        vec![Some(10.0), Some(5.0), Some(3.0), Some(5.0)],
        vec![Some(20.0), Some(5.0), None, None],
        vec![Some(30.0), Some(1.0), Some(4.0), Some(1.0)],
        vec![None, Some(9.0), Some(2.0), Some(3.0)],
    ])
    .unwrap()
}

fn profile() -> ProfileConfig {
    ProfileConfig {
        category_weights: CategoryWeights {
            usage: 2.0,
            conversations: 1.0,
            pulse: 1.0,
            contract: 1.0,
            custom: 1.0,
        },
        kpi_weights: Some(vec![1.0, 3.0, 1.0, 2.0]),
        min_population: 1,
        trend_weight: 1.0,
    }
}

#[track_caller]
fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-5, "{a} != {b}");
}

#[test]
fn profile_scores_by_hand() {
    let kpis = kpis();
    let m = matrix();
    let profiles = [profile()];
    let input = PopulationInput {
        kpis: &kpis,
        matrix: &m,
        profile_of: &[0, 0, 0, 0],
        profiles: &profiles,
        signals: None,
    };
    let s = score_population(&input, &ScoreOptions { drivers: 2 }).unwrap();

    // k0 (higher): 10, 20, 30 -> percentiles 1/6, 1/2, 5/6 -> scores 1.667, 5, 8.333
    close(s.percentile(0, 0).unwrap(), 1.0 / 6.0);
    close(s.percentile(2, 0).unwrap(), 5.0 / 6.0);
    assert_eq!(s.percentile(3, 0), None);
    // k1 (lower): 5, 5, 1, 9 -> raw 0.5, 0.5, 0.125, 0.875 -> oriented 0.5, 0.5, 0.875, 0.125
    close(s.percentile(0, 1).unwrap(), 0.5);
    close(s.percentile(1, 1).unwrap(), 0.5);
    close(s.percentile(2, 1).unwrap(), 0.875);
    close(s.percentile(3, 1).unwrap(), 0.125);
    // k2 (pulse): 3, -, 4, 2 -> 1/2, 5/6, 1/6

    // Raw usage means (weighted means of KPI scores): account 0 (1 x 1.667 + 3 x 5) / 4 =
    // 4.1667, account 1 (5 + 3 x 5) / 4 = 5, account 2 (8.333 + 3 x 8.75) / 4 = 8.6458,
    // account 3 (k0 missing, its weight shared out) 1.25.
    // Calibrated usage = 10 x mid-rank percentile of the raw mean among the 4:
    // 1.25 -> 1.25, 4.1667 -> 3.75, 5 -> 6.25, 8.6458 -> 8.75; median raw 4.5833.
    // Pulse has one KPI: its calibrated score is the KPI score (5, -, 8.333, 1.667),
    // median raw 5. Field k3 = (5-1)/4 x 10 = 10 for account 0.
    // Account 0: profile = (2 x 3.75 + 1 x 5 + 2 x 10) / (2 + 1 + 2) = 6.5.
    let a0 = s.account(0);
    close(a0.categories[0].unwrap(), 3.75);
    close(s.calibrated_category(0, 0).unwrap(), 3.75);
    close(a0.categories[2].unwrap(), 5.0);
    assert_eq!(a0.categories[1], None);
    assert_eq!(s.calibrated_category(0, 1), None);
    close(a0.score.unwrap(), 6.5);
    assert_eq!(
        a0.coverage,
        Coverage {
            present: 4,
            total: 4
        }
    );
    assert!(!a0.fallback);
    // Drivers: usage weighs 2/5 of the score and moved 3.75 - 5 = -1.25 points; its raw
    // mean is 4.1667 - 4.5833 = -0.4167 off the median: gain 3. KPI factor 2/5 x 1/4 = 0.1:
    // k0: 0.1 x 1 x 3 x (1.667 - 4.5833) = -0.875; k1: 0.1 x 3 x 3 x (5 - 4.5833) = 0.375
    // (sum 0.4 x -1.25 = -0.5). Pulse sits on its median (raw deviation 0 < 0.05): its
    // calibrated deviation 0 is shared by weight -> 0. k3 weight 2/5 -> 0.4 x (10 - 5) = 2.
    let down = s.drivers_down(0);
    assert_eq!(down.len(), 1);
    assert_eq!(down[0].kpi, 0);
    close(f64::from(down[0].contribution), -0.875);
    close(f64::from(down[0].percentile), 1.0 / 6.0);
    let up = s.drivers_up(0);
    assert_eq!(up.len(), 2);
    assert_eq!(up[0].kpi, 3);
    close(f64::from(up[0].contribution), 2.0);
    assert_eq!(up[1].kpi, 1);
    close(f64::from(up[1].contribution), 0.375);

    // Account 1: usage 6.25; pulse and field missing -> score 6.25, coverage 2/4.
    close(s.account(1).score.unwrap(), 6.25);
    assert_eq!(
        s.account(1).coverage,
        Coverage {
            present: 2,
            total: 4
        }
    );
    close(s.account(1).coverage.ratio(), 0.5);
    // Account 2: usage 8.75; pulse 8.333; field 0 -> (2 x 8.75 + 8.333 + 0) / 5 = 5.1667.
    close(s.account(2).score.unwrap(), 31.0 / 6.0);
    // Account 3: usage 1.25 (lowest raw mean); pulse 1.667; field 5
    // -> (2 x 1.25 + 1.667 + 2 x 5) / 5 = 2.8333.
    close(s.account(3).categories[0].unwrap(), 1.25);
    close(s.account(3).score.unwrap(), 17.0 / 6.0);
    // Every KPI varies here: nothing uninformative.
    assert!(s.uninformative_kpis(0).is_empty());

    // The drivers' contributions add up to score - 5.
    for i in 0..4 {
        let e = explain_account(&input, &s, i).unwrap();
        let sum: f64 = e.contributions.iter().map(|c| c.contribution).sum();
        close(
            5.0 + sum + e.adjustment_contribution,
            e.score.score.unwrap(),
        );
        let wsum: f64 = e.contributions.iter().map(|c| c.weight).sum();
        close(wsum, 1.0);
    }
}

#[test]
fn momentum_and_webhook_move_the_usage_sub_score() {
    let kpis = kpis();
    let m = matrix();
    let profiles = [profile()];
    // Account 0: momentum 0.5 x trend weight 1 + webhook v = 5 -> (5 - 3) / 2 = +1: usage + 1.5.
    let signals = vec![
        AccountSignals {
            momentum: Some(0.5),
            webhook: Some(webhook_points(5.0)),
        },
        AccountSignals {
            momentum: Some(-1.0),
            webhook: Some(webhook_points(1.0)),
        },
        AccountSignals::default(),
        AccountSignals {
            momentum: Some(1.0),
            webhook: Some(1.0),
        },
    ];
    let input = PopulationInput {
        kpis: &kpis,
        matrix: &m,
        profile_of: &[0; 4],
        profiles: &profiles,
        signals: Some(&signals),
    };
    let s = score_population(&input, &ScoreOptions::default()).unwrap();
    let a0 = s.account(0);
    close(a0.usage_adjustment, 1.5);
    // The adjustment applies after the calibration: 3.75 + 1.5.
    close(a0.categories[0].unwrap(), 3.75 + 1.5);
    // (2 x 5.25 + 5 + 20) / 5 = 7.1 = 6.5 + 2/5 x 1.5
    close(a0.score.unwrap(), 6.5 + 0.6);
    let e = explain_account(&input, &s, 0).unwrap();
    close(e.adjustment_contribution, 0.6);
    // Account 1: usage 6.25 - 1 - 1 = 4.25.
    close(s.account(1).categories[0].unwrap(), 4.25);
    // Account 3: usage 1.25 + 2 = 3.25.
    close(s.account(3).categories[0].unwrap(), 3.25);
    // Clamping: usage cannot go above 10.
    let mut big = signals.clone();
    big[2] = AccountSignals {
        momentum: Some(1.0),
        webhook: Some(1.0),
    };
    let profiles = [ProfileConfig {
        trend_weight: 5.0,
        ..profile()
    }];
    let input = PopulationInput {
        kpis: &kpis,
        matrix: &m,
        profile_of: &[0; 4],
        profiles: &profiles,
        signals: Some(&big),
    };
    let s = score_population(&input, &ScoreOptions::default()).unwrap();
    assert_eq!(s.account(2).categories[0], Some(10.0));
}

#[test]
fn small_profile_falls_back_to_the_portfolio_and_says_so() {
    let kpis = vec![def(
        "k",
        Category::Usage,
        Direction::HigherIsBetter,
        ScoreMode::Comparative,
    )];
    let m = KpiMatrix::from_rows(&[
        vec![Some(1.0)],
        vec![Some(4.0)],
        vec![Some(2.0)],
        vec![Some(0.0)],
        vec![Some(3.0)],
    ])
    .unwrap();
    let profiles = [
        ProfileConfig {
            min_population: 3,
            ..ProfileConfig::default()
        },
        ProfileConfig {
            min_population: 10,
            ..ProfileConfig::default()
        },
    ];
    let input = PopulationInput {
        kpis: &kpis,
        matrix: &m,
        profile_of: &[0, 1, 0, 1, 0],
        profiles: &profiles,
        signals: None,
    };
    let s = score_population(&input, &ScoreOptions::default()).unwrap();
    // Profile 0 (values 1, 2, 3) ranks within itself: 1/6, 1/2, 5/6.
    close(s.account(0).score.unwrap(), 10.0 / 6.0);
    close(s.account(2).score.unwrap(), 5.0);
    close(s.account(4).score.unwrap(), 50.0 / 6.0);
    assert!(!s.account(0).fallback);
    // Profile 1 has 2 members < 10: ranked among all 5 values: 4 -> 4.5/5, 0 -> 0.5/5.
    close(s.account(1).score.unwrap(), 9.0);
    close(s.account(3).score.unwrap(), 1.0);
    assert!(s.account(1).fallback && s.account(3).fallback);
}

#[test]
fn weights_zero_and_empty_categories() {
    let kpis = kpis();
    let m = matrix();
    // Usage weight 0: its KPIs are left out (coverage counts only k2 and k3).
    let profiles = [ProfileConfig {
        category_weights: CategoryWeights {
            usage: 0.0,
            ..CategoryWeights::default()
        },
        kpi_weights: Some(vec![1.0, 1.0, 1.0, 1.0]),
        min_population: 1,
        trend_weight: 1.0,
    }];
    let input = PopulationInput {
        kpis: &kpis,
        matrix: &m,
        profile_of: &[0; 4],
        profiles: &profiles,
        signals: None,
    };
    let s = score_population(&input, &ScoreOptions::default()).unwrap();
    assert_eq!(
        s.account(0).coverage,
        Coverage {
            present: 2,
            total: 2
        }
    );
    assert_eq!(s.account(0).categories[0], None);
    // Account 0: (pulse 5 + field 10) / 2 = 7.5.
    close(s.account(0).score.unwrap(), 7.5);
    // Account 1 has neither pulse nor field: no score at all (and no drivers).
    assert_eq!(s.account(1).score, None);
    assert!(s.drivers_down(1).is_empty() && s.drivers_up(1).is_empty());
}

#[test]
fn invalid_input_names_the_field() {
    let kpis = kpis();
    let m = matrix();
    let profiles = [ProfileConfig {
        kpi_weights: Some(vec![1.0, -1.0, 1.0, 1.0]),
        ..profile()
    }];
    let input = PopulationInput {
        kpis: &kpis,
        matrix: &m,
        profile_of: &[0; 4],
        profiles: &profiles,
        signals: None,
    };
    let err = score_population(&input, &ScoreOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "profiles[0].kpi_weights[1]: weight must be finite and >= 0, got -1"
    );
    let profiles = [profile()];
    let input = PopulationInput {
        kpis: &kpis,
        matrix: &m,
        profile_of: &[0, 0, 1, 0],
        profiles: &profiles,
        signals: None,
    };
    assert!(matches!(
        score_population(&input, &ScoreOptions::default()),
        Err(ScoringError::UnknownProfile {
            account: 2,
            profile: 1,
            profiles: 1
        })
    ));
    let input = PopulationInput {
        kpis: &kpis,
        matrix: &m,
        profile_of: &[0; 3],
        profiles: &profiles,
        signals: None,
    };
    assert!(matches!(
        score_population(&input, &ScoreOptions::default()),
        Err(ScoringError::LengthMismatch {
            field: "profile_of",
            ..
        })
    ));
    let input = PopulationInput {
        kpis: &kpis,
        matrix: &m,
        profile_of: &[0; 4],
        profiles: &profiles,
        signals: None,
    };
    assert!(score_population(&input, &ScoreOptions { drivers: 17 }).is_err());
}

#[test]
fn why_did_it_change() {
    let kpis = kpis();
    let profiles = [profile()];
    let before_m = matrix();
    // Account 0 later: k0 rises from 10 to 25 (rank 2 of 3 -> percentile 1/2), pulse drops to 2
    // (ties with account 3 -> percentile (0 + 2/2) / 3 = 1/3).
    let mut after_m = matrix();
    after_m.set(0, 0, Some(25.0));
    after_m.set(0, 2, Some(2.0));
    let pof = [0u32; 4];
    let bi = PopulationInput {
        kpis: &kpis,
        matrix: &before_m,
        profile_of: &pof,
        profiles: &profiles,
        signals: None,
    };
    let ai = PopulationInput {
        kpis: &kpis,
        matrix: &after_m,
        profile_of: &pof,
        profiles: &profiles,
        signals: None,
    };
    let bs = score_population(&bi, &ScoreOptions::default()).unwrap();
    let as_ = score_population(&ai, &ScoreOptions::default()).unwrap();
    let before = explain_account(&bi, &bs, 0).unwrap();
    let after = explain_account(&ai, &as_, 0).unwrap();
    let change = explain_change(&before, &after);
    // Before (see profile_scores_by_hand): k0 -0.875, k1 0.375, k2 0, k3 2; score 6.5.
    // After: k0 scores 5, 1.667, 8.333; raw usage means 5, 4.1667, 8.6458, 1.25 -> account 0
    // calibrated 6.25, median 4.5833, gain 1.25 / 0.4167 = 3: k0 0.1 x 3 x (5 - 4.5833) =
    // 0.125, k1 0.9 x 0.4167 = 0.375. Pulse: 3.333 (tie with account 3), median 3.333:
    // raw deviation 0, the calibrated deviation -1.667 is shared by weight: k2 0.2 x -1.667
    // = -0.3333. Score (2 x 6.25 + 3.333 + 2 x 10) / 5 = 7.1667.
    // Deltas: k0 +1, k1 0, k2 -0.3333, k3 0; total 0.6667.
    let k0 = change.items.iter().find(|i| i.name == "k0").unwrap();
    close(k0.delta, 1.0);
    close(after.score.score.unwrap(), 43.0 / 6.0);
    assert_eq!(k0.value_before, Some(10.0));
    assert_eq!(k0.value_after, Some(25.0));
    let k2 = change.items.iter().find(|i| i.name == "k2").unwrap();
    close(k2.delta, -1.0 / 3.0);
    let total: f64 = change.items.iter().map(|i| i.delta).sum::<f64>() + change.adjustment_delta;
    close(total, change.delta.unwrap());
    close(
        change.delta.unwrap(),
        after.score.score.unwrap() - before.score.score.unwrap(),
    );
    // Largest |delta| first.
    assert!(
        change
            .items
            .windows(2)
            .all(|w| w[0].delta.abs() >= w[1].delta.abs())
    );
}

#[test]
fn learner_style_percentiles_and_distribution_of_scores() {
    let p = mid_rank_percentiles(&[3.0, 1.0, 2.0, f64::NAN], Direction::LowerIsBetter);
    close(p[0], 1.0 / 6.0);
    close(p[1], 5.0 / 6.0);
    assert!(p[3].is_nan());
    let kpis = kpis();
    let m = matrix();
    let profiles = [profile()];
    let input = PopulationInput {
        kpis: &kpis,
        matrix: &m,
        profile_of: &[0; 4],
        profiles: &profiles,
        signals: None,
    };
    let s = score_population(&input, &ScoreOptions::default()).unwrap();
    let d = distribution(
        s.results().filter_map(|r| r.score),
        &BandThresholds::default(),
    );
    // Scores 6.5, 6.25, 5.167, 2.833: one red, three yellow.
    assert_eq!(d.count, 4);
    assert_eq!(d.bands, [1, 3, 0]);
    assert_eq!(d.histogram, [0, 0, 1, 0, 0, 1, 2, 0, 0, 0]);
}

#[test]
fn uninformative_kpis_are_reported_and_a_lone_value_is_missing() {
    let usage = |name| {
        def(
            name,
            Category::Usage,
            Direction::HigherIsBetter,
            ScoreMode::Comparative,
        )
    };
    // k0 varies; k1 is the same for everyone (one plan); k2 has a single present value;
    // k3 has none.
    let kpis = vec![usage("k0"), usage("k1"), usage("k2"), usage("k3")];
    let m = KpiMatrix::from_rows(&[
        vec![Some(1.0), Some(7.0), Some(100.0), None],
        vec![Some(2.0), Some(7.0), None, None],
        vec![Some(3.0), Some(7.0), None, None],
    ])
    .unwrap();
    let profiles = [ProfileConfig {
        min_population: 1,
        ..ProfileConfig::default()
    }];
    let input = PopulationInput {
        kpis: &kpis,
        matrix: &m,
        profile_of: &[0; 3],
        profiles: &profiles,
        signals: None,
    };
    let s = score_population(&input, &ScoreOptions::default()).unwrap();
    assert_eq!(s.uninformative_kpis(0), &[1, 2, 3]);
    assert!(s.uninformative_kpis(7).is_empty());
    // k1: everyone ties at percentile 0.5. k2: a lone value compares with nothing, so it
    // is missing (no percentile, not counted in the coverage).
    assert_eq!(s.percentile(0, 1), Some(0.5));
    assert_eq!(s.percentile(0, 2), None);
    assert_eq!(
        s.account(0).coverage,
        Coverage {
            present: 2,
            total: 4
        }
    );
    // Raw usage means: (1.667 + 5) / 2, (5 + 5) / 2, (8.333 + 5) / 2 -> ranks 1/6, 1/2, 5/6:
    // the constant k1 shifts every raw mean alike and changes no rank, so the calibrated
    // scores equal k0's own: 1.667, 5, 8.333 (without calibration: 3.33, 5, 6.67).
    close(s.account(0).score.unwrap(), 10.0 / 6.0);
    close(s.account(1).score.unwrap(), 5.0);
    close(s.account(2).score.unwrap(), 50.0 / 6.0);
    // The explanation credits k0 only: k1's score 5 equals the median raw mean (5), so it
    // contributes 0 (gain 3.333 / 1.667 = 2, factor 1/2: k0 0.5 x 2 x (1.667 - 5)), and k2
    // is missing.
    let e = explain_account(&input, &s, 0).unwrap();
    assert_eq!(e.contributions.len(), 2);
    close(e.contributions[0].contribution, 10.0 / 6.0 - 5.0);
    assert_eq!(e.contributions[0].name, "k0");

    // In a profile in fallback the comparison population is the whole portfolio: k2's
    // lone value is still alone, k1 still constant.
    let profiles = [ProfileConfig::default()];
    let input = PopulationInput {
        profiles: &profiles,
        ..input
    };
    let s = score_population(&input, &ScoreOptions::default()).unwrap();
    assert!(s.account(0).fallback);
    assert_eq!(s.uninformative_kpis(0), &[1, 2, 3]);
}
