//! The KPI matrix: accounts x KPIs, row-major, `f64` with NaN for a missing value.

use crate::ScoringError;

/// KPI values of a population: one row per account, one column per KPI (the
/// catalogue's order). NaN means missing (not computed, not applicable); missing
/// values are skipped by the scoring and their weight shared out.
#[derive(Debug, Clone, PartialEq)]
pub struct KpiMatrix {
    n_accounts: usize,
    n_kpis: usize,
    values: Vec<f64>,
}

impl KpiMatrix {
    /// A matrix with every value missing.
    pub fn missing(n_accounts: usize, n_kpis: usize) -> Self {
        Self {
            n_accounts,
            n_kpis,
            values: vec![f64::NAN; n_accounts * n_kpis],
        }
    }

    /// Wraps row-major values; `values.len()` must be `n_accounts x n_kpis`.
    /// Infinite values are stored as missing (a KPI cannot be ranked on infinity).
    pub fn from_row_major(
        n_accounts: usize,
        n_kpis: usize,
        mut values: Vec<f64>,
    ) -> Result<Self, ScoringError> {
        let expected = n_accounts
            .checked_mul(n_kpis)
            .ok_or(ScoringError::InvalidConfig {
                field: "n_accounts",
                reason: "matrix size overflows".into(),
            })?;
        if values.len() != expected {
            return Err(ScoringError::LengthMismatch {
                field: "values",
                expected,
                actual: values.len(),
            });
        }
        for v in &mut values {
            if v.is_infinite() {
                *v = f64::NAN;
            }
        }
        Ok(Self {
            n_accounts,
            n_kpis,
            values,
        })
    }

    /// Builds a matrix from rows of optional values (convenient in tests and for small
    /// populations).
    pub fn from_rows(rows: &[Vec<Option<f64>>]) -> Result<Self, ScoringError> {
        let n_kpis = rows.first().map_or(0, Vec::len);
        let mut values = Vec::with_capacity(rows.len() * n_kpis);
        for r in rows {
            if r.len() != n_kpis {
                return Err(ScoringError::LengthMismatch {
                    field: "rows",
                    expected: n_kpis,
                    actual: r.len(),
                });
            }
            values.extend(r.iter().map(|v| v.unwrap_or(f64::NAN)));
        }
        Self::from_row_major(rows.len(), n_kpis, values)
    }

    /// Number of accounts (rows).
    pub fn n_accounts(&self) -> usize {
        self.n_accounts
    }

    /// Number of KPIs (columns).
    pub fn n_kpis(&self) -> usize {
        self.n_kpis
    }

    /// The value of KPI `k` for account `i`, `None` when missing or out of range.
    pub fn get(&self, i: usize, k: usize) -> Option<f64> {
        if i >= self.n_accounts || k >= self.n_kpis {
            return None;
        }
        let v = self.values[i * self.n_kpis + k];
        (!v.is_nan()).then_some(v)
    }

    /// Sets one value (`None` = missing); out-of-range indices are ignored.
    pub fn set(&mut self, i: usize, k: usize, v: Option<f64>) {
        if i < self.n_accounts && k < self.n_kpis {
            self.values[i * self.n_kpis + k] = v.filter(|x| x.is_finite()).unwrap_or(f64::NAN);
        }
    }

    /// Row of account `i` (NaN = missing).
    pub fn row(&self, i: usize) -> &[f64] {
        &self.values[i * self.n_kpis..(i + 1) * self.n_kpis]
    }

    /// All values, row-major.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// All values, row-major, mutable (NaN = missing; do not store infinities).
    pub fn values_mut(&mut self) -> &mut [f64] {
        &mut self.values
    }

    /// Size of the values in bytes (the reference for the memory budget).
    pub fn size_bytes(&self) -> usize {
        self.values.len() * std::mem::size_of::<f64>()
    }
}
