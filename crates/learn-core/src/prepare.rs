//! The book's preparation of metrics for its churn regression ("Fighting Churn with Data",
//! Carl Gold, chapters 6–8), fitted on a training part only:
//!
//! 1. **skew rule**: a KPI whose values in the training part have a sample skewness above
//!    [`PreparationOptions::skew_threshold`] (4) and no negative value enters as
//!    `ln(1 + v)` ([`FeatureTransform::LogValue`]), any other as its value
//!    ([`FeatureTransform::Value`]); both turned to the healthy direction;
//! 2. **z-scores** with the training mean and standard deviation (a missing value becomes
//!    the mean, z = 0);
//! 3. **groups**: KPIs whose z-scores correlate above
//!    [`PreparationOptions::correlation_threshold`] (0.65) are linked, and every connected
//!    set of linked KPIs (the book's single-linkage clustering of `1 − correlation` cut at
//!    0.35: listing 6.4, `find_correlation_clusters`, of the book's code) becomes one
//!    column, the average of its members' z-scores (the book's loadings are the same up to
//!    a constant factor, and it rescales each group to unit variance, as the model's own
//!    standardisation does). A KPI linked to no other stays a column of its own.
//!
//! The model (an L2 logistic regression, [`crate::LogisticModel`]) is then fitted on these
//! columns. Because every step is linear in the transformed KPI values, the fitted model
//! is also a linear model of each KPI's transformed value ([`Preparation::kpi_terms`]):
//! that is how it is stored and applied, and each KPI of a group gets an equal share of the
//! group's coefficient.
//!
//! KPIs constant (or absent) in the training part are left out. Every statistic uses
//! only the rows given to [`Preparation::fit`]; none uses the labels.

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;
use crate::error::{LearnError, Result};
use crate::features::FeatureTransform;
use crate::logistic::LogisticModel;
use crate::weights::KpiSpec;

/// The book's thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PreparationOptions {
    /// A KPI with a larger sample skewness (and no negative value) is log-transformed.
    pub skew_threshold: f64,
    /// KPIs whose z-scores correlate more than this are averaged into one group.
    pub correlation_threshold: f64,
}

impl Default for PreparationOptions {
    /// The book's values: skewness 4, correlation 0.65.
    fn default() -> Self {
        Self {
            skew_threshold: 4.0,
            correlation_threshold: 0.65,
        }
    }
}

/// One KPI as the fitted preparation uses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreparedKpi {
    /// Index of the KPI in the specs the preparation was fitted with.
    pub kpi: usize,
    /// The KPI's name.
    pub name: String,
    /// `LogValue` (skewed, non-negative) or `Value`.
    pub transform: FeatureTransform,
    /// Sample skewness of the raw values in the training part.
    pub skewness: f64,
    /// Training mean of the transformed value (also the value used when it is missing).
    pub mean: f64,
    /// Training standard deviation of the transformed value (> 0).
    pub scale: f64,
    /// Index of its group in [`Preparation::groups`].
    pub group: usize,
}

/// One term of the model written per KPI: `coefficient * x`, `x` the KPI's transformed
/// value (`missing` when absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiTerm {
    /// Index of the KPI in the specs.
    pub kpi: usize,
    /// The form of the KPI the coefficient applies to.
    pub transform: FeatureTransform,
    /// Coefficient on the transformed value.
    pub coefficient: f64,
    /// Coefficient on the KPI's own z-score: the change in log-odds for one training
    /// standard deviation of this KPI (positive = more churn risk); a group's standardised
    /// coefficient shared equally among its members.
    pub standardized: f64,
    /// Value used when the KPI is missing (the training mean, which adds nothing).
    pub missing: f64,
    /// Group (model column) the KPI belongs to, for the book's preparation.
    pub group: Option<usize>,
}

/// A fitted preparation: which KPIs, in which form, standardised how, grouped how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preparation {
    /// The thresholds it was fitted with.
    pub options: PreparationOptions,
    /// The KPIs used, in spec order.
    pub kpis: Vec<PreparedKpi>,
    /// Each group's members (indices into `kpis`), in order of their first member.
    pub groups: Vec<Vec<usize>>,
    /// Column name of each group: its members' names joined by `+`.
    pub names: Vec<String>,
}

/// Population (biased) sample skewness `m3 / m2^1.5` of the finite values, as the book
/// computes it (scipy's default); 0 for fewer than two distinct values.
pub fn skewness(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let (mut n, mut sum) = (0usize, 0.0);
    for v in values.clone().filter(|v| v.is_finite()) {
        n += 1;
        sum += v;
    }
    if n < 2 {
        return 0.0;
    }
    let mean = sum / n as f64;
    let (mut m2, mut m3) = (0.0, 0.0);
    for v in values.filter(|v| v.is_finite()) {
        let d = v - mean;
        m2 += d * d;
        m3 += d * d * d;
    }
    m2 /= n as f64;
    m3 /= n as f64;
    if m2 <= 1e-24 * (1.0 + mean * mean) {
        return 0.0;
    }
    m3 / m2.powf(1.5)
}

/// Connected sets of the graph "`corr[i][j] > threshold`", each listed in index order,
/// ordered by their first member (single-linkage clustering cut at `1 - threshold`).
pub fn correlation_groups(corr: &Array2<f64>, threshold: f64) -> Vec<Vec<usize>> {
    let n = corr.nrows();
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for i in 0..n {
        for j in i + 1..n {
            if corr[[i, j]] > threshold {
                let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                if a != b {
                    parent[a.max(b)] = a.min(b);
                }
            }
        }
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group_of_root = vec![usize::MAX; n];
    for i in 0..n {
        let r = root(&mut parent, i);
        if group_of_root[r] == usize::MAX {
            group_of_root[r] = groups.len();
            groups.push(Vec::new());
        }
        groups[group_of_root[r]].push(i);
    }
    groups
}

/// Column index of `name` in `data`, or an error naming it.
fn column(data: &Dataset, name: &str) -> Result<usize> {
    data.feature_names
        .iter()
        .position(|f| f == name)
        .ok_or_else(|| LearnError::InvalidParameter {
            name: "feature name",
            reason: format!("unknown feature {name} (the book's preparation needs it)"),
        })
}

impl Preparation {
    /// The column names the data must hold for `kpis`: every KPI's healthy-direction value
    /// and log value.
    pub fn required_columns(kpis: &[KpiSpec]) -> Vec<String> {
        kpis.iter()
            .flat_map(|k| {
                [FeatureTransform::Value, FeatureTransform::LogValue]
                    .map(|t| t.column_name(&k.name))
            })
            .collect()
    }

    /// Fits the preparation on `data` (a training part), which holds each KPI's
    /// [`FeatureTransform::Value`] and [`FeatureTransform::LogValue`] columns (healthy
    /// direction, NaN = missing).
    pub fn fit(data: &Dataset, kpis: &[KpiSpec], options: PreparationOptions) -> Result<Self> {
        if data.is_empty() {
            return Err(LearnError::Empty {
                what: "training set",
            });
        }
        let mut prepared = Vec::new();
        let mut z_cols: Vec<Vec<f64>> = Vec::new();
        for (k, spec) in kpis.iter().enumerate() {
            let vcol = column(data, &FeatureTransform::Value.column_name(&spec.name))?;
            let lcol = column(data, &FeatureTransform::LogValue.column_name(&spec.name))?;
            let sign = spec.direction.sign();
            // The raw value (the value column is turned to the healthy direction).
            let raw = data.x.column(vcol).mapv(|v| sign * v);
            let finite = raw.iter().copied().filter(|v| v.is_finite());
            let skew = skewness(finite.clone());
            let min = finite.clone().fold(f64::INFINITY, f64::min);
            let transform = if skew > options.skew_threshold && min >= 0.0 {
                FeatureTransform::LogValue
            } else {
                FeatureTransform::Value
            };
            let col = match transform {
                FeatureTransform::LogValue => data.x.column(lcol),
                _ => data.x.column(vcol),
            };
            let (mut n, mut sum) = (0usize, 0.0);
            for v in col.iter().filter(|v| v.is_finite()) {
                n += 1;
                sum += v;
            }
            if n < 2 {
                continue;
            }
            let mean = sum / n as f64;
            let var = col
                .iter()
                .filter(|v| v.is_finite())
                .map(|v| (v - mean) * (v - mean))
                .sum::<f64>()
                / n as f64;
            let scale = var.sqrt();
            if scale <= 1e-12 * (1.0 + mean.abs()) {
                continue;
            }
            z_cols.push(
                col.iter()
                    .map(|&v| {
                        if v.is_finite() {
                            (v - mean) / scale
                        } else {
                            0.0
                        }
                    })
                    .collect(),
            );
            prepared.push(PreparedKpi {
                kpi: k,
                name: spec.name.clone(),
                transform,
                skewness: skew,
                mean,
                scale,
                group: 0,
            });
        }
        if prepared.is_empty() {
            return Err(LearnError::InvalidParameter {
                name: "kpi specs",
                reason: "every KPI is constant or missing in the training part".to_owned(),
            });
        }
        // Correlation of the z-scores (missing = 0, as the model will see them).
        let m = prepared.len();
        let rows = data.len() as f64;
        let sd: Vec<f64> = z_cols
            .iter()
            .map(|z| {
                let mu = z.iter().sum::<f64>() / rows;
                (z.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / rows).sqrt()
            })
            .collect();
        let mu: Vec<f64> = z_cols
            .iter()
            .map(|z| z.iter().sum::<f64>() / rows)
            .collect();
        let mut corr = Array2::<f64>::eye(m);
        for i in 0..m {
            for j in i + 1..m {
                let c = if sd[i] > 0.0 && sd[j] > 0.0 {
                    z_cols[i]
                        .iter()
                        .zip(&z_cols[j])
                        .map(|(a, b)| (a - mu[i]) * (b - mu[j]))
                        .sum::<f64>()
                        / rows
                        / (sd[i] * sd[j])
                } else {
                    0.0
                };
                corr[[i, j]] = c;
                corr[[j, i]] = c;
            }
        }
        let groups = correlation_groups(&corr, options.correlation_threshold);
        for (g, members) in groups.iter().enumerate() {
            for &i in members {
                prepared[i].group = g;
            }
        }
        let names = groups
            .iter()
            .map(|members| {
                members
                    .iter()
                    .map(|&i| prepared[i].name.as_str())
                    .collect::<Vec<_>>()
                    .join("+")
            })
            .collect();
        Ok(Self {
            options,
            kpis: prepared,
            groups,
            names,
        })
    }

    /// The model's input: one column per group (the mean of its members' z-scores; a
    /// missing value counts as z = 0), named as [`Preparation::names`]; labels, dates and
    /// accounts as in `data`, which holds the columns [`Preparation::fit`] needs.
    pub fn transform(&self, data: &Dataset) -> Result<Dataset> {
        let mut x = Array2::<f64>::zeros((data.len(), self.groups.len()));
        for (g, members) in self.groups.iter().enumerate() {
            let share = 1.0 / members.len() as f64;
            for &i in members {
                let p = &self.kpis[i];
                let c = column(data, &p.transform.column_name(&p.name))?;
                for (r, &v) in data.x.column(c).iter().enumerate() {
                    if v.is_finite() {
                        x[[r, g]] += share * (v - p.mean) / p.scale;
                    }
                }
            }
        }
        Dataset::new(
            self.names.clone(),
            x,
            data.labels.clone(),
            data.dates.clone(),
            data.accounts.clone(),
        )
    }

    /// The model fitted on [`Preparation::transform`]'s columns, written per KPI: the
    /// intercept and one term per KPI used, such that
    /// `intercept + Σ term.coefficient · x_k` (`x_k` the KPI's transformed value, or
    /// `term.missing` when absent) is exactly the model's log-odds.
    pub fn kpi_terms(&self, model: &LogisticModel) -> Result<(f64, Vec<KpiTerm>)> {
        crate::error::check_len("model columns", self.groups.len(), model.coefficients.len())?;
        let s = &model.standardizer;
        let mut intercept = model.intercept;
        for g in 0..self.groups.len() {
            intercept -= model.coefficients[g] * s.means[g] / s.scales[g];
        }
        let mut terms = Vec::with_capacity(self.kpis.len());
        for p in &self.kpis {
            let g = p.group;
            let n = self.groups[g].len() as f64;
            // d(log-odds) / d(z_k) = beta_g / (n_g * sd_g).
            let standardized = model.coefficients[g] / (n * s.scales[g]);
            let coefficient = standardized / p.scale;
            intercept -= coefficient * p.mean;
            terms.push(KpiTerm {
                kpi: p.kpi,
                transform: p.transform,
                coefficient,
                standardized,
                missing: p.mean,
                group: Some(g),
            });
        }
        Ok((intercept, terms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::tests::spec;
    use crate::features::{FeatureLayout, FeatureTransform};
    use crate::weights::Direction;
    use chrono::NaiveDate;

    /// A dataset with every KPI's value and log value (percentiles 0.5) from raw columns.
    fn data(kpis: &[KpiSpec], raw: &[Vec<f64>]) -> Dataset {
        let layout = FeatureLayout {
            transforms: vec![FeatureTransform::LogValue, FeatureTransform::Value],
        };
        let n = raw[0].len();
        let mut flat = Vec::new();
        let rows: Vec<Vec<f64>> = (0..n)
            .map(|r| raw.iter().map(|col| col[r]).collect())
            .collect();
        for row in &rows {
            flat.extend(layout.row(
                kpis,
                |_| Some(0.5),
                |k| Some(row[k]).filter(|v| v.is_finite()),
            ));
        }
        let day = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap();
        Dataset::new(
            layout.names(kpis),
            Array2::from_shape_vec((n, layout.n_columns(kpis.len())), flat).unwrap(),
            (0..n).map(|i| i % 3 == 0).collect(),
            vec![day; n],
            (0..n).map(|i| format!("a{i}")).collect(),
        )
        .unwrap()
    }

    #[test]
    fn skewness_matches_the_textbook_values() {
        // Symmetric: 0. Population skewness of {1, 2, 3, 10}: m3 / m2^1.5.
        assert_eq!(skewness([1.0, 2.0, 3.0].into_iter()), 0.0);
        let xs = [1.0, 2.0, 3.0, 10.0];
        let mean = 4.0;
        let m2 = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / 4.0;
        let m3 = xs
            .iter()
            .map(|x| (x - mean) * (x - mean) * (x - mean))
            .sum::<f64>()
            / 4.0;
        assert!((skewness(xs.into_iter()) - m3 / m2.powf(1.5)).abs() < 1e-12);
        // Missing values are ignored; constants and single values have no skew.
        assert_eq!(
            skewness([f64::NAN, 1.0, 10.0, 1.0, 10.0].into_iter()),
            skewness([1.0, 10.0, 1.0, 10.0].into_iter())
        );
        assert_eq!(skewness([5.0, 5.0, 5.0].into_iter()), 0.0);
        assert_eq!(skewness([5.0].into_iter()), 0.0);
    }

    #[test]
    fn correlation_groups_link_transitively_above_the_threshold() {
        let corr = ndarray::array![
            [1.0, 0.9, 0.1, 0.0],
            [0.9, 1.0, 0.7, 0.0],
            [0.1, 0.7, 1.0, 0.65],
            [0.0, 0.0, 0.65, 1.0]
        ];
        // 0–1 and 1–2 exceed 0.65 (so 0 and 2 join through 1); 2–3 only equals it.
        assert_eq!(
            correlation_groups(&corr, 0.65),
            vec![vec![0, 1, 2], vec![3]]
        );
        assert_eq!(
            correlation_groups(&corr, 0.95),
            vec![vec![0], vec![1], vec![2], vec![3]]
        );
    }

    /// The skew rule logs the fat-tailed count only: not the symmetric KPI, not the skewed
    /// KPI with negative values, and it is decided on the rows given (the training part).
    #[test]
    fn skew_rule_logs_only_skewed_non_negative_kpis() {
        let kpis = [
            spec("count", Direction::HigherIsBetter),
            spec("even", Direction::HigherIsBetter),
            spec("signed", Direction::HigherIsBetter),
            spec("idle", Direction::HigherIsWorse),
        ];
        let n = 400;
        // Powers of 3 for one row in 20: skewness far above 4.
        let count: Vec<f64> = (0..n)
            .map(|i| {
                if i % 20 == 0 {
                    3f64.powi(8)
                } else {
                    (i % 5) as f64
                }
            })
            .collect();
        let even: Vec<f64> = (0..n).map(|i| (i % 7) as f64).collect();
        let signed: Vec<f64> = count.iter().map(|v| v - 2.0).collect();
        // Skewed and lower-is-better: the rule looks at the raw value, not the turned one.
        let idle: Vec<f64> = count
            .iter()
            .map(|v| v * 0.5 + ((v.to_bits() % 3) as f64))
            .collect();
        let d = data(&kpis, &[count.clone(), even, signed, idle]);
        assert!(skewness(count.iter().copied()) > 4.0);
        let p = Preparation::fit(&d, &kpis, PreparationOptions::default()).unwrap();
        let t: Vec<FeatureTransform> = p.kpis.iter().map(|k| k.transform).collect();
        assert_eq!(
            t,
            vec![
                FeatureTransform::LogValue,
                FeatureTransform::Value,
                FeatureTransform::Value,
                FeatureTransform::LogValue
            ]
        );
        // Fitted on rows without the outliers, the same KPI is not skewed: not logged.
        let calm: Vec<usize> = (0..n).filter(|i| i % 20 != 0).collect();
        let p = Preparation::fit(&d.subset(&calm), &kpis, PreparationOptions::default()).unwrap();
        assert_eq!(p.kpis[0].transform, FeatureTransform::Value);
    }

    /// Correlated KPIs are averaged into one column (z-scores, healthy direction: a
    /// lower-is-better KPI that falls as another rises joins it), others stay alone;
    /// constant KPIs are left out; transform reproduces the averages.
    #[test]
    fn grouping_merges_correlated_kpis() {
        let kpis = [
            spec("a", Direction::HigherIsBetter),
            spec("b", Direction::HigherIsBetter),
            spec("c", Direction::HigherIsBetter),
            spec("worse", Direction::HigherIsWorse),
            spec("flat", Direction::HigherIsBetter),
        ];
        let n = 300;
        let a: Vec<f64> = (0..n).map(|i| (i % 10) as f64).collect();
        let b: Vec<f64> = a
            .iter()
            .enumerate()
            .map(|(i, v)| 2.0 * v + (i % 3) as f64)
            .collect();
        let c: Vec<f64> = (0..n).map(|i| ((i * 7) % 11) as f64).collect();
        let worse: Vec<f64> = a.iter().map(|v| 20.0 - v).collect();
        let flat = vec![3.0; n];
        let d = data(&kpis, &[a.clone(), b, c, worse, flat]);
        let p = Preparation::fit(&d, &kpis, PreparationOptions::default()).unwrap();
        assert_eq!(p.kpis.len(), 4, "the constant KPI is left out");
        assert_eq!(p.names, vec!["a+b+worse", "c"]);
        assert_eq!(p.groups, vec![vec![0, 1, 3], vec![2]]);
        let x = p.transform(&d).unwrap();
        assert_eq!(x.feature_names, p.names);
        for r in [0, 17, 123] {
            let z = |k: usize, v: f64| (v - p.kpis[k].mean) / p.kpis[k].scale;
            let want = (z(0, d.x[[r, 5]]) + z(1, d.x[[r, 6]]) + z(3, d.x[[r, 8]])) / 3.0;
            assert!((x.x[[r, 0]] - want).abs() < 1e-12);
        }
        // Without grouping (threshold above 1) every KPI is its own column.
        let apart = PreparationOptions {
            correlation_threshold: 1.01,
            ..PreparationOptions::default()
        };
        assert_eq!(Preparation::fit(&d, &kpis, apart).unwrap().groups.len(), 4);
        // The columns it needs must be there.
        let pct = d.select_features(&["a:log"]).unwrap();
        assert!(Preparation::fit(&pct, &kpis, PreparationOptions::default()).is_err());
    }
}
