//! End-to-end behaviour of the learner maths on synthetic data drawn from a known model.

use linfa::traits::Fit;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use vitals_learn_core::synthetic::{SplitMix64, logistic_dataset};
use vitals_learn_core::*;

fn fit(data: &Dataset, lambda: f64, class_weight: ClassWeight) -> LogisticModel {
    let opts = LogisticOptions {
        lambda,
        class_weight,
        ..LogisticOptions::default()
    };
    LogisticModel::fit(&data.feature_names, data.x.view(), &data.labels, &opts).unwrap()
}

#[test]
fn recovers_known_coefficients() {
    let truth = [-1.0, 0.5, 0.0, 0.8, -0.3];
    let data = logistic_dataset(60_000, -2.5, &truth, 1);
    for cw in [ClassWeight::None, ClassWeight::Balanced] {
        let m = fit(&data, 1e-6, cw);
        assert!(m.converged);
        let (b, raw) = m.raw_coefficients();
        for (got, want) in raw.iter().zip(truth) {
            assert!((got - want).abs() < 0.06, "{cw:?}: {raw:?} vs {truth:?}");
        }
        // The balanced fit's intercept is prior-corrected back to the real scale.
        assert!((b + 2.5).abs() < 0.1, "{cw:?}: intercept {b}");
    }
}

#[test]
fn agrees_with_linfa_logistic() {
    // Same objective: linfa minimises sum loss + alpha/2 |beta|^2, we minimise
    // mean loss + lambda/2 |beta|^2, so alpha = lambda * n.
    let data = logistic_dataset(3_000, -1.0, &[0.7, -0.4, 0.2], 2);
    let lambda = 1e-2;
    let ours = fit(&data, lambda, ClassWeight::None);
    let z = ours.standardizer.transform(data.x.view()).unwrap();
    let y: Array1<bool> = data.labels.iter().copied().collect();
    let theirs = LogisticRegression::default()
        .alpha(lambda * data.len() as f64)
        .gradient_tolerance(1e-8)
        .max_iterations(500)
        .fit(&linfa::Dataset::new(z, y))
        .unwrap();
    // linfa's parameters come out as the log-odds of the `false` class here, so they are
    // ours with the sign flipped; the same optimum to solver precision.
    for (a, b) in ours.coefficients.iter().zip(theirs.params().iter()) {
        assert!(
            (a + b).abs() < 1e-4,
            "{:?} vs {:?}",
            ours.coefficients,
            theirs.params()
        );
    }
    assert!((ours.intercept + theirs.intercept()).abs() < 1e-4);
}

#[test]
fn auc_of_random_and_model_scores() {
    let data = logistic_dataset(20_000, -2.0, &[1.0, -1.0], 3);
    let mut rng = SplitMix64::new(9);
    let random: Vec<f64> = (0..data.len()).map(|_| rng.uniform()).collect();
    let a = auc(&random, &data.labels).unwrap();
    assert!((a - 0.5).abs() < 0.02, "random AUC {a}");
    // The model's AUC is close to the AUC of the true log-odds (the best possible).
    let oracle: Vec<f64> = data.x.rows().into_iter().map(|r| r[0] - r[1]).collect();
    let best = auc(&oracle, &data.labels).unwrap();
    let m = fit(&data, 1e-4, ClassWeight::Balanced);
    let got = auc(&m.predict_proba(data.x.view()).unwrap(), &data.labels).unwrap();
    assert!(
        best > 0.75 && (got - best).abs() < 0.002,
        "{got} vs oracle {best}"
    );
    assert!((top_decile_lift(&random, &data.labels).unwrap() - 1.0).abs() < 0.25);
    assert!(top_decile_lift(&oracle, &data.labels).unwrap() > 2.5);
}

#[test]
fn balanced_probabilities_stay_calibrated() {
    let data = logistic_dataset(80_000, -3.0, &[1.2, -0.6, 0.4], 4);
    let m = fit(&data, 1e-6, ClassWeight::Balanced);
    let p = m.predict_proba(data.x.view()).unwrap();
    let ev = Evaluation::of_probabilities(&p, &data.labels).unwrap();
    assert_eq!(ev.calibration.len(), 10);
    for bin in &ev.calibration {
        let tol = 0.01 + 0.15 * bin.mean_predicted;
        assert!(
            (bin.mean_predicted - bin.observed_rate).abs() < tol,
            "calibration {:?}",
            ev.calibration
        );
    }
    let mean_p = p.iter().sum::<f64>() / p.len() as f64;
    let rate = data.n_churned() as f64 / data.len() as f64;
    assert!(
        (mean_p - rate).abs() < 0.1 * rate,
        "mean prediction {mean_p} vs rate {rate}"
    );
}

fn specs() -> Vec<KpiSpec> {
    let s = |name: &str, category: &str, direction| KpiSpec {
        name: name.to_owned(),
        category: category.to_owned(),
        direction,
        prior_weight: 1.0,
    };
    vec![
        s("f0", "usage", Direction::HigherIsBetter),
        s("f1", "usage", Direction::HigherIsBetter),
        s("f2", "usage", Direction::HigherIsBetter),
        s("f3", "support", Direction::HigherIsWorse),
        s("f4", "support", Direction::HigherIsWorse),
    ]
}

// f0, f1 protect (healthy effects 1.0 and 0.5), f2 is declared healthy but raises the
// risk (contradicts), f3 raises risk as declared (effect 0.6), f4 is noise.
const TRUTH: [f64; 5] = [-1.0, -0.5, 0.4, 0.6, 0.0];

#[test]
fn recovers_known_weights_and_reports_contradictions() {
    let data = logistic_dataset(50_000, -2.5, &TRUTH, 5);
    let trained = train(&data, &specs(), 100_000, &TrainOptions::default()).unwrap();
    let w = &trained.weights;
    assert_eq!(w.contradicting, vec!["f2".to_owned()]);
    let learned = |n: &str| w.kpis.iter().find(|k| k.name == n).unwrap().learned;
    assert!((learned("f0") - 2.0 / 3.0).abs() < 0.03, "{w:?}");
    assert!((learned("f1") - 1.0 / 3.0).abs() < 0.03);
    assert_eq!(learned("f2"), 0.0);
    assert!(learned("f3") > 0.95, "{w:?}");
    // n = 100,000 outcomes: the data dominate the prior.
    assert!((w.weight("f0").unwrap() - learned("f0")).abs() < 0.01);
    assert!(trained.in_sample.auc > 0.7);
    assert!(trained.lambda_selection.fallback_reason.is_none());
    // 11 lambdas for each of the two class weightings the CV chooses from.
    let scores = &trained.lambda_selection.scores;
    assert_eq!(scores.len(), 22);
    for cw in [ClassWeight::Balanced, ClassWeight::None] {
        assert_eq!(scores.iter().filter(|s| s.class_weight == cw).count(), 11);
    }
    let best = scores
        .iter()
        .map(|s| s.mean_auc)
        .fold(f64::NEG_INFINITY, f64::max);
    let chosen = scores
        .iter()
        .find(|s| {
            s.lambda == trained.lambda_selection.lambda
                && s.class_weight == trained.lambda_selection.class_weight
        })
        .unwrap();
    assert_eq!(chosen.mean_auc, best);
    // No candidates: the given class weighting only.
    let fixed = TrainOptions {
        class_weight: ClassWeight::None,
        class_weight_candidates: Vec::new(),
        ..TrainOptions::default()
    };
    let s = select_lambda(&data, &fixed).unwrap();
    assert_eq!(s.scores.len(), 11);
    assert_eq!(s.class_weight, ClassWeight::None);
    assert!(s.scores.iter().all(|x| x.class_weight == ClassWeight::None));
}

/// KPIs as percentile and log value (`FeatureLayout`): churn risk falls with the log of a
/// heavy-tailed count; the weights come one per KPI, the signal KPI's dominant; the CV
/// choice among layouts scores every candidate; bad layouts are refused.
#[test]
fn kpi_layouts_weights_and_layout_choice() {
    let n = 20_000;
    let mut rng = SplitMix64::new(11);
    let kpis = vec![
        KpiSpec {
            name: "events".to_owned(),
            category: "usage".to_owned(),
            direction: Direction::HigherIsBetter,
            prior_weight: 1.0,
        },
        KpiSpec {
            name: "idle_days".to_owned(),
            category: "usage".to_owned(),
            direction: Direction::HigherIsWorse,
            prior_weight: 1.0,
        },
    ];
    let layout = FeatureLayout::default();
    let full = LayoutChoice::full_data();
    let mut flat = Vec::new();
    let mut labels = Vec::new();
    for _ in 0..n {
        // A log-normal count (heavy tail) and an unrelated number of idle days.
        let events = (2.0 + 1.5 * rng.normal()).exp().floor();
        let idle = (rng.uniform() * 30.0).floor();
        let eta = -1.0 - 0.9 * events.ln_1p();
        labels.push(rng.uniform() < 1.0 / (1.0 + (-eta).exp()));
        let raw = [events, idle];
        // Percentile stand-ins: any increasing map to [0, 1] of the healthy direction.
        let pct = [events / (events + 10.0), 1.0 - idle / 30.0];
        flat.extend(full.row(&kpis, |k| Some(pct[k]), |k| Some(raw[k])));
    }
    let data = dated_dataset(full.names(&kpis), flat, labels, 200);
    assert_eq!(
        data.feature_names,
        vec![
            "events",
            "idle_days",
            "events:log",
            "idle_days:log",
            "events:value",
            "idle_days:value"
        ]
    );
    let options = TrainOptions::default();
    let current = LayoutChoice::only(KpiForm::Layout(layout.clone()));
    let t = train_kpis(&data, &kpis, &current, 1_000, &options).unwrap();
    assert_eq!(t.form, FittedForm::Layout(layout.clone()));
    assert_eq!(t.trained.model.feature_names.len(), 4);
    assert_eq!(t.trained.weights.kpis.len(), 2);
    let w = |name: &str| t.trained.weights.weight(name).unwrap();
    assert!(w("events") > 0.8, "{:?}", t.trained.weights);
    assert!(w("events") + w("idle_days") - 1.0 < 1e-9);
    assert!(t.trained.in_sample.auc > 0.7);

    let by_cv = train_kpis(&data, &kpis, &LayoutChoice::by_cv(), 1_000, &options).unwrap();
    assert_eq!(by_cv.layout_scores.len(), 3);
    let best = by_cv
        .layout_scores
        .iter()
        .filter_map(|s| s.mean_auc)
        .fold(f64::NEG_INFINITY, f64::max);
    let chosen = by_cv
        .layout_scores
        .iter()
        .find(|s| match (&s.layout, &by_cv.form) {
            (KpiForm::Layout(a), FittedForm::Layout(b)) => a == b,
            _ => false,
        })
        .unwrap();
    assert_eq!(chosen.mean_auc, Some(best));
    let FittedForm::Layout(chosen_layout) = &by_cv.form else {
        panic!("the book's preparation is not a candidate here");
    };
    assert_eq!(
        by_cv.trained.model.feature_names,
        chosen_layout.names(&kpis)
    );
    let bt = backtest_kpis(&data, &kpis, &LayoutChoice::by_cv(), 2, &options).unwrap();
    assert_eq!(bt.folds.len(), 2);
    assert!(bt.mean_auc > 0.7, "{}", bt.mean_auc);

    // The data must have the layout's columns; candidates only the data's transforms.
    let pct_only = data.select_features(&["events", "idle_days"]).unwrap();
    assert!(train_kpis(&pct_only, &kpis, &LayoutChoice::default(), 1_000, &options).is_err());
    assert!(
        train_kpis(
            &data,
            &kpis,
            &LayoutChoice::fixed(layout.clone()),
            1_000,
            &options
        )
        .is_err()
    );
    let wrong = LayoutChoice {
        data: FeatureLayout::percentiles_only(),
        candidates: vec![KpiForm::Layout(FeatureLayout::default())],
    };
    assert!(train_kpis(&pct_only, &kpis, &wrong, 1_000, &options).is_err());
    // The book's preparation needs the value and log-value columns.
    let wrong = LayoutChoice {
        data: FeatureLayout::percentiles_only(),
        candidates: vec![KpiForm::book()],
    };
    assert!(train_kpis(&pct_only, &kpis, &wrong, 1_000, &options).is_err());
    let none = LayoutChoice {
        data: full.clone(),
        candidates: Vec::new(),
    };
    assert!(train_kpis(&data, &kpis, &none, 1_000, &options).is_err());
}

/// The book's preparation end to end: the skewed count is logged, the count correlated
/// with it joins its group, the others stay alone; the model written per KPI
/// (`FittedForm::kpi_terms`) gives exactly the model's log-odds, missing values included;
/// the group's members share its coefficient and so get equal weights.
#[test]
fn book_preparation_trains_and_its_per_kpi_form_predicts_the_same() {
    let n = 20_000;
    let mut rng = SplitMix64::new(23);
    let spec = |name: &str, direction| KpiSpec {
        name: name.to_owned(),
        category: "usage".to_owned(),
        direction,
        prior_weight: 1.0,
    };
    let kpis = vec![
        spec("events", Direction::HigherIsBetter),
        spec("sessions", Direction::HigherIsBetter),
        spec("tenure", Direction::HigherIsBetter),
        spec("idle_days", Direction::HigherIsWorse),
    ];
    let full = LayoutChoice::full_data();
    let mut flat = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let level = 2.0 + 1.6 * rng.normal();
        let events = level.exp().floor();
        let sessions = (level + 0.2 * rng.normal()).exp().floor();
        let tenure = rng.uniform() * 24.0;
        let idle = (rng.uniform() * 30.0).floor();
        let eta = -2.0 - 0.6 * events.ln_1p() - 0.05 * tenure + 0.02 * idle;
        labels.push(rng.uniform() < 1.0 / (1.0 + (-eta).exp()));
        // Every 50th row misses its session count.
        let raw = [
            Some(events),
            (i % 50 != 0).then_some(sessions),
            Some(tenure),
            Some(idle),
        ];
        flat.extend(full.row(&kpis, |_| Some(0.5), |k| raw[k]));
    }
    let data = dated_dataset(full.names(&kpis), flat, labels, 200);
    let options = TrainOptions::default();
    let t = train_kpis(
        &data,
        &kpis,
        &LayoutChoice::only(KpiForm::book()),
        1_000,
        &options,
    )
    .unwrap();
    let FittedForm::Book(prep) = &t.form else {
        panic!("the book's preparation is the only candidate");
    };
    let transform = |name: &str| prep.kpis.iter().find(|k| k.name == name).unwrap().transform;
    assert_eq!(transform("events"), FeatureTransform::LogValue);
    assert_eq!(transform("sessions"), FeatureTransform::LogValue);
    assert_eq!(transform("tenure"), FeatureTransform::Value);
    assert_eq!(transform("idle_days"), FeatureTransform::Value);
    assert_eq!(prep.names, vec!["events+sessions", "tenure", "idle_days"]);
    assert_eq!(t.trained.model.feature_names, prep.names);

    // Per-KPI form == the model on the prepared columns, on every row.
    let (intercept, terms) = t.form.kpi_terms(&t.trained.model, kpis.len()).unwrap();
    let direct = t
        .trained
        .model
        .decision_function(t.form.apply(&data, &kpis).unwrap().x.view())
        .unwrap();
    let names = data.feature_names.clone();
    for (r, want) in direct.iter().enumerate() {
        let eta = intercept
            + terms
                .iter()
                .map(|term| {
                    let col = term.transform.column_name(&kpis[term.kpi].name);
                    let j = names.iter().position(|c| *c == col).unwrap();
                    let v = data.x[[r, j]];
                    term.coefficient * if v.is_finite() { v } else { term.missing }
                })
                .sum::<f64>();
        assert!((eta - want).abs() < 1e-9, "row {r}: {eta} vs {want}");
    }
    // The group's coefficient is shared: equal standardised effects, equal weights.
    let std_of = |k: usize| terms.iter().find(|t| t.kpi == k).unwrap().standardized;
    assert_eq!(std_of(0), std_of(1));
    assert!(std_of(0) < 0.0, "more events, less churn: {}", std_of(0));
    let w = |name: &str| t.trained.weights.weight(name).unwrap();
    assert!((w("events") - w("sessions")).abs() < 1e-12);
    assert!(w("events") > w("idle_days"), "{:?}", t.trained.weights);

    // In the default choice the book's preparation competes with percentiles + log values.
    let d = train_kpis(&data, &kpis, &LayoutChoice::default(), 1_000, &options).unwrap();
    assert_eq!(d.layout_scores.len(), 2);
    assert_eq!(d.layout_scores[0].layout, KpiForm::book());
}

/// When every KPI is constant in the training part the book's preparation has nothing to
/// work with: alone it is refused, in the default choice it is skipped (its score says why)
/// and the other form trains.
#[test]
fn an_unusable_book_preparation_is_skipped_in_the_default_choice() {
    let n = 2_000;
    let kpis = vec![KpiSpec {
        name: "seats".to_owned(),
        category: "contract".to_owned(),
        direction: Direction::HigherIsBetter,
        prior_weight: 1.0,
    }];
    let full = LayoutChoice::full_data();
    let mut flat = Vec::new();
    for _ in 0..n {
        flat.extend(full.row(&kpis, |_| Some(0.5), |_| Some(3.0)));
    }
    let data = dated_dataset(
        full.names(&kpis),
        flat,
        (0..n).map(|i| i % 10 == 0).collect(),
        100,
    );
    let options = TrainOptions::default();
    let book = LayoutChoice::only(KpiForm::book());
    assert!(matches!(
        train_kpis(&data, &kpis, &book, 10, &options),
        Err(LearnError::InvalidParameter { .. })
    ));
    let t = train_kpis(&data, &kpis, &LayoutChoice::default(), 10, &options).unwrap();
    assert_eq!(t.form, FittedForm::Layout(FeatureLayout::default()));
    let skipped = &t.layout_scores[0];
    assert_eq!(skipped.layout, KpiForm::book());
    assert_eq!(skipped.mean_auc, None);
    assert!(
        skipped
            .selection
            .fallback_reason
            .as_deref()
            .is_some_and(|r| r.contains("not usable")),
        "{skipped:?}"
    );
    assert!(backtest_kpis(&data, &kpis, &LayoutChoice::default(), 2, &options).is_ok());
}

#[test]
fn more_outcomes_move_weights_toward_the_learned_ones() {
    let data = logistic_dataset(40_000, -2.5, &TRUTH, 6);
    let m = fit(&data, 1e-4, ClassWeight::Balanced);
    let mut previous = f64::INFINITY;
    for n in [0, 10, 50, 200, 1_000, 10_000] {
        let r = kpi_weights(&specs(), &m.coefficients, n, DEFAULT_N0).unwrap();
        let dist: f64 = r.kpis.iter().map(|k| (k.weight - k.learned).abs()).sum();
        if n == 0 {
            assert!(r.kpis.iter().all(|k| k.weight == k.prior));
        }
        assert!(
            dist < previous,
            "n = {n}: distance {dist} not below {previous}"
        );
        previous = dist;
    }
    // Retraining on more history (more churns seen) gives weights closer to the truth:
    // true within-usage weights are f0 2/3, f1 1/3, f2 0.
    let truth_w = [2.0 / 3.0, 1.0 / 3.0, 0.0];
    let mut previous = f64::INFINITY;
    for rows in [500, 4_000, 40_000] {
        let part = data.subset(&(0..rows).collect::<Vec<_>>());
        let t = train(&part, &specs(), part.n_churned(), &TrainOptions::default()).unwrap();
        let err: f64 = t.weights.kpis[..3]
            .iter()
            .zip(truth_w)
            .map(|(k, w)| (k.weight - w).abs())
            .sum();
        assert!(
            err < previous,
            "{rows} rows: error {err} not below {previous}"
        );
        previous = err;
    }
}

#[test]
fn backtest_of_model_and_of_a_health_score() {
    let data = logistic_dataset(12_000, -2.5, &[-1.0, 0.5], 7);
    let report = backtest_model(&data, 2, &TrainOptions::default()).unwrap();
    assert_eq!(report.folds.len(), 2);
    assert_eq!(report.folds[0].n_train, 4_000);
    assert_eq!(report.folds[0].n_test, 4_000);
    assert_eq!(report.folds[1].n_train, 8_000);
    assert!(report.mean_auc > 0.7 && report.mean_auc < 0.9, "{report:?}");
    // A "health score" that is the true healthy direction: no training needed; pass its
    // negation as risk.
    let folds = time_ordered_folds(&data.dates, 2).unwrap();
    let health = backtest(&data, &folds, |_train, test| {
        let health = test.x.rows().into_iter().map(|r| r[0] - 0.5 * r[1]);
        Ok(health.map(|h| -h).collect())
    })
    .unwrap();
    assert!((health.mean_auc - report.mean_auc).abs() < 0.02);
    // A backwards health score is caught.
    let bad = backtest(&data, &folds, |_train, test| {
        // Forgot to negate: the health score passed as a risk score.
        Ok(test
            .x
            .rows()
            .into_iter()
            .map(|r| r[0] - 0.5 * r[1])
            .collect())
    })
    .unwrap();
    assert!(bad.mean_auc < 0.3);
}

#[test]
fn split_at_a_date() {
    let data = logistic_dataset(1_000, -1.0, &[1.0], 8);
    let cut = data.dates[500];
    let fold = split_at_date(&data.dates, cut);
    assert!(fold.train.iter().all(|&i| data.dates[i] < cut));
    assert!(fold.test.iter().all(|&i| data.dates[i] >= cut));
    assert_eq!(fold.train.len() + fold.test.len(), 1_000);
    let r = backtest(&data, &[fold], |train, test| {
        let m = LogisticModel::fit(
            &train.feature_names,
            train.x.view(),
            &train.labels,
            &LogisticOptions::default(),
        )?;
        m.predict_proba(test.x.view())
    })
    .unwrap();
    assert!(r.mean_auc > 0.6);
}

#[test]
fn category_weights_suggestion() {
    // Two category scores on 0..10, higher healthier: usage matters 3x more than pulse;
    // "contract" is noise. A fit on them suggests weights ~ 0.75 / 0.25 / ~0.
    let n = 30_000;
    let mut rng = SplitMix64::new(11);
    let mut x = Array2::<f64>::zeros((n, 3));
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let (u, p, c) = (
            rng.uniform() * 10.0,
            rng.uniform() * 10.0,
            rng.uniform() * 10.0,
        );
        x[[i, 0]] = u;
        x[[i, 1]] = p;
        x[[i, 2]] = c;
        let eta = 1.0 - 0.6 * (u - 5.0) - 0.2 * (p - 5.0) - 2.0;
        labels.push(rng.uniform() < 1.0 / (1.0 + (-eta).exp()));
    }
    let base = logistic_dataset(n, 0.0, &[], 0);
    let data = Dataset::new(
        vec!["usage".into(), "pulse".into(), "contract".into()],
        x,
        labels,
        base.dates,
        base.accounts,
    )
    .unwrap();
    let s = suggest_category_weights(&data, &[1.0, 1.0, 1.0], 1_000_000, &TrainOptions::default())
        .unwrap();
    let w = |name: &str| s.weights.weight(name).unwrap();
    assert!((w("usage") - 0.75).abs() < 0.04, "{:?}", s.weights);
    assert!((w("pulse") - 0.25).abs() < 0.04);
    assert!(w("contract") < 0.04);
    let total: f64 = s.weights.kpis.iter().map(|k| k.weight).sum();
    assert!((total - 1.0).abs() < 1e-9);
}

#[test]
fn lambda_selection_says_when_it_falls_back() {
    let mut data = logistic_dataset(600, -1.0, &[1.0], 12);
    let d0 = data.dates[0];
    data.dates.iter_mut().for_each(|d| *d = d0);
    let s = select_lambda(&data, &TrainOptions::default()).unwrap();
    assert_eq!(s.lambda, TrainOptions::default().fallback_lambda);
    assert!(
        s.fallback_reason
            .unwrap()
            .contains("cross-validation impossible")
    );
}

#[test]
fn model_round_trips_and_scores_one_account() {
    let data = logistic_dataset(2_000, -1.5, &[0.8, -0.3], 13);
    let m = fit(&data, 1e-3, ClassWeight::Balanced);
    let all = m.predict_proba(data.x.view()).unwrap();
    let row: Vec<f64> = data.x.row(17).to_vec();
    assert!((m.predict_one(&row).unwrap() - all[17]).abs() < 1e-12);
    // Missing value = mean: the same as z = 0.
    let mut missing = row.clone();
    missing[0] = f64::NAN;
    let mut at_mean = row;
    at_mean[0] = m.standardizer.means[0];
    assert!((m.predict_one(&missing).unwrap() - m.predict_one(&at_mean).unwrap()).abs() < 1e-12);
    assert!(m.predict_one(&[1.0]).is_err());
    // Persisted as JSON by the learner service: the round trip keeps the predictions.
    let json = serde_json::to_string(&m).unwrap();
    let back: LogisticModel = serde_json::from_str(&json).unwrap();
    let again = back.predict_proba(data.x.view()).unwrap();
    assert!(again.iter().zip(&all).all(|(a, b)| (a - b).abs() < 1e-12));
}

/// `flat` (row-major, one column per name) as a dataset: one account per row, `per_day`
/// rows per observation date from 2020-01-01 on.
fn dated_dataset(names: Vec<String>, flat: Vec<f64>, labels: Vec<bool>, per_day: usize) -> Dataset {
    let (n, cols) = (labels.len(), names.len());
    let start = chrono::NaiveDate::from_ymd_opt(2020, 1, 1).unwrap();
    Dataset::new(
        names,
        Array2::from_shape_vec((n, cols), flat).unwrap(),
        labels,
        (0..n)
            .map(|i| start + chrono::Days::new((i / per_day) as u64))
            .collect(),
        (0..n).map(|i| format!("a{i}")).collect(),
    )
    .unwrap()
}

/// A cancelled check stops the cross-validation at its next `lambda`: the search counts
/// its fits and returns `Cancelled` after the one during which the flag was raised,
/// instead of running the whole grid (22 fits per fold here).
#[test]
fn a_cancelled_training_stops_at_the_next_lambda() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let data = logistic_dataset(2_000, -1.5, &TRUTH, 3);
    let checks = Arc::new(AtomicUsize::new(0));
    let seen = checks.clone();
    // Cancelled from the third check on.
    let options = TrainOptions {
        cancel: Cancel::new(move || seen.fetch_add(1, Ordering::SeqCst) >= 2),
        ..TrainOptions::default()
    };
    assert_eq!(
        select_lambda(&data, &options).unwrap_err(),
        LearnError::Cancelled
    );
    assert!(
        checks.load(Ordering::SeqCst) <= 4,
        "stopped within a check per fold after the flag: {} checks",
        checks.load(Ordering::SeqCst)
    );
    assert_eq!(
        train(&data, &specs(), 100, &options).unwrap_err(),
        LearnError::Cancelled
    );
    // The same options without the check train as before.
    let options = TrainOptions {
        cancel: Cancel::never(),
        ..options
    };
    assert!(train(&data, &specs(), 100, &options).is_ok());
}
