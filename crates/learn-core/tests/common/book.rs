//! Loader for the book's own features (`socialnet7/book/dataset2.csv.gz`), shared by the
//! `book_dataset2` example and integration test. I/O lives here, outside the library.

#![allow(dead_code)] // each includer uses a different part

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use flate2::read::GzDecoder;
use ndarray::Array2;
use vitals_learn_core::Dataset;

/// Where the shared sample data is expected: `$VITALS_DATA_DIR` or `../shared/data` next
/// to the repository (i.e. `<repo>/../shared/data`).
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VITALS_DATA_DIR") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data")
}

/// Path of the book's dataset2 file.
pub fn dataset2_path() -> PathBuf {
    data_dir().join("socialnet7/book/dataset2.csv.gz")
}

/// What the loader found missing, to print instead of failing obscurely.
pub fn missing_notice(path: &Path) -> String {
    format!(
        "the book's dataset is missing: {} does not exist.\n\
         It comes with the shared sample data (shared/data/socialnet7/book/dataset2.csv.gz, \
         see shared/data/README.md); set VITALS_DATA_DIR to the folder holding socialnet7/ \
         if it lives elsewhere.",
        path.display()
    )
}

/// The raw table: metric names, values, labels, dates, accounts.
pub struct Raw {
    pub names: Vec<String>,
    pub rows: Vec<Vec<f64>>,
    pub labels: Vec<bool>,
    pub dates: Vec<NaiveDate>,
    pub accounts: Vec<String>,
}

/// Reads dataset2.csv.gz: `account_id, observation_date, is_churn, <16 metrics>`.
pub fn load_raw(path: &Path) -> Result<Raw, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = BufReader::new(GzDecoder::new(file)).lines();
    let header = lines
        .next()
        .ok_or("empty file")?
        .map_err(|e| e.to_string())?;
    let cols: Vec<&str> = header.split(',').collect();
    if cols.len() < 4
        || cols[0] != "account_id"
        || cols[1] != "observation_date"
        || cols[2] != "is_churn"
    {
        return Err(format!("unexpected header: {header}"));
    }
    let names: Vec<String> = cols[3..].iter().map(|s| (*s).to_owned()).collect();
    let mut raw = Raw {
        names,
        rows: Vec::new(),
        labels: Vec::new(),
        dates: Vec::new(),
        accounts: Vec::new(),
    };
    for (i, line) in lines.enumerate() {
        let line = line.map_err(|e| e.to_string())?;
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != cols.len() {
            return Err(format!(
                "line {}: {} fields, expected {}",
                i + 2,
                f.len(),
                cols.len()
            ));
        }
        raw.accounts.push(f[0].to_owned());
        raw.dates.push(
            NaiveDate::parse_from_str(f[1], "%Y-%m-%d")
                .map_err(|e| format!("line {}: {e}", i + 2))?,
        );
        raw.labels.push(match f[2] {
            "True" | "true" | "1" => true,
            "False" | "false" | "0" => false,
            other => return Err(format!("line {}: is_churn {other}", i + 2)),
        });
        let values = f[3..]
            .iter()
            .map(|v| {
                if v.is_empty() {
                    Ok(f64::NAN)
                } else {
                    v.parse::<f64>()
                }
            })
            .collect::<Result<Vec<f64>, _>>()
            .map_err(|e| format!("line {}: {e}", i + 2))?;
        raw.rows.push(values);
    }
    Ok(raw)
}

/// How the metrics are turned into model features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// The 16 metrics as they are.
    Raw,
    /// Skewed metrics (sample skewness > 4, as the book's threshold) through
    /// `ln(1 + x)` when non-negative, `asinh(x)` otherwise.
    Log,
    /// `Log`, then the book's groups of correlated metrics (from
    /// `dataset2_logreg_summary.csv`) replaced by the mean of their members' z-scores.
    LogGrouped,
}

impl Transform {
    pub const ALL: [Transform; 3] = [Transform::Raw, Transform::Log, Transform::LogGrouped];

    pub fn describe(self) -> &'static str {
        match self {
            Transform::Raw => "raw metrics",
            Transform::Log => "skewed metrics log/asinh-transformed",
            Transform::LogGrouped => "log/asinh + book's correlated-metric groups averaged",
        }
    }
}

/// The book's groups of correlated metrics (dataset2_logreg_summary.csv).
pub const BOOK_GROUPS: [(&str, &[&str]); 3] = [
    (
        "metric_group_1",
        &["adview_per_month", "like_per_month", "post_per_month"],
    ),
    (
        "metric_group_2",
        &["unfriend_per_month", "unfriend_per_newfriend"],
    ),
    ("metric_group_3", &["message_per_month", "reply_per_month"]),
];

fn column(raw: &Raw, j: usize) -> Vec<f64> {
    raw.rows.iter().map(|r| r[j]).collect()
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
    (m, var.sqrt().max(1e-12))
}

/// Sample skewness (third standardised moment).
pub fn skewness(v: &[f64]) -> f64 {
    let (m, sd) = mean_sd(v);
    v.iter().map(|x| ((x - m) / sd).powi(3)).sum::<f64>() / v.len() as f64
}

/// Builds the model's dataset with `transform`; returns it and the names of the metrics
/// that were log/asinh-transformed.
pub fn features(raw: &Raw, transform: Transform) -> (Dataset, Vec<String>) {
    let p = raw.names.len();
    let mut cols: Vec<Vec<f64>> = (0..p).map(|j| column(raw, j)).collect();
    let mut transformed = Vec::new();
    if transform != Transform::Raw {
        for (j, col) in cols.iter_mut().enumerate() {
            if skewness(col) > 4.0 {
                let nonneg = col.iter().all(|&x| x >= 0.0);
                for x in col.iter_mut() {
                    *x = if nonneg { x.ln_1p() } else { x.asinh() };
                }
                transformed.push(raw.names[j].clone());
            }
        }
    }
    let mut names = raw.names.clone();
    if transform == Transform::LogGrouped {
        let mut grouped_cols = Vec::new();
        let mut grouped_names = Vec::new();
        let mut used = vec![false; p];
        for (group, members) in BOOK_GROUPS {
            let idx: Vec<usize> = members
                .iter()
                .filter_map(|m| raw.names.iter().position(|n| n == m))
                .collect();
            let n = raw.rows.len();
            let mut avg = vec![0.0; n];
            for &j in &idx {
                used[j] = true;
                let (m, sd) = mean_sd(&cols[j]);
                for (a, x) in avg.iter_mut().zip(&cols[j]) {
                    *a += (x - m) / sd / idx.len() as f64;
                }
            }
            grouped_cols.push(avg);
            grouped_names.push(group.to_owned());
        }
        for j in 0..p {
            if !used[j] {
                grouped_cols.push(cols[j].clone());
                grouped_names.push(raw.names[j].clone());
            }
        }
        cols = grouped_cols;
        names = grouped_names;
    }
    let n = raw.rows.len();
    let x = Array2::from_shape_fn((n, cols.len()), |(i, j)| cols[j][i]);
    let data = Dataset {
        feature_names: names,
        x,
        labels: raw.labels.clone(),
        dates: raw.dates.clone(),
        accounts: raw.accounts.clone(),
    };
    (data, transformed)
}
