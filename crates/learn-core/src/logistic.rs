//! L2-regularised logistic regression, fitted by Newton's method (IRLS) with a
//! backtracking line search, parallel over rows with rayon.
//!
//! Objective, for standardised features `z_i`, labels `y_i` in {0, 1} and sample weights
//! `w_i` (class weights), with `eta_i = b + beta . z_i`:
//!
//! ```text
//! L(b, beta) = (1 / sum w) * sum_i w_i [ log(1 + exp(eta_i)) - y_i eta_i ] + (lambda / 2) |beta|^2
//! ```
//!
//! The intercept `b` is not penalised. Gradient and Hessian:
//! `g = Z1^T (w (p - y)) / sum w + lambda beta`,
//! `H = Z1^T diag(w p (1 - p)) Z1 / sum w + lambda I` (no `lambda` on the intercept), where
//! `Z1 = [1, Z]`. Each iteration solves `H d = -g` by Cholesky and halves the step until
//! the objective decreases enough (Armijo). The objective is strictly convex for
//! `lambda > 0`, so this converges quadratically from any start.
//!
//! Why not `linfa-logistic`: it has no sample weights (so no class weights) and, on the
//! 100,000 x 70 benchmark, its L-BFGS is slower; see `docs/learning.md` for the figures. It
//! is kept as a dev-dependency and the tests check that both solvers agree.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis, Slice, linalg::general_mat_mul};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{LearnError, Result, check_finite, check_len};
use crate::standardize::Standardizer;

/// How observations of each class are weighted in the loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub enum ClassWeight {
    /// Every observation counts once.
    None,
    /// Each class carries half of the total weight: churned observations get
    /// `n / (2 n_churned)`, retained ones `n / (2 n_retained)` (scikit-learn's "balanced").
    /// The intercept is then corrected by `-ln(w_churned / w_retained)` so that the
    /// predicted probabilities stay on the real churn-rate scale (prior correction).
    #[default]
    Balanced,
    /// Explicit weights for churned and retained observations (also prior-corrected).
    Custom {
        /// Weight of a churned observation.
        churned: f64,
        /// Weight of a retained observation.
        retained: f64,
    },
}

impl ClassWeight {
    /// Returns (weight of a churned observation, weight of a retained one).
    pub fn weights(&self, churned: usize, retained: usize) -> Result<(f64, f64)> {
        match *self {
            ClassWeight::None => Ok((1.0, 1.0)),
            ClassWeight::Balanced => {
                let n = (churned + retained) as f64;
                if churned == 0 || retained == 0 {
                    return Ok((1.0, 1.0));
                }
                Ok((n / (2.0 * churned as f64), n / (2.0 * retained as f64)))
            }
            ClassWeight::Custom { churned, retained } => {
                if !(churned.is_finite() && retained.is_finite() && churned > 0.0 && retained > 0.0)
                {
                    return Err(LearnError::InvalidParameter {
                        name: "class_weight",
                        reason: format!("weights must be positive, got {churned} and {retained}"),
                    });
                }
                Ok((churned, retained))
            }
        }
    }
}

/// Stopping rules of the Newton solver.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SolverOptions {
    /// Maximum Newton iterations (each one pass for the Hessian, usually one for the step).
    pub max_iterations: usize,
    /// Converged when the largest gradient component is below this.
    pub tolerance: f64,
}

impl Default for SolverOptions {
    fn default() -> Self {
        Self {
            max_iterations: 50,
            tolerance: 1e-8,
        }
    }
}

/// Raw result of [`newton_solve`], on the scale of the features it was given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SolverOutput {
    /// Intercept `b`.
    pub intercept: f64,
    /// Coefficients `beta`, one per feature column.
    pub coefficients: Vec<f64>,
    /// Newton iterations done.
    pub iterations: usize,
    /// Whether the gradient tolerance was met.
    pub converged: bool,
    /// Objective value at the solution.
    pub objective: f64,
}

/// Rows handled by one rayon task: large enough for the small matrix product to be
/// efficient, small enough to split 100,000 rows over both cores evenly.
const CHUNK_ROWS: usize = 2048;

/// Per-chunk accumulators of one pass over the data.
struct Pass {
    loss: f64,
    grad: Array1<f64>,
    hess: Option<Array2<f64>>,
}

/// The coefficients part of `[b, beta]`.
fn tail(theta: ArrayView1<'_, f64>) -> ArrayView1<'_, f64> {
    theta.slice_axis_move(Axis(0), Slice::from(1..))
}

fn softplus(eta: f64) -> f64 {
    eta.max(0.0) + (-eta.abs()).exp().ln_1p()
}

fn sigmoid(eta: f64) -> f64 {
    if eta >= 0.0 {
        1.0 / (1.0 + (-eta).exp())
    } else {
        let e = eta.exp();
        e / (1.0 + e)
    }
}

/// One pass: weighted loss sum, gradient of the data term over `[b, beta]` and optionally
/// the Hessian `Z1^T diag(w p (1-p)) Z1` (unnormalised, without the penalty).
fn data_pass(
    z: ArrayView2<'_, f64>,
    y: &[f64],
    w: &[f64],
    offset: Option<&[f64]>,
    theta: ArrayView1<'_, f64>,
    with_hessian: bool,
    with_gradient: bool,
) -> Pass {
    let p = z.ncols();
    let n = z.nrows();
    let b = theta[0];
    let beta = tail(theta.view());
    let ranges: Vec<(usize, usize)> = (0..n)
        .step_by(CHUNK_ROWS)
        .map(|a| (a, (a + CHUNK_ROWS).min(n)))
        .collect();
    let zero = || Pass {
        loss: 0.0,
        grad: Array1::zeros(p + 1),
        hess: with_hessian.then(|| Array2::zeros((p + 1, p + 1))),
    };
    ranges
        .par_iter()
        .map(|&(lo, hi)| {
            let zc = z.slice_axis(Axis(0), Slice::from(lo..hi));
            let mut eta = zc.dot(&beta) + b;
            if let Some(o) = offset {
                eta += &ArrayView1::from(&o[lo..hi]);
            }
            let mut acc = zero();
            let mut resid = Array1::<f64>::zeros(hi - lo);
            let mut curv = Array1::<f64>::zeros(hi - lo);
            for (k, &e) in eta.iter().enumerate() {
                let (yi, wi) = (y[lo + k], w[lo + k]);
                acc.loss += wi * (softplus(e) - yi * e);
                let pi = sigmoid(e);
                resid[k] = wi * (pi - yi);
                curv[k] = wi * pi * (1.0 - pi);
            }
            if with_gradient {
                acc.grad[0] = resid.sum();
                acc.grad
                    .slice_axis_mut(Axis(0), Slice::from(1..))
                    .assign(&zc.t().dot(&resid));
            }
            if let Some(h) = acc.hess.as_mut() {
                // H = [sum c, (Z^T c)^T; Z^T c, Z^T diag(c) Z], the last block as (sqrt(c) Z)^T (sqrt(c) Z).
                let mut scaled = zc.to_owned();
                for (mut row, &c) in scaled.axis_iter_mut(Axis(0)).zip(curv.iter()) {
                    row *= c.sqrt();
                }
                let cross = zc.t().dot(&curv);
                h[[0, 0]] = curv.sum();
                h.row_mut(0)
                    .slice_axis_mut(Axis(0), Slice::from(1..))
                    .assign(&cross);
                h.column_mut(0)
                    .slice_axis_mut(Axis(0), Slice::from(1..))
                    .assign(&cross);
                let mut block = h
                    .slice_axis_mut(Axis(0), Slice::from(1..))
                    .slice_axis_move(Axis(1), Slice::from(1..));
                general_mat_mul(1.0, &scaled.t(), &scaled, 0.0, &mut block);
            }
            acc
        })
        .reduce(zero, |mut a, b| {
            a.loss += b.loss;
            a.grad += &b.grad;
            if let (Some(ha), Some(hb)) = (a.hess.as_mut(), b.hess.as_ref()) {
                *ha += hb;
            }
            a
        })
}

/// In-place Cholesky solve of `a x = rhs` for a symmetric positive definite `a`.
/// Returns `None` when `a` is not numerically positive definite.
fn cholesky_solve(a: &Array2<f64>, rhs: &Array1<f64>) -> Option<Array1<f64>> {
    let n = a.nrows();
    let mut l = Array2::<f64>::zeros((n, n));
    for i in 0..n {
        for j in 0..=i {
            let mut sum = a[[i, j]];
            for k in 0..j {
                sum -= l[[i, k]] * l[[j, k]];
            }
            if i == j {
                if sum <= 0.0 || !sum.is_finite() {
                    return None;
                }
                l[[i, i]] = sum.sqrt();
            } else {
                l[[i, j]] = sum / l[[j, j]];
            }
        }
    }
    // Forward then backward substitution.
    let mut x = rhs.clone();
    for i in 0..n {
        let mut sum = x[i];
        for k in 0..i {
            sum -= l[[i, k]] * x[k];
        }
        x[i] = sum / l[[i, i]];
    }
    for i in (0..n).rev() {
        let mut sum = x[i];
        for k in i + 1..n {
            sum -= l[[k, i]] * x[k];
        }
        x[i] = sum / l[[i, i]];
    }
    Some(x)
}

/// Fits the weighted, L2-penalised logistic regression on features `z` as given (no
/// standardisation here; see [`LogisticModel::fit`] for the usual entry point).
///
/// `y` holds 1.0 for churned and 0.0 for retained, `w` the positive sample weights,
/// `init` an optional warm start `(intercept, coefficients)` (e.g. the solution for a
/// nearby `lambda`). Errors on shape mismatches, non-finite inputs, negative `lambda`,
/// or a Hessian that stays singular (only possible with `lambda = 0`).
pub fn newton_solve(
    z: ArrayView2<'_, f64>,
    y: &[f64],
    w: &[f64],
    lambda: f64,
    init: Option<(f64, &[f64])>,
    options: SolverOptions,
) -> Result<SolverOutput> {
    newton_solve_offset(z, y, w, None, lambda, init, options)
}

/// [`newton_solve`] with a fixed `offset` added to every row's linear predictor:
/// `eta_i = offset_i + b + beta . z_i`, so `b` and `beta` are a deviation from the model
/// that gave the offsets (e.g. a profile's departure from the global model), and the L2
/// penalty pulls `beta` toward that model rather than toward zero. Without `init` the
/// solver starts at zero deviation (with no offset: at the weighted base rate).
pub fn newton_solve_offset(
    z: ArrayView2<'_, f64>,
    y: &[f64],
    w: &[f64],
    offset: Option<&[f64]>,
    lambda: f64,
    init: Option<(f64, &[f64])>,
    options: SolverOptions,
) -> Result<SolverOutput> {
    let (n, p) = z.dim();
    if n == 0 {
        return Err(LearnError::Empty { what: "features" });
    }
    check_len("labels", n, y.len())?;
    check_len("sample weights", n, w.len())?;
    if let Some(o) = offset {
        check_len("offsets", n, o.len())?;
        check_finite("offsets", o.iter().copied())?;
    }
    check_finite("features", z.iter().copied())?;
    check_finite("labels", y.iter().copied())?;
    check_finite("sample weights", w.iter().copied())?;
    if !(lambda.is_finite() && lambda >= 0.0) {
        return Err(LearnError::InvalidParameter {
            name: "lambda",
            reason: format!("{lambda} is not a finite non-negative number"),
        });
    }
    if w.iter().any(|&wi| wi < 0.0) {
        return Err(LearnError::InvalidParameter {
            name: "sample weights",
            reason: "weights must be non-negative".to_owned(),
        });
    }
    let total_w: f64 = w.iter().sum();
    if total_w <= 0.0 {
        return Err(LearnError::InvalidParameter {
            name: "sample weights",
            reason: "weights sum to zero".to_owned(),
        });
    }

    let mut theta = Array1::<f64>::zeros(p + 1);
    match init {
        Some((b0, beta0)) => {
            check_len("initial coefficients", p, beta0.len())?;
            theta[0] = b0;
            theta
                .slice_axis_mut(Axis(0), Slice::from(1..))
                .assign(&ArrayView1::from(beta0));
        }
        None if offset.is_some() => {}
        None => {
            // Start at the weighted base rate: the exact optimum when beta = 0.
            let rate = y.iter().zip(w).map(|(yi, wi)| yi * wi).sum::<f64>() / total_w;
            let rate = rate.clamp(1e-6, 1.0 - 1e-6);
            theta[0] = (rate / (1.0 - rate)).ln();
        }
    }

    let objective = |pass_loss: f64, th: &Array1<f64>| {
        let beta = tail(th.view());
        pass_loss / total_w + 0.5 * lambda * beta.dot(&beta)
    };

    let mut iterations = 0;
    let mut converged = false;
    let mut pass = data_pass(z, y, w, offset, theta.view(), true, true);
    let mut f = objective(pass.loss, &theta);
    while iterations < options.max_iterations {
        let mut g = &pass.grad / total_w;
        g.slice_axis_mut(Axis(0), Slice::from(1..))
            .scaled_add(lambda, &tail(theta.view()));
        let gmax = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        if gmax < options.tolerance {
            converged = true;
            break;
        }
        let mut h = pass
            .hess
            .take()
            .unwrap_or_else(|| Array2::zeros((p + 1, p + 1)));
        h /= total_w;
        for j in 1..=p {
            h[[j, j]] += lambda;
        }
        let neg_g = -&g;
        let step = match cholesky_solve(&h, &neg_g) {
            Some(d) => d,
            None => {
                // Only reachable without a penalty on collinear or separable data: add a
                // tiny ridge so that the step stays defined.
                let jitter = 1e-8 * (1.0 + h.diag().iter().fold(0.0f64, |m, v| m.max(v.abs())));
                for j in 0..=p {
                    h[[j, j]] += jitter;
                }
                cholesky_solve(&h, &neg_g).ok_or(LearnError::Singular { lambda })?
            }
        };
        iterations += 1;
        let slope = g.dot(&step);
        let mut t = 1.0;
        let mut accepted = None;
        while t > 1e-10 {
            let cand = &theta + &(&step * t);
            let cand_pass = data_pass(z, y, w, offset, cand.view(), false, false);
            let fc = objective(cand_pass.loss, &cand);
            if fc <= f + 1e-4 * t * slope {
                accepted = Some((cand, fc));
                break;
            }
            t *= 0.5;
        }
        let Some((cand, fc)) = accepted else {
            // No decrease possible along the Newton direction: we are at the optimum to
            // machine precision.
            converged = gmax < options.tolerance.sqrt();
            break;
        };
        let tiny_change = (f - fc).abs() <= 1e-15 * (1.0 + f.abs());
        theta = cand;
        f = fc;
        pass = data_pass(z, y, w, offset, theta.view(), true, true);
        if tiny_change {
            let mut g = &pass.grad / total_w;
            g.slice_axis_mut(Axis(0), Slice::from(1..))
                .scaled_add(lambda, &tail(theta.view()));
            converged = g.iter().fold(0.0f64, |m, v| m.max(v.abs())) < options.tolerance.sqrt();
            break;
        }
    }
    Ok(SolverOutput {
        intercept: theta[0],
        coefficients: tail(theta.view()).to_vec(),
        iterations,
        converged,
        objective: f,
    })
}

/// Options of one logistic-regression fit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogisticOptions {
    /// L2 penalty `lambda` on the standardised coefficients (objective above; the data
    /// term is a weighted mean, so `lambda` does not scale with the number of rows).
    pub lambda: f64,
    /// Class-imbalance handling.
    pub class_weight: ClassWeight,
    /// Solver stopping rules.
    pub solver: SolverOptions,
}

impl Default for LogisticOptions {
    fn default() -> Self {
        Self {
            lambda: 1e-3,
            class_weight: ClassWeight::Balanced,
            solver: SolverOptions::default(),
        }
    }
}

/// A fitted churn model: standardisation plus logistic regression. Serialisable so the
/// learner service can persist and version it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticModel {
    /// Names of the features, in column order.
    pub feature_names: Vec<String>,
    /// The standardisation learned on the training set.
    pub standardizer: Standardizer,
    /// Intercept on the standardised scale, after the class-weight prior correction: the
    /// log-odds of churn of an average observation.
    pub intercept: f64,
    /// Coefficient of each standardised feature: the change in the log-odds of churn when
    /// the feature rises by one standard deviation (positive = more risk).
    pub coefficients: Vec<f64>,
    /// The `lambda` the model was fitted with.
    pub lambda: f64,
    /// The class weights used (churned, retained).
    pub class_weights: (f64, f64),
    /// Newton iterations used.
    pub iterations: usize,
    /// Whether the solver met its tolerance.
    pub converged: bool,
}

/// Solver targets (0/1), sample weights, and the (churned, retained) class weights.
type TargetsAndWeights = (Vec<f64>, Vec<f64>, (f64, f64));

/// Converts labels to the solver's 0/1 targets and class sample weights.
pub(crate) fn targets_and_weights(labels: &[bool], cw: ClassWeight) -> Result<TargetsAndWeights> {
    let churned = labels.iter().filter(|&&l| l).count();
    let retained = labels.len() - churned;
    let (wp, wn) = cw.weights(churned, retained)?;
    let y = labels.iter().map(|&l| if l { 1.0 } else { 0.0 }).collect();
    let w = labels.iter().map(|&l| if l { wp } else { wn }).collect();
    Ok((y, w, (wp, wn)))
}

impl LogisticModel {
    /// Standardises `x` (rows are observations, NaN = missing) and fits the model to
    /// `labels` (true = churned within the horizon).
    ///
    /// Errors when shapes disagree, there are no rows, only one class is present, or the
    /// options are invalid.
    pub fn fit(
        feature_names: &[String],
        x: ArrayView2<'_, f64>,
        labels: &[bool],
        options: &LogisticOptions,
    ) -> Result<Self> {
        Self::fit_warm(feature_names, x, labels, options, None)
    }

    /// Like [`LogisticModel::fit`], starting the solver from another model's intercept and
    /// coefficients (same features), which saves iterations along a `lambda` path.
    pub fn fit_warm(
        feature_names: &[String],
        x: ArrayView2<'_, f64>,
        labels: &[bool],
        options: &LogisticOptions,
        warm: Option<&LogisticModel>,
    ) -> Result<Self> {
        check_len("feature names", x.ncols(), feature_names.len())?;
        check_len("labels", x.nrows(), labels.len())?;
        if x.nrows() == 0 {
            return Err(LearnError::Empty {
                what: "training set",
            });
        }
        let churned = labels.iter().filter(|&&l| l).count();
        if churned == 0 || churned == labels.len() {
            return Err(LearnError::SingleClass {
                what: "training set".to_owned(),
                positives: churned,
                negatives: labels.len() - churned,
            });
        }
        let standardizer = Standardizer::fit(x);
        let z = standardizer.transform(x)?;
        let (y, w, class_weights) = targets_and_weights(labels, options.class_weight)?;
        let correction = (class_weights.0 / class_weights.1).ln();
        let init = warm.map(|m| (m.intercept + correction, m.coefficients.as_slice()));
        let out = newton_solve(z.view(), &y, &w, options.lambda, init, options.solver)?;
        Ok(Self {
            feature_names: feature_names.to_vec(),
            standardizer,
            intercept: out.intercept - correction,
            coefficients: out.coefficients,
            lambda: options.lambda,
            class_weights,
            iterations: out.iterations,
            converged: out.converged,
        })
    }

    /// Log-odds of churn for each row of raw features `x`.
    pub fn decision_function(&self, x: ArrayView2<'_, f64>) -> Result<Vec<f64>> {
        let z = self.standardizer.transform(x)?;
        let beta = ArrayView1::from(self.coefficients.as_slice());
        Ok((z.dot(&beta) + self.intercept).to_vec())
    }

    /// Churn probability (within the training horizon) for each row of raw features `x`.
    pub fn predict_proba(&self, x: ArrayView2<'_, f64>) -> Result<Vec<f64>> {
        Ok(self
            .decision_function(x)?
            .into_iter()
            .map(sigmoid)
            .collect())
    }

    /// Churn probability of one account from its raw feature vector.
    pub fn predict_one(&self, features: &[f64]) -> Result<f64> {
        check_len("features", self.coefficients.len(), features.len())?;
        let eta: f64 = features
            .iter()
            .enumerate()
            .map(|(j, &v)| {
                let zj = if v.is_finite() {
                    (v - self.standardizer.means[j]) / self.standardizer.scales[j]
                } else {
                    0.0
                };
                zj * self.coefficients[j]
            })
            .sum();
        Ok(sigmoid(eta + self.intercept))
    }

    /// Coefficients and intercept on the raw feature scale:
    /// `beta_raw_j = beta_j / scale_j`, `b_raw = b - sum_j beta_j mean_j / scale_j`.
    pub fn raw_coefficients(&self) -> (f64, Vec<f64>) {
        let s = &self.standardizer;
        let raw: Vec<f64> = self
            .coefficients
            .iter()
            .zip(&s.scales)
            .map(|(b, sc)| b / sc)
            .collect();
        let b = self.intercept - raw.iter().zip(&s.means).map(|(r, m)| r * m).sum::<f64>();
        (b, raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn cholesky_solves_small_system() {
        let a = array![[4.0, 2.0, 0.6], [2.0, 5.0, 1.0], [0.6, 1.0, 3.0]];
        let x = array![1.0, -2.0, 0.5];
        let b = a.dot(&x);
        let got = cholesky_solve(&a, &b).unwrap();
        for (g, e) in got.iter().zip(x.iter()) {
            assert!((g - e).abs() < 1e-12);
        }
        assert!(cholesky_solve(&array![[1.0, 2.0], [2.0, 1.0]], &array![1.0, 1.0]).is_none());
    }

    #[test]
    fn gradient_is_zero_at_solution() {
        let z = array![
            [0.0, 1.0],
            [1.0, 0.5],
            [2.0, -1.0],
            [3.0, 0.0],
            [4.0, 2.0],
            [5.0, -0.5]
        ];
        let y = [0.0, 0.0, 1.0, 0.0, 1.0, 1.0];
        let w = [1.0, 2.0, 1.0, 1.0, 3.0, 1.0];
        let lambda = 0.1;
        let out = newton_solve(z.view(), &y, &w, lambda, None, SolverOptions::default()).unwrap();
        assert!(out.converged);
        // Numerical gradient of the objective at the solution is ~0.
        let obj = |b: f64, beta: &[f64]| {
            let tw: f64 = w.iter().sum();
            let mut l = 0.0;
            for i in 0..6 {
                let e = b + beta[0] * z[[i, 0]] + beta[1] * z[[i, 1]];
                l += w[i] * (softplus(e) - y[i] * e);
            }
            l / tw + 0.5 * lambda * (beta[0] * beta[0] + beta[1] * beta[1])
        };
        let (b, beta) = (out.intercept, out.coefficients.clone());
        let h = 1e-6;
        let db = (obj(b + h, &beta) - obj(b - h, &beta)) / (2.0 * h);
        let d0 = (obj(b, &[beta[0] + h, beta[1]]) - obj(b, &[beta[0] - h, beta[1]])) / (2.0 * h);
        let d1 = (obj(b, &[beta[0], beta[1] + h]) - obj(b, &[beta[0], beta[1] - h])) / (2.0 * h);
        assert!(
            db.abs() < 1e-7 && d0.abs() < 1e-7 && d1.abs() < 1e-7,
            "{db} {d0} {d1}"
        );
        assert!((obj(b, &beta) - out.objective).abs() < 1e-12);
    }

    #[test]
    fn rejects_bad_input() {
        let z = array![[0.0], [1.0]];
        let r = newton_solve(
            z.view(),
            &[0.0, 1.0],
            &[1.0, 1.0],
            -1.0,
            None,
            SolverOptions::default(),
        );
        assert!(matches!(
            r,
            Err(LearnError::InvalidParameter { name: "lambda", .. })
        ));
        let r = newton_solve(
            z.view(),
            &[0.0],
            &[1.0, 1.0],
            1.0,
            None,
            SolverOptions::default(),
        );
        assert!(matches!(r, Err(LearnError::ShapeMismatch { .. })));
        let names = vec!["a".to_owned()];
        let r = LogisticModel::fit(&names, z.view(), &[true, true], &LogisticOptions::default());
        assert!(matches!(r, Err(LearnError::SingleClass { .. })));
    }
}
