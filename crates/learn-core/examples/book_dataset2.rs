//! Apples to apples with the book's logistic regression: the same observations, labels
//! and behavioural metrics (`socialnet7/book/dataset2.csv.gz`), our L2 logistic regression
//! with time-ordered CV for lambda.
//!
//! Run: `cargo run --release -p vitals-learn-core --example book_dataset2`
//! (set `VITALS_DATA_DIR` when the shared data is not at `../shared/data`).

#[path = "../tests/common/book.rs"]
mod book;

use std::process::ExitCode;
use std::time::Instant;

use vitals_learn_core::{
    ClassWeight, Evaluation, TrainOptions, backtest_model, fit_cv, top_decile_lift,
};

fn main() -> ExitCode {
    let path = book::dataset2_path();
    if !path.exists() {
        eprintln!("{}", book::missing_notice(&path));
        return ExitCode::from(2);
    }
    let raw = match book::load_raw(&path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot read {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let churned = raw.labels.iter().filter(|&&l| l).count();
    println!(
        "dataset2: {} observations, {} churned ({:.1} %), {} metrics, {} .. {}",
        raw.labels.len(),
        churned,
        100.0 * churned as f64 / raw.labels.len() as f64,
        raw.names.len(),
        raw.dates
            .iter()
            .min()
            .map(|d| d.to_string())
            .unwrap_or_default(),
        raw.dates
            .iter()
            .max()
            .map(|d| d.to_string())
            .unwrap_or_default(),
    );
    println!("book: in-sample AUC 0.742 lift 4.24; backtest AUC 0.705 lift 4.37\n");
    println!(
        "{:<55} {:>8} {:>10} {:>8} {:>9} {:>9} {:>7} {:>7}",
        "features / class weights",
        "lambda",
        "in-AUC",
        "in-lift",
        "bt-AUC",
        "bt-lift",
        "brier",
        "secs"
    );
    for transform in book::Transform::ALL {
        let (data, transformed) = book::features(&raw, transform);
        if transform == book::Transform::Log {
            println!("(log/asinh-transformed: {})", transformed.join(", "));
        }
        for (cw_name, cw) in [
            ("balanced", ClassWeight::Balanced),
            ("none", ClassWeight::None),
        ] {
            let options = TrainOptions {
                class_weight: cw,
                class_weight_candidates: Vec::new(),
                ..TrainOptions::default()
            };
            let t = Instant::now();
            let result = fit_cv(&data, &options).and_then(|(model, sel)| {
                let p = model.predict_proba(data.x.view())?;
                let ev = Evaluation::of_probabilities(&p, &data.labels)?;
                let bt = backtest_model(&data, 2, &options)?;
                Ok((model, sel, ev, bt))
            });
            match result {
                Ok((model, sel, ev, bt)) => {
                    println!(
                        "{:<55} {:>8.0e} {:>10.4} {:>8.2} {:>9.4} {:>9.2} {:>7.4} {:>7.2}",
                        format!("{} / {cw_name}", transform.describe()),
                        sel.lambda,
                        ev.auc,
                        ev.top_decile_lift,
                        bt.mean_auc,
                        bt.mean_top_decile_lift,
                        ev.brier.unwrap_or(f64::NAN),
                        t.elapsed().as_secs_f64(),
                    );
                    if transform == book::Transform::Log && cw == ClassWeight::Balanced {
                        for f in &bt.folds {
                            println!(
                                "    fold from {}: train {} test {} ({} churned) AUC {:.4} lift {:.2}",
                                f.cut,
                                f.n_train,
                                f.n_test,
                                f.test_churned,
                                f.auc,
                                f.top_decile_lift
                            );
                        }
                        println!("    coefficients (per SD, + = more risk):");
                        for (n, b) in model.feature_names.iter().zip(&model.coefficients) {
                            println!("      {n:<24} {b:+.3}");
                        }
                        println!("    calibration (deciles): mean predicted vs observed, count");
                        for c in &ev.calibration {
                            println!(
                                "      {:.4} vs {:.4}  n={}",
                                c.mean_predicted, c.observed_rate, c.count
                            );
                        }
                        let s = model.decision_function(data.x.view()).unwrap_or_default();
                        let _ = top_decile_lift(&s, &data.labels);
                    }
                }
                Err(e) => println!("{:<55} failed: {e}", transform.describe()),
            }
        }
    }
    linfa_comparison(&raw);
    ExitCode::SUCCESS
}

/// linfa-logistic (L-BFGS, no sample weights, so no class weights) on the same
/// log-transformed, standardised features, with the lambda our CV picked for
/// unweighted fits (linfa's alpha = lambda x n since its loss is a sum).
fn linfa_comparison(raw: &book::Raw) {
    use linfa::traits::Fit;
    use linfa_logistic::LogisticRegression;
    use ndarray::Array1;
    use vitals_learn_core::{Standardizer, auc, backtest, time_ordered_folds};

    let (data, _) = book::features(raw, book::Transform::Log);
    let lambda = match vitals_learn_core::select_lambda(
        &data,
        &TrainOptions {
            class_weight: ClassWeight::None,
            class_weight_candidates: Vec::new(),
            ..TrainOptions::default()
        },
    ) {
        Ok(s) => s.lambda,
        Err(e) => {
            println!("linfa comparison skipped: {e}");
            return;
        }
    };
    let fit_score = |train: &vitals_learn_core::Dataset,
                     test: &vitals_learn_core::Dataset|
     -> vitals_learn_core::Result<Vec<f64>> {
        let st = Standardizer::fit(train.x.view());
        let z = st.transform(train.x.view())?;
        let zt = st.transform(test.x.view())?;
        let y: Array1<bool> = train.labels.iter().copied().collect();
        let model = LogisticRegression::default()
            .alpha(lambda * train.len() as f64)
            .max_iterations(500)
            .fit(&linfa::Dataset::new(z, y))
            .map_err(|e| vitals_learn_core::LearnError::InvalidParameter {
                name: "linfa",
                reason: e.to_string(),
            })?;
        // linfa's parameters give the log-odds of `false` (see tests/learning.rs): negate.
        Ok((zt.dot(model.params()) + model.intercept())
            .mapv(|v| -v)
            .to_vec())
    };
    let t = Instant::now();
    let in_sample = fit_score(&data, &data).and_then(|s| auc(&s, &data.labels));
    let bt = time_ordered_folds(&data.dates, 2).and_then(|f| backtest(&data, &f, fit_score));
    match (in_sample, bt) {
        (Ok(a), Ok(bt)) => println!(
            "{:<55} {:>8.0e} {:>10.4} {:>8} {:>9.4} {:>9.2} {:>7} {:>7.2}",
            "linfa-logistic L-BFGS, log features / none",
            lambda,
            a,
            "",
            bt.mean_auc,
            bt.mean_top_decile_lift,
            "",
            t.elapsed().as_secs_f64()
        ),
        (Err(e), _) | (_, Err(e)) => println!("linfa comparison failed: {e}"),
    }
}
