//! Tests of the domain across its modules.

use std::collections::HashMap;

use chrono::Days;
use vitals_learn_core::{Cancel, FeatureTransform, LayoutChoice, LearnError};
use vitals_server::ApiError;
use vitals_store::learner::{History, OutcomeRecord};

use super::evaluation::{eval_probabilities, sigmoid};
use super::stored::StoredCoefficients;
use super::*;
use crate::error::LearnerError;

mod book {
    use super::*;
    use crate::domain::features::tests::{active_account, at, day};
    use crate::domain::training::Fitted;
    use vitals_learn_core::KpiForm;
    use vitals_learn_core::synthetic::SplitMix64;
    use vitals_store::entity::usage_daily;
    use vitals_store::learner::outcome_row;

    /// 150 accounts with a heavy-tailed activity level (logins and posts both follow it),
    /// churning more often the less active they are; usage stops at the churn date.
    pub(super) fn portfolio() -> (History, Vec<OutcomeRecord>) {
        let start = day("2025-01-01");
        let mut rng = SplitMix64::new(5);
        let mut history = History {
            event_types: vec!["login".into(), "post".into()],
            ..History::default()
        };
        let mut outcomes = Vec::new();
        for a in 0..150 {
            let id = format!("acct-{a:03}");
            let level = 1.0 + 1.2 * rng.normal();
            let p_churn = 1.0 / (1.0 + (1.0 + 1.2 * level).exp());
            let churn = (rng.uniform() < p_churn)
                .then(|| start + Days::new(45 + (rng.uniform() * 150.0) as u64));
            history.accounts.push(active_account(&id, start));
            for d in 0..210 {
                let when = start + Days::new(d);
                if churn.is_some_and(|c| when >= c) {
                    break;
                }
                for (kind, share) in [("login", 1.0), ("post", 0.3)] {
                    let n = (share * level.exp() * (0.5 + rng.uniform())).floor() as i64;
                    if n > 0 {
                        history.usage.push(usage_daily::Model {
                            account_id: id.clone(),
                            day: when,
                            event_type: kind.into(),
                            count: n,
                            distinct_users: 1,
                            value_sum: 0.0,
                        });
                    }
                }
            }
            if let Some(c) = churn {
                outcomes.push(outcome_row::Model {
                    account_id: id,
                    kind: "churned".into(),
                    at: at(c),
                    recorded_at: at(c),
                    note: String::new(),
                });
            }
        }
        (history, outcomes)
    }

    pub(super) fn settings() -> Settings {
        Settings {
            horizon_days: 30,
            interval_days: 14,
            prior_strength: 50.0,
            l2_penalty: None,
            max_dataset_cells: crate::DEFAULT_MAX_DATASET_CELLS,
            borrow_from_global: true,
            challenger: false,
        }
    }

    /// Accounts are observed only while customers: no observation on or after an
    /// account's churn, none before its first data; a churned observation's churn is
    /// within the horizon after it; the window reports the dates and observations used.
    #[test]
    fn no_observation_after_an_accounts_churn() {
        let (history, outcomes) = portfolio();
        let s = settings();
        let prep =
            prepare(&history, &outcomes, day("2025-07-25"), &s, &Cancel::never()).expect("prepare");
        let churn_of: HashMap<&str, chrono::NaiveDate> = outcomes
            .iter()
            .map(|o| (o.account_id.as_str(), o.at.date_naive()))
            .collect();
        assert!(churn_of.len() > 10, "the portfolio has churners");
        let mut churned_rows = 0;
        for r in 0..prep.data.len() {
            let (a, d) = (prep.data.accounts[r].as_str(), prep.data.dates[r]);
            assert!(
                d > day("2025-01-01"),
                "{a} observed at {d}, before its first data"
            );
            if let Some(&c) = churn_of.get(a) {
                assert!(d < c, "{a} observed at {d}, on or after its churn on {c}");
                if prep.data.labels[r] {
                    churned_rows += 1;
                    assert!(c <= d + Days::new(u64::from(s.horizon_days)));
                }
            } else {
                assert!(!prep.data.labels[r], "{a} never churned");
            }
        }
        assert!(churned_rows > 0);
        let w = prep.window(stored::WindowEnd::AsOf);
        assert_eq!(w.end, day("2025-07-25"));
        assert_eq!(w.observations as usize, prep.data.len());
        assert_eq!(w.dates as usize, prep.dates.len());
        assert_eq!(w.start, prep.dates.first().copied());
    }

    /// A model on the book's preparation is stored per KPI (value or log value, with its
    /// share of its group's coefficient) and the stored form gives exactly the fitted
    /// model's probabilities, in `Evaluate` (`probabilities`) and in `PredictChurn`
    /// (`predict`); members of a group carry equal standardised coefficients.
    #[test]
    fn a_book_model_is_stored_per_kpi_and_predicts_as_fitted() {
        let (history, outcomes) = portfolio();
        let s = settings();
        let mut prep =
            prepare(&history, &outcomes, day("2025-07-25"), &s, &Cancel::never()).expect("prepare");
        prep.choice = LayoutChoice::only(KpiForm::book());
        let fitted = fit_scope(&prep, Scope::Global, &s, None).expect("fit");
        let c = &fitted.coefficients;
        assert!(
            c.coefficients.iter().all(|k| k.group.is_some()
                && matches!(
                    k.transform,
                    FeatureTransform::Value | FeatureTransform::LogValue
                )),
            "{c:?}"
        );
        let mut by_group: HashMap<u32, Vec<f64>> = HashMap::new();
        for k in &c.coefficients {
            by_group
                .entry(k.group.expect("group"))
                .or_default()
                .push(k.standardized);
        }
        assert!(
            by_group.values().any(|v| v.len() > 1),
            "correlated KPIs are grouped: {c:?}"
        );
        for v in by_group.values() {
            assert!(v.iter().all(|x| *x == v[0]), "{v:?}");
        }
        // The stored coefficients reproduce the fitted model's in-sample probabilities.
        let data = prep.kpi_data(&prep.rows(Scope::Global)).expect("data");
        let p = prep.probabilities(&data, c).expect("probabilities");
        let e = eval_probabilities(&p, &data.labels, false).expect("eval");
        let t = &fitted.metrics.training;
        assert!(
            (e.brier_score - t.brier_score).abs() < 1e-12,
            "{e:?} vs {t:?}"
        );
        assert!((e.log_loss - t.log_loss).abs() < 1e-12);
        assert_eq!(e.auc, t.auc);
        // PredictChurn computes the same from a fresh snapshot.
        let d = *data.dates.iter().max().expect("dates");
        let rows: Vec<usize> = (0..data.len()).filter(|&r| data.dates[r] == d).collect();
        let accounts: Vec<usize> = rows
            .iter()
            .map(|&r| prep.pop.index[&data.accounts[r]])
            .collect();
        let q = predict(
            &prep.pop,
            d,
            &accounts,
            &[ChurnModel::of(c).expect("model")],
            &vec![0; accounts.len()],
        )
        .expect("predict");
        for (&r, q) in rows.iter().zip(q) {
            assert!((p[r] - q).abs() < 1e-12, "{} vs {q}", p[r]);
        }
    }

    /// A model stored before the book's preparation (percentile and log-value
    /// coefficients, no `group`) reads and predicts as it states: σ(intercept + Σ
    /// coefficient · feature), the log value's missing value where it is absent.
    #[test]
    fn a_model_stored_before_the_book_preparation_predicts_as_stated() {
        let (history, outcomes) = portfolio();
        let prep = prepare(
            &history,
            &outcomes,
            day("2025-07-25"),
            &settings(),
            &Cancel::never(),
        )
        .expect("prepare");
        let stored: StoredCoefficients = serde_json::from_value(serde_json::json!({
            "intercept": -3.0,
            "l2_penalty": 0.01,
            "coefficients": [
                {"kpi": "all_events", "transform": "percentile", "missing": 0.5,
                 "category": "usage", "coefficient": -1.0, "standardized": -0.3,
                 "declared_direction": "higher", "contradicted": false},
                {"kpi": "all_events", "transform": "log_value", "missing": 2.0,
                 "category": "usage", "coefficient": -0.5, "standardized": -0.4,
                 "declared_direction": "higher", "contradicted": false},
                {"kpi": "active_days", "transform": "log_value", "missing": 1.5,
                 "category": "usage", "coefficient": -0.25, "standardized": -0.2,
                 "declared_direction": "higher", "contradicted": false}
            ]
        }))
        .expect("coefficients as stored before");
        assert!(stored.coefficients.iter().all(|k| k.group.is_none()));
        let data = prep.kpi_data(&prep.rows(Scope::Global)).expect("data");
        let p = prep.probabilities(&data, &stored).expect("probabilities");
        let col = |name: &str| {
            data.feature_names
                .iter()
                .position(|f| f == name)
                .expect("column")
        };
        let (pct, log, days) = (
            col("all_events"),
            col("all_events:log"),
            col("active_days:log"),
        );
        let or = |v: f64, missing: f64| if v.is_finite() { v } else { missing };
        for (r, p) in p.iter().enumerate() {
            let x = data.x.row(r);
            let eta = -3.0 - or(x[pct], 0.5) - 0.5 * or(x[log], 2.0) - 0.25 * or(x[days], 1.5);
            assert!((p - sigmoid(eta)).abs() < 1e-15, "row {r}");
        }
    }

    /// A stored profile `id` in weights mode `mode` with category `weights`, every KPI,
    /// no minimum population, created at the portfolio's start.
    fn profile_row(
        id: &str,
        mode: &str,
        weights: serde_json::Value,
        is_default: bool,
    ) -> vitals_store::entity::health_profile::Model {
        let now = at(day("2025-01-01"));
        vitals_store::entity::health_profile::Model {
            id: id.into(),
            display_name: id.into(),
            description: String::new(),
            weights,
            rule: String::new(),
            priority: 1,
            min_population: 1,
            weights_mode: mode.into(),
            kpis: serde_json::json!([]),
            is_default,
            created_at: now,
            updated_at: now,
        }
    }

    /// The portfolio with its first 75 accounts (of 150) in a profile `small`.
    fn with_small_profile() -> (History, Vec<OutcomeRecord>) {
        let (mut history, outcomes) = portfolio();
        history.profiles.push(profile_row(
            "small",
            "learned",
            serde_json::json!({}),
            false,
        ));
        for a in history.accounts.iter_mut().take(75) {
            a.profile_id = Some("small".into());
        }
        (history, outcomes)
    }

    /// The portfolio with every account in one profile `all` of equal category weights in
    /// weights mode `mode`, and a CSM pulse of pure noise every 14 days until its churn.
    fn with_noise_pulses(mode: &str) -> (History, Vec<OutcomeRecord>) {
        let (mut history, outcomes) = portfolio();
        let start = day("2025-01-01");
        let equal = serde_json::json!({"usage": 1, "conversations": 1, "pulse": 1,
            "contract": 1, "custom_metrics": 1});
        history.profiles.push(profile_row("all", mode, equal, true));
        let churn_of: HashMap<String, chrono::NaiveDate> = outcomes
            .iter()
            .map(|o| (o.account_id.clone(), o.at.date_naive()))
            .collect();
        let mut rng = SplitMix64::new(11);
        for a in history.accounts.iter_mut() {
            a.profile_id = Some("all".into());
            for d in (0..210).step_by(14) {
                let when = start + Days::new(d);
                if churn_of.get(&a.id).is_some_and(|c| when >= *c) {
                    break;
                }
                history.pulses.push(vitals_store::entity::pulse::Model {
                    id: history.pulses.len() as i64 + 1,
                    account_id: a.id.clone(),
                    author: "csm".into(),
                    value: 1 + (rng.uniform() * 5.0).floor().min(4.0) as i32,
                    note: String::new(),
                    at: at(when),
                });
            }
        }
        (history, outcomes)
    }

    /// The health score is evaluated with the category weights the scoring service will
    /// use: under `learned` the suggested ones (fitted, in each backtest fold, on the
    /// fold's training part), which move off a pulse of pure noise; under `manual` the
    /// profile's own equal ones. The churn model does not depend on the mode.
    #[test]
    fn the_health_score_is_evaluated_with_the_profiles_weights_mode() {
        let s = settings();
        let fit = |mode: &str| {
            let (history, outcomes) = with_noise_pulses(mode);
            let prep = prepare(&history, &outcomes, day("2025-07-25"), &s, &Cancel::never())
                .expect("prepare");
            fit_scope(&prep, Scope::Profile(0), &s, None).expect("fit")
        };
        let (manual, learned) = (fit("manual"), fit("learned"));
        let suggested = learned
            .category_weights
            .as_ref()
            .expect("suggested weights");
        assert!(
            suggested.usage > 2.0 * suggested.pulse,
            "usage predicts churn, the pulse does not: {suggested:?}"
        );
        assert_eq!(manual.coefficients, learned.coefficients);
        assert_eq!(
            manual.metrics.churn_backtest,
            learned.metrics.churn_backtest
        );
        let (m, l) = (&manual.metrics, &learned.metrics);
        assert_eq!(
            m.health_backtest.folds.len(),
            2,
            "{:?}",
            m.health_backtest.error
        );
        assert!(
            l.health_backtest.mean_auc > m.health_backtest.mean_auc + 0.02,
            "backtest: learned {} against manual {}",
            l.health_backtest.mean_auc,
            m.health_backtest.mean_auc
        );
        assert!(
            l.health.auc > m.health.auc + 0.02,
            "in-sample: learned {} against manual {}",
            l.health.auc,
            m.health.auc
        );
    }

    /// A backtest fold whose test part has no churn fails naming the fold; with the folds
    /// run side by side, the first failing fold in time order is the one reported.
    #[test]
    fn a_backtest_fold_without_churn_is_named_in_time_order() {
        let (history, outcomes) = portfolio();
        let s = settings();
        let prep =
            prepare(&history, &outcomes, day("2025-07-25"), &s, &Cancel::never()).expect("prepare");
        let rows = prep.rows(Scope::Global);
        let categories = prep.category_data(&rows).expect("categories");
        let folds = vitals_learn_core::time_ordered_folds(&prep.data.dates, 2).expect("folds");
        let failing = |from: chrono::NaiveDate| {
            let mut data = prep.kpi_data(&rows).expect("data");
            for r in 0..data.len() {
                if data.dates[r] >= from {
                    data.labels[r] = false;
                }
            }
            match super::super::evaluation::backtests(
                &prep,
                Scope::Global,
                &data,
                &categories,
                2,
                &s,
                None,
            ) {
                Err(LearnerError::FailedPrecondition(m)) => m,
                other => panic!("no failure: {other:?}"),
            }
        };
        // Only the last third without churn: fold 2 fails.
        let m = failing(folds[1].cut);
        assert!(m.contains("backtest fold 2 "), "{m}");
        // Both test parts without churn: fold 1 is reported.
        let m = failing(folds[0].cut);
        assert!(m.contains("backtest fold 1 "), "{m}");
    }

    /// With borrowing, a profile's model is the global model plus a deviation: stored in
    /// the global model's columns, marked with the deviation's `k`, its KPI weights from
    /// it; without, the profile is fitted alone and unmarked.
    #[test]
    fn a_profile_model_borrows_from_the_global_model_fitted_first() {
        let (history, outcomes) = with_small_profile();
        let s = settings();
        let prep =
            prepare(&history, &outcomes, day("2025-07-25"), &s, &Cancel::never()).expect("prepare");
        let small = Scope::Profile(0);
        assert!(prep.churn_count(small) > 0, "the small profile has churns");
        let b = Borrowing::new(&prep).expect("borrowing");
        let global = fit_scope(&prep, Scope::Global, &s, Some(&b)).expect("global");
        assert_eq!(global.metrics.borrowed_from_global, None);
        let borrowed = fit_scope(&prep, small, &s, Some(&b)).expect("small, borrowing");
        let k = borrowed.metrics.borrowed_from_global.expect("marked");
        assert!(vitals_learn_core::DEFAULT_DEVIATION_GRID.contains(&k));
        // The global model's columns (the same KPI terms, groups included).
        let cols = |f: &Fitted| {
            f.coefficients
                .coefficients
                .iter()
                .map(|c| (c.column(), c.group))
                .collect::<Vec<_>>()
        };
        assert_eq!(cols(&borrowed), cols(&global));
        // The global fit kept for the profiles is the stored global model.
        let g = b.full(&prep, &s).expect("global model");
        let (intercept, _) = g.form.kpi_terms(&g.model, prep.specs.len()).expect("terms");
        assert!((intercept - global.coefficients.intercept).abs() < 1e-12);
        assert_eq!(
            borrowed.metrics.churn_backtest.folds.len(),
            2,
            "{:?}",
            borrowed.metrics.churn_backtest.error
        );
        let alone = fit_scope(&prep, small, &s, None).expect("small, alone");
        assert_eq!(alone.metrics.borrowed_from_global, None);
        assert_ne!(borrowed.coefficients, alone.coefficients);
    }

    /// A backtest fold's global model sees only the observations before the cut: labels
    /// changed on and after it leave it unchanged, and it differs from the model on every
    /// observation.
    #[test]
    fn a_folds_global_model_sees_nothing_from_the_cut_on() {
        let (history, outcomes) = with_small_profile();
        let s = settings();
        let prep =
            prepare(&history, &outcomes, day("2025-07-25"), &s, &Cancel::never()).expect("prepare");
        let cut = prep.dates[prep.dates.len() * 2 / 3];
        let b = Borrowing::new(&prep).expect("borrowing");
        let before = b.before(cut, &prep, &s).expect("fold model");
        let mut flipped = Borrowing::new(&prep).expect("borrowing");
        let mut changed = 0;
        for r in 0..flipped.data.len() {
            if flipped.data.dates[r] >= cut {
                flipped.data.labels[r] = !flipped.data.labels[r];
                changed += 1;
            }
        }
        assert!(changed > 0);
        assert_eq!(flipped.before(cut, &prep, &s).expect("fold model"), before);
        assert_ne!(b.full(&prep, &s).expect("full model"), before);
        assert_ne!(
            flipped.full(&prep, &s).expect("full model"),
            b.full(&prep, &s).expect("full")
        );
    }
}

mod budget {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;
    use crate::domain::features::tests::day;
    use tonic::Code;

    fn settings(interval_days: u32, max_dataset_cells: u64) -> Settings {
        Settings {
            horizon_days: 30,
            interval_days,
            prior_strength: 50.0,
            l2_penalty: None,
            max_dataset_cells,
            borrow_from_global: true,
            challenger: false,
        }
    }

    /// A training set over the cell bound is refused before any KPI is computed, with
    /// RESOURCE_EXHAUSTED naming `observation_interval_days` and the limit; a longer
    /// interval under the same bound is built.
    #[test]
    fn a_training_set_over_the_cell_bound_is_refused_naming_the_interval() {
        let (history, outcomes) = super::book::portfolio();
        let as_of = day("2025-07-25");
        let ok = prepare(
            &history,
            &outcomes,
            as_of,
            &settings(14, u64::MAX),
            &Cancel::never(),
        )
        .expect("prepare");
        let cells_14 = (ok.data.len() + ok.censored) * ok.data.n_features();
        // Daily observations hold about 14 times as many cells: over a bound that the
        // two-weekly ones fit in.
        let bound = 2 * cells_14 as u64;
        prepare(
            &history,
            &outcomes,
            as_of,
            &settings(14, bound),
            &Cancel::never(),
        )
        .expect("under the bound");
        let err = prepare(
            &history,
            &outcomes,
            as_of,
            &settings(1, bound),
            &Cancel::never(),
        )
        .expect_err("over the bound");
        assert!(matches!(err, LearnerError::TooLarge(_)), "{err:?}");
        let status = tonic::Status::from(ApiError::from(err));
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(
            status
                .message()
                .starts_with("options.observation_interval_days: ")
                && status.message().contains(&bound.to_string())
                && status
                    .message()
                    .contains("VITALS_LEARNER_MAX_DATASET_CELLS"),
            "{}",
            status.message()
        );
    }

    /// Each stage stops at its next cancellation point once the flag is raised: building
    /// the observations (per date), fitting (per profile / fold / lambda), evaluating.
    #[test]
    fn cancelled_work_stops_at_its_next_check() {
        let (history, outcomes) = super::book::portfolio();
        let as_of = day("2025-07-25");
        let s = settings(14, u64::MAX);
        let raised = Arc::new(AtomicBool::new(false));
        let checks = Arc::new(AtomicUsize::new(0));
        let cancel = {
            let (raised, checks) = (raised.clone(), checks.clone());
            Cancel::new(move || {
                checks.fetch_add(1, Ordering::SeqCst);
                raised.load(Ordering::SeqCst)
            })
        };
        let prep = prepare(&history, &outcomes, as_of, &s, &cancel).expect("prepare");
        assert!(
            checks.load(Ordering::SeqCst) > 5,
            "checked per observation date"
        );
        let fitted = fit_scope(&prep, Scope::Global, &s, None).expect("fit while not cancelled");
        raised.store(true, Ordering::SeqCst);
        match prepare(&history, &outcomes, as_of, &s, &cancel) {
            Err(LearnerError::Learn(LearnError::Cancelled)) => {}
            other => panic!("prepare went on: {other:?}"),
        }
        match fit_scope(&prep, Scope::Global, &s, None) {
            Err(Err(LearnerError::Learn(LearnError::Cancelled))) => {}
            other => panic!("fit went on: {other:?}"),
        }
        let mut prep = prep;
        match evaluate(
            &mut prep,
            Scope::Global,
            &fitted.coefficients,
            &fitted.kpi_weights,
            fitted.category_weights.as_ref(),
            2,
            &s,
        ) {
            Err(LearnerError::Learn(LearnError::Cancelled)) => {}
            other => panic!("evaluate went on: {other:?}"),
        }
    }
}

mod renewals {
    use super::*;
    use crate::domain::features::tests::{active_account, at, day};
    use chrono::NaiveDate;
    use vitals_store::entity::{subscription, usage_daily};
    use vitals_store::learner::outcome_row;
    use vitals_test_support::monthly_subscription;

    /// Monthly subscriptions of `id` back to back from `first` for `months` periods.
    fn monthly(id: &str, first: NaiveDate, months: u32) -> Vec<subscription::Model> {
        (0..months)
            .map(|k| {
                monthly_subscription(
                    id,
                    &format!("{id}-{k}"),
                    at(first + chrono::Months::new(k)),
                    at(first + chrono::Months::new(k + 1)),
                )
            })
            .collect()
    }

    /// `renews` renews every month; `churns` leaves at its 2025-04-10 renewal (recorded);
    /// `silent` has no subscription after 2025-05-10 and no churn recorded; `events`
    /// has no subscription at all. Every account logs in every day until it leaves.
    fn history() -> (History, Vec<OutcomeRecord>) {
        let start = day("2025-01-10");
        let mut history = History {
            event_types: vec!["login".into()],
            ..History::default()
        };
        for (id, months) in [("renews", 7), ("churns", 3), ("silent", 4), ("events", 0)] {
            history.accounts.push(active_account(id, start));
            history.subscriptions.extend(monthly(id, start, months));
            let days = if months == 0 { 200 } else { 30 * months as u64 };
            for d in 0..days {
                history.usage.push(usage_daily::Model {
                    account_id: id.into(),
                    day: start + Days::new(d),
                    event_type: "login".into(),
                    count: 1 + (d % 3) as i64,
                    distinct_users: 1,
                    value_sum: 0.0,
                });
            }
        }
        let outcomes = vec![outcome_row::Model {
            account_id: "churns".into(),
            kind: "churned".into(),
            at: at(day("2025-04-10")),
            recorded_at: at(day("2025-04-10")),
            note: String::new(),
        }];
        (history, outcomes)
    }

    fn settings() -> Settings {
        Settings {
            interval_days: 28,
            ..super::book::settings()
        }
    }

    /// An account with a billing schedule is observed once a few days before each
    /// renewal (and its label settles at the renewal, inside the horizon); a renewal with
    /// nothing on file after it is censored; an account without subscriptions is observed
    /// every `interval_days`.
    #[test]
    fn accounts_are_observed_a_few_days_before_each_renewal() {
        let (history, outcomes) = history();
        let as_of = day("2025-08-01");
        let prep =
            prepare(&history, &outcomes, as_of, &settings(), &Cancel::never()).expect("prepare");
        let rows = |id: &str| -> Vec<(NaiveDate, bool)> {
            (0..prep.data.len())
                .filter(|&r| prep.data.accounts[r] == id)
                .map(|r| (prep.data.dates[r], prep.data.labels[r]))
                .collect()
        };
        // Renewals on the 10th of each month, 02-10 to 07-10 up to as_of: each observed
        // once, 3-9 days before it (on the weekly grid ending at as_of).
        let renewal_after = |d: NaiveDate| {
            (2..=8)
                .map(|m| NaiveDate::from_ymd_opt(2025, m, 10).expect("date"))
                .find(|&r| r > d)
                .expect("a renewal")
        };
        let renews = rows("renews");
        assert_eq!(renews.len(), 6, "{renews:?}");
        let mut before: Vec<NaiveDate> = Vec::new();
        for &(d, label) in &renews {
            let lead = (renewal_after(d) - d).num_days();
            assert!(
                (3..10).contains(&lead),
                "{d} is {lead} days before a renewal"
            );
            assert!(
                !before.contains(&renewal_after(d)),
                "two observations before one renewal"
            );
            before.push(renewal_after(d));
            assert!(!label);
        }
        // The last one (07-04) is settled at its renewal (07-10, with the next
        // subscription on file), before its horizon ends after as_of.
        assert_eq!(renews.last().map(|r| r.0), Some(day("2025-07-04")));
        // Churned at its 04-10 renewal: observed before it (churned) and never after.
        let churns = rows("churns");
        assert_eq!(churns.len(), 3, "{churns:?}");
        assert!(churns.iter().all(|&(d, _)| d < day("2025-04-10")));
        assert_eq!(churns.last().map(|&(_, l)| l), Some(true));
        // Nothing on file after its 05-10 renewal: that observation's label is unknown.
        let silent = rows("silent");
        assert_eq!(silent.len(), 3, "{silent:?}");
        assert!(silent.iter().all(|&(d, l)| d < day("2025-04-10") && !l));
        assert!(prep.censored >= 1);
        // A longer interval thins the renewals too: every other one at 56 days.
        let s56 = Settings {
            interval_days: 56,
            ..settings()
        };
        let thin = prepare(&history, &outcomes, as_of, &s56, &Cancel::never()).expect("prepare");
        let thinned: Vec<NaiveDate> = (0..thin.data.len())
            .filter(|&r| thin.data.accounts[r] == "renews")
            .map(|r| thin.data.dates[r])
            .collect();
        assert_eq!(thinned.len(), 3, "{thinned:?}");
        assert!(thinned.windows(2).all(|w| (w[1] - w[0]).num_days() >= 49));
        // No billing schedule: every 28 days, ending at as_of.
        let events = rows("events");
        assert!(events.len() >= 5, "{events:?}");
        for &(d, _) in &events {
            assert_eq!((as_of - d).num_days() % 28, 0, "{d}");
        }
    }
}
