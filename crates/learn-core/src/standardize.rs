//! Feature standardisation: z-scores with the training set's mean and standard deviation.

use ndarray::{Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::error::{Result, check_len};

/// Per-feature mean and scale learned on a training set; turns raw features into z-scores
/// so that one L2 penalty treats every feature alike and coefficients compare across
/// features (a coefficient is the change in log-odds for one standard deviation).
///
/// Missing values (NaN) are ignored when fitting and replaced by the mean (z = 0) when
/// transforming, so a missing KPI neither raises nor lowers the risk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Mean of each feature over its non-missing training values (0 when all are missing).
    pub means: Vec<f64>,
    /// Population standard deviation of each feature; 1 for constant or all-missing
    /// features, whose z-score is then always 0 and whose coefficient stays 0.
    pub scales: Vec<f64>,
}

impl Standardizer {
    /// Learns the means and scales from `x` (rows are observations).
    pub fn fit(x: ArrayView2<'_, f64>) -> Self {
        let mut means = Vec::with_capacity(x.ncols());
        let mut scales = Vec::with_capacity(x.ncols());
        for col in x.axis_iter(Axis(1)) {
            let (mut n, mut sum) = (0usize, 0.0);
            for &v in col.iter().filter(|v| v.is_finite()) {
                n += 1;
                sum += v;
            }
            let mean = if n > 0 { sum / n as f64 } else { 0.0 };
            let var = if n > 0 {
                col.iter()
                    .filter(|v| v.is_finite())
                    .map(|v| (v - mean) * (v - mean))
                    .sum::<f64>()
                    / n as f64
            } else {
                0.0
            };
            let sd = var.sqrt();
            means.push(mean);
            // Constant columns would divide by zero; scale 1 keeps them at z = 0.
            scales.push(if sd > 1e-12 * (1.0 + mean.abs()) {
                sd
            } else {
                1.0
            });
        }
        Self { means, scales }
    }

    /// Number of features this standardiser was fitted on.
    pub fn n_features(&self) -> usize {
        self.means.len()
    }

    /// Returns the z-scores of `x`; NaN and infinite values become 0 (the mean).
    pub fn transform(&self, x: ArrayView2<'_, f64>) -> Result<Array2<f64>> {
        check_len("feature columns", self.n_features(), x.ncols())?;
        let mut z = x.to_owned();
        for (j, mut col) in z.axis_iter_mut(Axis(1)).enumerate() {
            let (m, s) = (self.means[j], self.scales[j]);
            col.mapv_inplace(|v| if v.is_finite() { (v - m) / s } else { 0.0 });
        }
        Ok(z)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn z_scores_and_missing_values() {
        let x = array![[1.0, 5.0, f64::NAN], [3.0, 5.0, 2.0], [5.0, 5.0, 4.0]];
        let s = Standardizer::fit(x.view());
        assert_eq!(s.means, vec![3.0, 5.0, 3.0]);
        assert!((s.scales[0] - (8.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(s.scales[1], 1.0);
        assert_eq!(s.scales[2], 1.0);
        let z = s.transform(x.view()).unwrap();
        assert!((z[[0, 0]] + (1.5f64).sqrt()).abs() < 1e-12);
        assert_eq!(z[[1, 1]], 0.0);
        assert_eq!(z[[0, 2]], 0.0);
        assert_eq!(z[[2, 2]], 1.0);
        assert!(s.transform(array![[1.0]].view()).is_err());
    }
}
