//! How KPIs become the churn model's feature columns.
//!
//! A KPI can enter the model in three forms ([`FeatureTransform`]):
//!
//! - its **peer percentile** (scoring-core's mid-rank percentile, already turned so that
//!   higher is healthier), in `[0, 1]`: robust to outliers and comparable across KPIs, but
//!   capped: an account with almost no activity stands no further out than the lowest
//!   ranks, however extreme it is;
//! - its **log-scaled value**: `s * sign(v) * ln(1 + |v|)` with `s` = +1 when higher is
//!   healthier and -1 otherwise (so that, like the percentile, higher is healthier). For
//!   counts and days this is `log1p`; for signed KPIs (percent changes, slopes) the same
//!   curve mirrored. It keeps the tail the percentile caps (the book's models use log or
//!   asinh transforms of fat-tailed metrics for the same reason) and is comparable across
//!   dates (a percentile is relative to that day's peers);
//! - its **value** `s * v` (higher = healthier), which the book's preparation
//!   ([`crate::prepare`]) uses for KPIs that are not fat-tailed.
//!
//! [`FeatureLayout`] lists the forms used; its columns are transform-major: every KPI's
//! percentile (named like the KPI, as before the log values existed), then every KPI's
//! log value (named `<kpi>:log`), then every value (`<kpi>:value`) when listed. A missing value is NaN, which the model's
//! standardisation replaces by the training mean (z = 0). The KPI weights take each KPI's
//! healthy effect as the sum of its columns' standardised effects
//! ([`FeatureLayout::kpi_coefficients`]).

use serde::{Deserialize, Serialize};

use crate::error::{LearnError, Result, check_len};
use crate::weights::{Direction, KpiSpec};

/// Suffix of the column name of a KPI's log-scaled value.
pub const LOG_SUFFIX: &str = ":log";

/// Suffix of the column name of a KPI's direction-adjusted raw value.
pub const VALUE_SUFFIX: &str = ":value";

/// One form in which a KPI enters the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FeatureTransform {
    /// The direction-adjusted peer percentile, in `[0, 1]` (higher = healthier).
    #[default]
    Percentile,
    /// The direction-adjusted signed `log1p` of the raw KPI value (higher = healthier).
    LogValue,
    /// The direction-adjusted raw KPI value, `s * v` (higher = healthier): the form the
    /// book's preparation ([`crate::prepare`]) keeps for KPIs that are not fat-tailed.
    Value,
}

impl FeatureTransform {
    /// Stable name (as stored with a model).
    pub fn as_str(self) -> &'static str {
        match self {
            FeatureTransform::Percentile => "percentile",
            FeatureTransform::LogValue => "log_value",
            FeatureTransform::Value => "value",
        }
    }

    /// The column name of KPI `kpi` in this form.
    pub fn column_name(self, kpi: &str) -> String {
        match self {
            FeatureTransform::Percentile => kpi.to_owned(),
            FeatureTransform::LogValue => format!("{kpi}{LOG_SUFFIX}"),
            FeatureTransform::Value => format!("{kpi}{VALUE_SUFFIX}"),
        }
    }

    /// The KPI and the form of a column name ([`FeatureTransform::column_name`]'s
    /// inverse): `<kpi>:log` is a log value, `<kpi>:value` a value, anything else a
    /// percentile.
    pub fn parse_column(name: &str) -> (&str, FeatureTransform) {
        if let Some(kpi) = name.strip_suffix(LOG_SUFFIX) {
            (kpi, FeatureTransform::LogValue)
        } else if let Some(kpi) = name.strip_suffix(VALUE_SUFFIX) {
            (kpi, FeatureTransform::Value)
        } else {
            (name, FeatureTransform::Percentile)
        }
    }

    /// The feature value of a KPI in this form, from its direction-adjusted percentile
    /// and its raw value (either may be absent); NaN when the needed input is absent or
    /// not finite.
    pub fn value(self, percentile: Option<f64>, raw: Option<f64>, direction: Direction) -> f64 {
        let v = match self {
            FeatureTransform::Percentile => percentile,
            FeatureTransform::LogValue => raw.map(|v| direction.sign() * signed_log1p(v)),
            FeatureTransform::Value => raw.map(|v| direction.sign() * v),
        };
        v.filter(|v| v.is_finite()).unwrap_or(f64::NAN)
    }
}

/// The percentile a KPI that does not apply to an account (no value) is given: the median
/// peer, so that it neither raises nor lowers the risk. Its log value and value are NaN.
pub const MISSING_PERCENTILE: f64 = 0.5;

/// The value of feature column `name` for one account, as the learner's training set
/// holds it: `kpi` gives the KPI's direction-adjusted peer percentile (`None`: the KPI
/// does not apply, read as [`MISSING_PERCENTILE`]), its raw value and its direction, or
/// `None` when the KPI is unknown (NaN: missing, which the booster handles). What the
/// scoring service and the learner both use to feed a stored booster.
pub fn column_value(
    name: &str,
    kpi: impl Fn(&str) -> Option<(Option<f64>, Option<f64>, Direction)>,
) -> f64 {
    let (k, t) = FeatureTransform::parse_column(name);
    match kpi(k) {
        Some((percentile, raw, direction)) => t.value(
            Some(percentile.unwrap_or(MISSING_PERCENTILE)),
            raw,
            direction,
        ),
        None => f64::NAN,
    }
}

/// `sign(v) * ln(1 + |v|)`: `log1p` for non-negative values, mirrored for negative ones,
/// so that it is defined, continuous and monotone on the whole line.
pub fn signed_log1p(v: f64) -> f64 {
    if v >= 0.0 { v.ln_1p() } else { -(-v).ln_1p() }
}

/// The forms in which every KPI enters the model, in column-block order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureLayout {
    /// One block of columns (one per KPI) per transform, in this order; no repeats.
    pub transforms: Vec<FeatureTransform>,
}

impl Default for FeatureLayout {
    /// Percentiles and log-scaled values.
    fn default() -> Self {
        Self {
            transforms: vec![FeatureTransform::Percentile, FeatureTransform::LogValue],
        }
    }
}

impl FeatureLayout {
    /// Percentiles only (the layout of models trained before the log values existed).
    pub fn percentiles_only() -> Self {
        Self {
            transforms: vec![FeatureTransform::Percentile],
        }
    }

    /// Errors when the layout has no transform or repeats one.
    pub fn validate(&self) -> Result<()> {
        if self.transforms.is_empty() {
            return Err(LearnError::InvalidParameter {
                name: "feature layout",
                reason: "no transform".to_owned(),
            });
        }
        for (i, t) in self.transforms.iter().enumerate() {
            if self.transforms[..i].contains(t) {
                return Err(LearnError::InvalidParameter {
                    name: "feature layout",
                    reason: format!("transform {} listed twice", t.as_str()),
                });
            }
        }
        Ok(())
    }

    /// Number of columns for `n_kpis` KPIs.
    pub fn n_columns(&self, n_kpis: usize) -> usize {
        self.transforms.len() * n_kpis
    }

    /// (KPI index, transform) of every column, in column order.
    pub fn columns(&self, n_kpis: usize) -> Vec<(usize, FeatureTransform)> {
        self.transforms
            .iter()
            .flat_map(|&t| (0..n_kpis).map(move |k| (k, t)))
            .collect()
    }

    /// Column names, in column order.
    pub fn names(&self, kpis: &[KpiSpec]) -> Vec<String> {
        self.columns(kpis.len())
            .into_iter()
            .map(|(k, t)| t.column_name(&kpis[k].name))
            .collect()
    }

    /// One observation's feature row: `percentile(k)` is KPI `k`'s direction-adjusted
    /// percentile, `raw(k)` its raw value (`None` = missing, which becomes NaN). The
    /// direction of each KPI is `kpis[k].direction`.
    pub fn row(
        &self,
        kpis: &[KpiSpec],
        percentile: impl Fn(usize) -> Option<f64>,
        raw: impl Fn(usize) -> Option<f64>,
    ) -> Vec<f64> {
        self.columns(kpis.len())
            .into_iter()
            .map(|(k, t)| t.value(percentile(k), raw(k), kpis[k].direction))
            .collect()
    }

    /// Each KPI's coefficient on the healthy-direction scale: the sum of its columns'
    /// standardised coefficients (every column is higher-is-healthier, so the sum is the
    /// KPI's total effect; positive = more churn risk). Feed it to
    /// [`crate::kpi_weights`] with [`FeatureLayout::weight_specs`].
    pub fn kpi_coefficients(&self, n_kpis: usize, coefficients: &[f64]) -> Result<Vec<f64>> {
        check_len("coefficients", self.n_columns(n_kpis), coefficients.len())?;
        let mut out = vec![0.0; n_kpis];
        for ((k, _), c) in self.columns(n_kpis).into_iter().zip(coefficients) {
            out[k] += c;
        }
        Ok(out)
    }

    /// The KPI specs the weights are computed with: as given, but higher-is-better,
    /// since every column has been turned to the healthy direction.
    pub fn weight_specs(&self, kpis: &[KpiSpec]) -> Vec<KpiSpec> {
        kpis.iter()
            .map(|k| KpiSpec {
                direction: Direction::HigherIsBetter,
                ..k.clone()
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A usage KPI of prior weight 1 (shared with the other modules' tests).
    pub(crate) fn spec(name: &str, direction: Direction) -> KpiSpec {
        KpiSpec {
            name: name.to_owned(),
            category: "usage".to_owned(),
            direction,
            prior_weight: 1.0,
        }
    }

    #[test]
    fn signed_log_is_monotone_and_odd() {
        assert_eq!(signed_log1p(0.0), 0.0);
        assert!((signed_log1p(9.0) - 10f64.ln()).abs() < 1e-12);
        assert!((signed_log1p(-9.0) + 10f64.ln()).abs() < 1e-12);
        let xs = [-1e6, -5.0, -0.5, 0.0, 0.5, 5.0, 1e6];
        assert!(
            xs.windows(2)
                .all(|w| signed_log1p(w[0]) < signed_log1p(w[1]))
        );
    }

    #[test]
    fn layout_columns_rows_and_coefficients() {
        let kpis = [
            spec("events", Direction::HigherIsBetter),
            spec("idle_days", Direction::HigherIsWorse),
        ];
        let layout = FeatureLayout::default();
        layout.validate().unwrap();
        assert_eq!(
            layout.names(&kpis),
            vec!["events", "idle_days", "events:log", "idle_days:log"]
        );
        let pct = [Some(0.9), None];
        let raw = [Some(99.0), Some(3.0)];
        let row = layout.row(&kpis, |k| pct[k], |k| raw[k]);
        assert_eq!(row[0], 0.9);
        assert!(row[1].is_nan());
        assert!((row[2] - 100f64.ln()).abs() < 1e-12);
        // Higher idle days are worse: the healthy-direction log value is negative.
        assert!((row[3] + 4f64.ln()).abs() < 1e-12);
        let c = layout
            .kpi_coefficients(2, &[-0.5, 0.25, -0.25, -1.0])
            .unwrap();
        assert_eq!(c, vec![-0.75, -0.75]);
        assert!(layout.kpi_coefficients(2, &[1.0]).is_err());
        assert!(
            layout
                .weight_specs(&kpis)
                .iter()
                .all(|k| k.direction == Direction::HigherIsBetter)
        );
        assert_eq!(FeatureLayout::percentiles_only().names(&kpis).len(), 2);
        let twice = FeatureLayout {
            transforms: vec![FeatureTransform::LogValue, FeatureTransform::LogValue],
        };
        assert!(twice.validate().is_err());
        assert!(FeatureLayout { transforms: vec![] }.validate().is_err());
    }

    #[test]
    fn missing_and_non_finite_inputs_are_nan() {
        let t = FeatureTransform::LogValue;
        assert!(t.value(Some(0.5), None, Direction::HigherIsBetter).is_nan());
        assert!(
            t.value(None, Some(f64::INFINITY), Direction::HigherIsBetter)
                .is_nan()
        );
        assert!(
            FeatureTransform::Percentile
                .value(None, Some(1.0), Direction::HigherIsBetter)
                .is_nan()
        );
    }

    #[test]
    fn stored_names_are_stable() {
        let json = serde_json::to_string(&FeatureTransform::LogValue).unwrap();
        assert_eq!(json, "\"log_value\"");
        let back: FeatureTransform = serde_json::from_str("\"percentile\"").unwrap();
        assert_eq!(back, FeatureTransform::Percentile);
    }
}
