//! The whole method on the sample data, from the raw events: scoring-core's KPI catalogue
//! computed from daily roll-ups as of the book's observation dates, turned into peer
//! percentiles, then learned with learn-core and backtested in time order against the
//! book's published baseline (AUC 0.705, top-decile lift 4.37, one-month horizon).
//!
//! Run: `cargo run --release -p vitals-learn-core --example socialnet7_kpis`
//! (reads `shared/data/socialnet7` next to the repository, or `$VITALS_DATA_DIR/socialnet7`).
//! It also backtests the gradient-boosted challenger next to the logistic model on the same
//! folds and reports which one the rule serves in each training part
//! (`VITALS_CHALLENGER_ONLY=1`: only those rows and the default's;
//! `VITALS_SKIP_CHALLENGER=1` as well: only the default's).
//! `VITALS_WINDOW_DAYS=<n>` computes the KPIs over n-day windows instead of 28.
//!
//! Leakage guard: for an observation date T each account gets only the daily roll-ups of
//! days before T and the subscriptions started on or before T; events on or after the
//! account's churn date are dropped (as the data's README says). Labels are the book's
//! (`observation.csv.gz`, churn within one month).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use chrono::NaiveDate;
use flate2::read::GzDecoder;
use ndarray::Array2;
use vitals_learn_core as learn;
use vitals_scoring_core as scoring;

fn data_dir() -> PathBuf {
    match std::env::var_os("VITALS_DATA_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
    }
}

/// Calls `f` on every data line (header skipped) of a gzip CSV.
fn each_line(path: &Path, mut f: impl FnMut(&str)) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, GzDecoder::new(file));
    let mut buf = String::new();
    let mut first = true;
    loop {
        buf.clear();
        let n = reader
            .read_line(&mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            return Ok(());
        }
        if !first {
            f(buf.trim_end());
        }
        first = false;
    }
}

fn date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d").map_err(|e| format!("{s}: {e}"))
}

struct Observation {
    account: u32,
    date: NaiveDate,
    churn: bool,
}

/// Per observation date: the KPI matrix of every active account (the peer population)
/// and, for the observations made that day, (observation index, row in the matrix).
struct DateBatch {
    matrix: scoring::KpiMatrix,
    signals: Vec<scoring::AccountSignals>,
    observed: Vec<(usize, usize)>,
}

struct Loaded {
    observations: Vec<Observation>,
    batches: Vec<DateBatch>,
    catalogue: scoring::Catalogue,
}

/// Active period of an account: start and churn date (one per account in this data).
type Period = (NaiveDate, Option<NaiveDate>);

/// Calls `parse` on every data line of a gzip CSV, split on commas; the first parse
/// error is returned once the whole file has been read.
fn parse_lines(
    path: &Path,
    mut parse: impl FnMut(&[&str]) -> Result<(), String>,
) -> Result<(), String> {
    let mut err = None;
    each_line(path, |l| {
        let f: Vec<&str> = l.split(',').collect();
        if let Err(e) = parse(&f) {
            err.get_or_insert(e);
        }
    })?;
    err.map_or(Ok(()), Err)
}

fn read_periods(dir: &Path) -> Result<HashMap<u32, Period>, String> {
    let mut period: HashMap<u32, Period> = HashMap::new();
    parse_lines(&dir.join("book/active_period.csv.gz"), |f| {
        let a = f[0].parse::<u32>().map_err(|e| e.to_string())?;
        let churn = if f.len() > 2 && !f[2].is_empty() {
            Some(date(f[2])?)
        } else {
            None
        };
        period.insert(a, (date(f[1])?, churn));
        Ok(())
    })?;
    Ok(period)
}

fn read_subscriptions(dir: &Path) -> Result<HashMap<u32, Vec<scoring::Subscription>>, String> {
    let mut subs: HashMap<u32, Vec<scoring::Subscription>> = HashMap::new();
    parse_lines(&dir.join("subscription.csv.gz"), |f| {
        subs.entry(
            f[0].parse()
                .map_err(|e: std::num::ParseIntError| e.to_string())?,
        )
        .or_default()
        .push(scoring::Subscription {
            start: date(f[2])?,
            end: if f[3].is_empty() {
                None
            } else {
                Some(date(f[3])?)
            },
            mrr: f[4].parse().unwrap_or(0.0),
            quantity: f[5].parse().ok(),
            add_on: false,
            discount: f[8].parse().unwrap_or(0.0),
            billing_period_months: f[7].parse().unwrap_or(1),
        });
        Ok(())
    })?;
    Ok(subs)
}

/// The book's observations, sorted by (date, account).
fn read_observations(dir: &Path) -> Result<Vec<Observation>, String> {
    let mut observations = Vec::new();
    parse_lines(&dir.join("book/observation.csv.gz"), |f| {
        observations.push(Observation {
            account: f[0]
                .parse()
                .map_err(|e: std::num::ParseIntError| e.to_string())?,
            date: date(f[1])?,
            churn: matches!(f[2], "t" | "True" | "true" | "1"),
        });
        Ok(())
    })?;
    observations.sort_by_key(|o| (o.date, o.account));
    Ok(observations)
}

/// Daily roll-ups of the raw events.
struct Usage {
    per_account: HashMap<u32, Vec<scoring::DailyUsage>>,
    /// Event type names by id.
    type_names: Vec<String>,
    events: usize,
    /// Events on or after the account's churn date (dropped).
    dropped: usize,
}

/// Daily roll-ups from the raw events: per account (day, type) -> count.
fn roll_up_events(dir: &Path, period: &HashMap<u32, Period>) -> Result<Usage, String> {
    let epoch = NaiveDate::from_ymd_opt(2019, 1, 1).ok_or("epoch")?;
    let mut type_ids: HashMap<String, u32> = HashMap::new();
    let mut raw: HashMap<u32, Vec<(i32, u32)>> = HashMap::new();
    let mut events = 0usize;
    let mut dropped = 0usize;
    each_line(&dir.join("event.csv.gz"), |l| {
        let mut f = l.split(',');
        let (Some(a), Some(t), Some(et)) = (f.next(), f.next(), f.next()) else {
            return;
        };
        let (Ok(a), Ok(day)) = (a.parse::<u32>(), date(t)) else {
            return;
        };
        events += 1;
        if period.get(&a).and_then(|p| p.1).is_some_and(|c| day >= c) {
            dropped += 1;
            return;
        }
        let next = type_ids.len() as u32;
        let id = match type_ids.get(et) {
            Some(&id) => id,
            None => {
                type_ids.insert(et.to_owned(), next);
                next
            }
        };
        raw.entry(a)
            .or_default()
            .push(((day - epoch).num_days() as i32, id));
    })?;
    let mut per_account: HashMap<u32, Vec<scoring::DailyUsage>> = HashMap::new();
    for (a, mut v) in raw {
        v.sort_unstable();
        let mut out: Vec<scoring::DailyUsage> = Vec::new();
        for (d, t) in v {
            let day = epoch + chrono::Days::new(d as u64);
            match out.last_mut() {
                Some(u) if u.day == day && u.event_type == t => u.count += 1,
                _ => out.push(scoring::DailyUsage {
                    day,
                    event_type: t,
                    count: 1,
                    distinct_users: 1, // user_id is always 0 in this product
                    value_sum: 0.0,
                }),
            }
        }
        per_account.insert(a, out);
    }
    let mut type_names = vec![String::new(); type_ids.len()];
    for (n, id) in &type_ids {
        type_names[*id as usize] = n.clone();
    }
    Ok(Usage {
        per_account,
        type_names,
        events,
        dropped,
    })
}

fn load(dir: &Path) -> Result<Loaded, String> {
    let t0 = Instant::now();
    let period = read_periods(dir)?;
    let subs = read_subscriptions(dir)?;
    let observations = read_observations(dir)?;
    let usage = roll_up_events(dir, &period)?;
    println!(
        "loaded {} events ({} after churn dropped), {} accounts, {} observations in {:.1} s",
        usage.events,
        usage.dropped,
        period.len(),
        observations.len(),
        t0.elapsed().as_secs_f64()
    );
    let catalogue = scoring::Catalogue::new(&scoring::CatalogueSpec {
        event_types: usage.type_names.clone(),
        ..scoring::CatalogueSpec::default()
    })
    .map_err(|e| e.to_string())?;
    let sources = Sources {
        period: &period,
        subs: &subs,
        usage: &usage.per_account,
        catalogue: &catalogue,
    };
    let t1 = Instant::now();
    let (batches, n_dates) = sources.batches(&observations)?;
    println!(
        "KPIs ({} in the catalogue) for {} observation dates in {:.1} s",
        catalogue.len(),
        n_dates,
        t1.elapsed().as_secs_f64()
    );
    Ok(Loaded {
        observations,
        batches,
        catalogue,
    })
}

/// What the KPIs of an observation date are computed from.
struct Sources<'a> {
    period: &'a HashMap<u32, Period>,
    subs: &'a HashMap<u32, Vec<scoring::Subscription>>,
    usage: &'a HashMap<u32, Vec<scoring::DailyUsage>>,
    catalogue: &'a scoring::Catalogue,
}

impl Sources<'_> {
    /// One batch per observation date (`observations` sorted by date) and the number
    /// of dates.
    fn batches(&self, observations: &[Observation]) -> Result<(Vec<DateBatch>, usize), String> {
        let config = scoring::KpiConfig {
            data_start: NaiveDate::from_ymd_opt(2020, 1, 1),
            window_days: window_days(),
            ..scoring::KpiConfig::default()
        };
        let mut accounts: Vec<u32> = self.period.keys().copied().collect();
        accounts.sort_unstable();
        let created: HashMap<u32, NaiveDate> = self.period.iter().map(|(&a, p)| (a, p.0)).collect();
        let mut dates: Vec<NaiveDate> = observations.iter().map(|o| o.date).collect();
        dates.dedup();
        let mut batches = Vec::with_capacity(dates.len());
        let mut next_obs = 0;
        for &t in &dates {
            let active: Vec<u32> = accounts
                .iter()
                .copied()
                .filter(|a| self.period[a].0 <= t && self.period[a].1.is_none_or(|c| t < c))
                .collect();
            let batch = self.kpis_before(&config, &created, t, &active)?;
            let row_of: HashMap<u32, usize> =
                active.iter().enumerate().map(|(i, &a)| (a, i)).collect();
            let mut observed = Vec::new();
            while next_obs < observations.len() && observations[next_obs].date == t {
                let o = &observations[next_obs];
                match row_of.get(&o.account) {
                    Some(&row) => observed.push((next_obs, row)),
                    None => {
                        return Err(format!("observed account {} not active on {t}", o.account));
                    }
                }
                next_obs += 1;
            }
            batches.push(DateBatch {
                matrix: batch.matrix,
                signals: batch.signals,
                observed,
            });
        }
        Ok((batches, dates.len()))
    }

    /// KPIs of the `active` accounts as of `t` from only what is known before T:
    /// roll-ups of earlier days, subscriptions started by T.
    fn kpis_before(
        &self,
        config: &scoring::KpiConfig,
        created: &HashMap<u32, NaiveDate>,
        t: NaiveDate,
        active: &[u32],
    ) -> Result<scoring::KpiBatch, String> {
        let empty_usage: Vec<scoring::DailyUsage> = Vec::new();
        let empty_subs: Vec<scoring::Subscription> = Vec::new();
        let sub_parts: Vec<Vec<scoring::Subscription>> = active
            .iter()
            .map(|a| {
                self.subs
                    .get(a)
                    .unwrap_or(&empty_subs)
                    .iter()
                    .filter(|s| s.start <= t)
                    .copied()
                    .collect()
            })
            .collect();
        let inputs: Vec<scoring::AccountInputs<'_>> = active
            .iter()
            .zip(&sub_parts)
            .map(|(a, s)| {
                let u = self.usage.get(a).unwrap_or(&empty_usage);
                let before = &u[..u.partition_point(|d| d.day < t)];
                scoring::AccountInputs {
                    usage: before,
                    subscriptions: s,
                    attributes: scoring::AccountAttributes {
                        seats: None,
                        created_at: created.get(a).copied(),
                        contacts: None,
                    },
                    ..scoring::AccountInputs::default()
                }
            })
            .collect();
        scoring::compute_kpis(self.catalogue, config, t, &inputs).map_err(|e| e.to_string())
    }
}

/// Health scores, category scores and percentiles per observation.
type Scored = (Vec<f64>, Vec<[f64; 5]>, Array2<f64>);

/// Scores every date's population with `profile`; returns, per observation, the health
/// score, the category scores and the direction-adjusted percentiles (NaN = missing).
fn score_all(loaded: &Loaded, profile: &scoring::ProfileConfig) -> Result<Scored, String> {
    let n = loaded.observations.len();
    let k = loaded.catalogue.len();
    let mut score = vec![f64::NAN; n];
    let mut cats = vec![[f64::NAN; 5]; n];
    let mut pct = Array2::from_elem((n, k), f64::NAN);
    let profiles = [profile.clone()];
    for b in &loaded.batches {
        let profile_of = vec![0u32; b.matrix.n_accounts()];
        let input = scoring::PopulationInput {
            kpis: loaded.catalogue.kpis(),
            matrix: &b.matrix,
            profile_of: &profile_of,
            profiles: &profiles,
            signals: Some(&b.signals),
        };
        let scores = scoring::score_population(&input, &scoring::ScoreOptions::default())
            .map_err(|e| e.to_string())?;
        let results: Vec<scoring::AccountScore> = scores.results().collect();
        for &(obs, row) in &b.observed {
            let r = &results[row];
            score[obs] = r.score.unwrap_or(f64::NAN);
            for (c, v) in r.categories.iter().enumerate() {
                cats[obs][c] = v.unwrap_or(f64::NAN);
            }
            for kk in 0..k {
                pct[[obs, kk]] = scores.percentile(row, kk).unwrap_or(f64::NAN);
            }
        }
    }
    Ok((score, cats, pct))
}

/// Raw KPI values per observation (NaN = missing), catalogue order.
fn raw_values(loaded: &Loaded) -> Array2<f64> {
    let k = loaded.catalogue.len();
    let mut raw = Array2::from_elem((loaded.observations.len(), k), f64::NAN);
    for b in &loaded.batches {
        for &(obs, row) in &b.observed {
            for kk in 0..k {
                raw[[obs, kk]] = b.matrix.get(row, kk).unwrap_or(f64::NAN);
            }
        }
    }
    raw
}

/// The folds of a backtest, one line.
fn fold_text(bt: &learn::BacktestReport) -> String {
    bt.folds
        .iter()
        .map(|f| {
            format!(
                "from {} test {} ({} churned) AUC {:.3} lift {:.2}",
                f.cut, f.n_test, f.test_churned, f.auc, f.top_decile_lift
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// KPI columns worth learning from: at least two distinct present values.
fn informative(pct: &Array2<f64>) -> Vec<usize> {
    (0..pct.ncols())
        .filter(|&k| {
            let col = pct.column(k);
            let mut vals = col.iter().copied().filter(|v| v.is_finite());
            match vals.next() {
                Some(first) => vals.any(|v| v != first),
                None => false,
            }
        })
        .collect()
}

fn main() -> ExitCode {
    let dir = data_dir().join("socialnet7");
    let needed = [
        "event.csv.gz",
        "subscription.csv.gz",
        "book/observation.csv.gz",
        "book/active_period.csv.gz",
    ];
    let missing: Vec<String> = needed
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "the sample data is missing: {} not found. It is the shared sample data \
             (shared/data/socialnet7, see shared/data/README.md); set VITALS_DATA_DIR to the \
             folder holding socialnet7/ if it lives elsewhere.",
            missing.join(", ")
        );
        return ExitCode::from(2);
    }
    match run(&dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Declared directions: the log values are turned to the healthy direction with them
/// (the percentiles already are).
fn kpi_specs(kpis: &[scoring::KpiDef], cols: &[usize]) -> Vec<learn::KpiSpec> {
    cols.iter()
        .map(|&k| learn::KpiSpec {
            name: kpis[k].name.to_string(),
            category: kpis[k].category.as_str().to_owned(),
            direction: match kpis[k].direction {
                scoring::Direction::HigherIsBetter => learn::Direction::HigherIsBetter,
                scoring::Direction::LowerIsBetter => learn::Direction::HigherIsWorse,
            },
            prior_weight: 1.0,
        })
        .collect()
}

/// The default lets the time-ordered CV inside each training part choose between the
/// book's preparation and percentiles + log values; VITALS_FEATURES fixes one form
/// (percentile, log, current = percentile + log, book) or lets the CV choose among the
/// three layouts of before (cv).
fn layout_choice() -> learn::LayoutChoice {
    let log_only = learn::FeatureLayout {
        transforms: vec![learn::FeatureTransform::LogValue],
    };
    let fixed = |l: learn::FeatureLayout| learn::LayoutChoice::only(learn::KpiForm::Layout(l));
    match std::env::var("VITALS_FEATURES").as_deref() {
        Ok("percentile") => fixed(learn::FeatureLayout::percentiles_only()),
        Ok("log") => fixed(log_only),
        Ok("current") => fixed(learn::FeatureLayout::default()),
        Ok("book") => learn::LayoutChoice::only(learn::KpiForm::book()),
        Ok("cv") => learn::LayoutChoice::by_cv(),
        _ => learn::LayoutChoice::default(),
    }
}

/// VITALS_CHALLENGER_ONLY=1: only the default churn probability and the challenger rows
/// (skips the fixed class weights and the health-score backtests).
fn challenger_only() -> bool {
    std::env::var("VITALS_CHALLENGER_ONLY").is_ok_and(|v| v == "1")
}

/// VITALS_SKIP_CHALLENGER=1 (with VITALS_CHALLENGER_ONLY=1): not even the challenger.
fn skip_challenger() -> bool {
    std::env::var("VITALS_SKIP_CHALLENGER").is_ok_and(|v| v == "1")
}

/// VITALS_WINDOW_DAYS: the KPI window (default scoring-core's 28 days).
fn window_days() -> u32 {
    std::env::var("VITALS_WINDOW_DAYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(scoring::DEFAULT_WINDOW_DAYS)
}

/// The observation row carried in a dataset's account label (`account#row`).
fn row_of(account_label: &str) -> usize {
    account_label
        .rsplit('#')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(usize::MAX)
}

/// Risk (minus the health score; -5 when missing) of each test row.
fn risk_of(scores: &[f64], test: &learn::Dataset) -> Vec<f64> {
    test.accounts
        .iter()
        .map(|a| {
            let s = scores.get(row_of(a)).copied().unwrap_or(f64::NAN);
            if s.is_finite() { -s } else { -5.0 }
        })
        .collect()
}

/// Distinct churned accounts among the rows of `train`.
fn churned_accounts(train: &learn::Dataset) -> usize {
    let mut a: Vec<&str> = train
        .accounts
        .iter()
        .zip(&train.labels)
        .filter(|(_, l)| **l)
        .map(|(a, _)| a.split('#').next().unwrap_or(""))
        .collect();
    a.sort_unstable();
    a.dedup();
    a.len()
}

/// Everything the backtests of one run share.
struct Study<'a> {
    loaded: &'a Loaded,
    /// Informative KPI columns.
    cols: Vec<usize>,
    specs: Vec<learn::KpiSpec>,
    /// The dataset's columns: every KPI as percentile, log value and value.
    layout: learn::FeatureLayout,
    choice: learn::LayoutChoice,
    options: learn::TrainOptions,
    /// Health score (uniform weights) per observation.
    health: Vec<f64>,
    /// Category scores (uniform weights) per observation.
    cats: Vec<[f64; 5]>,
}

impl Study<'_> {
    /// The dataset of every observation in the columns of `self.layout`.
    fn dataset(&self, pct: &Array2<f64>) -> Result<learn::Dataset, String> {
        let obs = &self.loaded.observations;
        let raw = raw_values(self.loaded);
        let cols = &self.cols;
        let feature_names = self.layout.names(&self.specs);
        let mut flat = Vec::with_capacity(obs.len() * feature_names.len());
        for i in 0..obs.len() {
            flat.extend(self.layout.row(
                &self.specs,
                |j| Some(pct[[i, cols[j]]]).filter(|v| v.is_finite()),
                |j| Some(raw[[i, cols[j]]]).filter(|v| v.is_finite()),
            ));
        }
        let x = Array2::from_shape_vec((obs.len(), feature_names.len()), flat)
            .map_err(|e| e.to_string())?;
        learn::Dataset::new(
            feature_names,
            x,
            obs.iter().map(|o| o.churn).collect(),
            obs.iter().map(|o| o.date).collect(),
            // The row index rides along as the account label so that the health-score
            // backtests can find each test row's score.
            (0..obs.len())
                .map(|i| format!("{}#{i}", obs[i].account))
                .collect(),
        )
        .map_err(|e| e.to_string())
    }

    /// Risk of the test rows from the health score with KPI weights learned on the
    /// training part (shrunk with n0 = 50) and, `with_categories`, category weights
    /// suggested from the training part's category scores.
    fn learned_health(
        &self,
        train: &learn::Dataset,
        test: &learn::Dataset,
        with_categories: bool,
    ) -> learn::Result<Vec<f64>> {
        let kpis = self.loaded.catalogue.kpis();
        let (model, form) = learn::fit_kpis_cv(train, &self.specs, &self.choice, &self.options)?;
        let churned = churned_accounts(train);
        let w = learn::kpi_weights(
            &self.layout.weight_specs(&self.specs),
            &form.kpi_coefficients(&model, self.specs.len())?,
            churned,
            self.options.n0,
        )?;
        let mut kpi_w = vec![1.0; kpis.len()];
        for (j, &k) in self.cols.iter().enumerate() {
            kpi_w[k] = w.kpis[j].weight;
        }
        let category_weights = if with_categories {
            self.suggested_category_weights(train, churned)?
        } else {
            scoring::CategoryWeights::default()
        };
        let profile = scoring::ProfileConfig {
            kpi_weights: Some(kpi_w),
            category_weights,
            ..scoring::ProfileConfig::default()
        };
        let (h, _, _) =
            score_all(self.loaded, &profile).map_err(|e| learn::LearnError::InvalidParameter {
                name: "scoring",
                reason: e,
            })?;
        Ok(risk_of(&h, test))
    }

    /// Category weights suggested from the category scores (uniform KPI weights) of the
    /// training rows; only categories with values take part.
    fn suggested_category_weights(
        &self,
        train: &learn::Dataset,
        churned: usize,
    ) -> learn::Result<scoring::CategoryWeights> {
        let cats = &self.cats;
        let present: Vec<usize> = (0..5)
            .filter(|&c| {
                train
                    .accounts
                    .iter()
                    .any(|a| cats[row_of(a)][c].is_finite())
            })
            .collect();
        let cx = Array2::from_shape_fn((train.len(), present.len()), |(i, j)| {
            cats[row_of(&train.accounts[i])][present[j]]
        });
        let cat_names: Vec<String> = present
            .iter()
            .map(|&c| scoring::Category::WEIGHTED[c].as_str().to_owned())
            .collect();
        let cdata = learn::Dataset::new(
            cat_names,
            cx,
            train.labels.clone(),
            train.dates.clone(),
            train.accounts.clone(),
        )?;
        let s = learn::suggest_category_weights(
            &cdata,
            &vec![1.0; present.len()],
            churned,
            &self.options,
        )?;
        let mut cw = [1.0f64; 5];
        for (j, &c) in present.iter().enumerate() {
            cw[c] = s.weights.kpis[j].weight;
        }
        Ok(scoring::CategoryWeights {
            usage: cw[0],
            conversations: cw[1],
            pulse: cw[2],
            contract: cw[3],
            custom: cw[4],
        })
    }

    /// Prints the table rows of one set of observations and pushes its detail lines.
    fn report(
        &self,
        label: &str,
        data: &learn::Dataset,
        details: &mut Vec<String>,
    ) -> Result<(), String> {
        let (specs, choice, options) = (&self.specs, &self.choice, &self.options);
        let t = Instant::now();
        let trained_kpis = learn::train_kpis(data, specs, choice, data.n_churned(), options)
            .map_err(|e| e.to_string())?;
        let trained = &trained_kpis.trained;
        let bt =
            learn::backtest_kpis(data, specs, choice, 2, options).map_err(|e| e.to_string())?;
        if challenger_only() {
            print_row(
                label,
                data,
                "**churn probability (Vitals default: class weights and lambda by CV)**",
                Some(&trained.in_sample),
                &bt,
            );
            if skip_challenger() {
                return Ok(());
            }
            return self.report_challenger(label, data, details);
        }
        let folds = learn::time_ordered_folds(&data.dates, 2).map_err(|e| e.to_string())?;
        // Health score, uniform weights (what scoring does before any learning).
        let h_uniform = learn::backtest(data, &folds, |_, test| Ok(risk_of(&self.health, test)))
            .map_err(|e| e.to_string())?;
        let all_uniform = learn::Evaluation::of_scores(&risk_of(&self.health, data), &data.labels)
            .map_err(|e| e.to_string())?;
        let h_learned = learn::backtest(data, &folds, |tr, te| self.learned_health(tr, te, false))
            .map_err(|e| e.to_string())?;
        let h_learned_cat =
            learn::backtest(data, &folds, |tr, te| self.learned_health(tr, te, true))
                .map_err(|e| e.to_string())?;
        let row = |model: &str, ins: Option<&learn::Evaluation>, bt: &learn::BacktestReport| {
            print_row(label, data, model, ins, bt);
        };
        row(
            "**churn probability (Vitals default: class weights and lambda by CV)**",
            Some(&trained.in_sample),
            &bt,
        );
        self.report_fixed_class_weights(label, data, details)?;
        row(
            "health score, uniform weights",
            Some(&all_uniform),
            &h_uniform,
        );
        row("health score, learned KPI weights", None, &h_learned);
        row(
            "health score, learned KPI + suggested category weights",
            None,
            &h_learned_cat,
        );
        details.push(self.detail(label, data, &trained_kpis, &bt, &folds, t));
        self.report_challenger(label, data, details)
    }

    /// The gradient-boosted challenger (issue 21 part 4): its backtest next to the
    /// logistic model's on the same folds, the model the rule serves in each training
    /// part, and the rule's choice on the whole set.
    fn report_challenger(
        &self,
        label: &str,
        data: &learn::Dataset,
        details: &mut Vec<String>,
    ) -> Result<(), String> {
        let (specs, choice, options) = (&self.specs, &self.choice, &self.options);
        let (gbm, rule) = (
            learn::GbmOptions::default(),
            learn::ChallengerRule::default(),
        );
        let t = Instant::now();
        let bt = learn::backtest_challenger(data, specs, choice, 2, options, &gbm, &rule)
            .map_err(|e| e.to_string())?;
        let bt_seconds = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let whole = learn::train_kpis_with_challenger(
            data,
            specs,
            choice,
            data.n_churned(),
            options,
            &gbm,
            &rule,
        )
        .map_err(|e| e.to_string())?;
        let whole_seconds = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let booster = learn::GbmModel::fit(data, &gbm).map_err(|e| e.to_string())?;
        let fit_seconds = t.elapsed().as_secs_f64();
        let in_sample = learn::Evaluation::of_probabilities(
            &booster
                .predict_proba(data.x.view())
                .map_err(|e| e.to_string())?,
            &data.labels,
        )
        .map_err(|e| e.to_string())?;
        print_row(
            label,
            data,
            "churn probability, logistic (inside the challenger backtest)",
            None,
            &bt.logistic,
        );
        print_row(
            label,
            data,
            &format!(
                "churn probability, gradient-boosted challenger alone (perpetual, budget {})",
                gbm.budget
            ),
            Some(&in_sample),
            &bt.gbm,
        );
        print_row(
            label,
            data,
            "churn probability, served by the challenger rule",
            None,
            &bt.served,
        );
        let decision = |d: &learn::ChallengerDecision| {
            format!(
                "{:?} (logistic fold AUCs {:?}, gbm {:?}: {})",
                d.served,
                d.logistic_fold_aucs
                    .iter()
                    .map(|a| format!("{a:.4}"))
                    .collect::<Vec<_>>(),
                d.gbm_fold_aucs
                    .iter()
                    .map(|a| format!("{a:.4}"))
                    .collect::<Vec<_>>(),
                d.reason
            )
        };
        details.push(format!(
            "{label}, challenger: logistic folds {}; gbm folds {}; rule inside each fold's training part: {}; booster fits per fold (inner CV + final) {:?} s; backtest {:.1} s; on the whole set: {} ({:.1} s with the logistic training); one booster fit on the whole set {:.1} s, {} trees",
            fold_text(&bt.logistic),
            fold_text(&bt.gbm),
            bt.decisions
                .iter()
                .map(decision)
                .collect::<Vec<_>>()
                .join(" / "),
            bt.gbm_fit_seconds
                .iter()
                .map(|s| (s * 10.0).round() / 10.0)
                .collect::<Vec<_>>(),
            bt_seconds,
            decision(&whole.decision),
            whole_seconds,
            fit_seconds,
            booster.trees,
        ));
        Ok(())
    }

    /// The churn probability with fixed class weights (balanced, none).
    fn report_fixed_class_weights(
        &self,
        label: &str,
        data: &learn::Dataset,
        details: &mut Vec<String>,
    ) -> Result<(), String> {
        for (name, cw) in [
            ("balanced class weights", learn::ClassWeight::Balanced),
            ("no class weights", learn::ClassWeight::None),
        ] {
            let fixed = learn::TrainOptions {
                class_weight: cw,
                class_weight_candidates: Vec::new(),
                ..self.options.clone()
            };
            let trained_fixed =
                learn::train_kpis(data, &self.specs, &self.choice, data.n_churned(), &fixed)
                    .map_err(|e| e.to_string())?;
            let bt_fixed = learn::backtest_kpis(data, &self.specs, &self.choice, 2, &fixed)
                .map_err(|e| e.to_string())?;
            print_row(
                label,
                data,
                &format!("churn probability, {name} (fixed)"),
                Some(&trained_fixed.trained.in_sample),
                &bt_fixed,
            );
            details.push(format!(
                "{label}, {name} (fixed): folds {}",
                fold_text(&bt_fixed)
            ));
        }
        Ok(())
    }

    /// The detail line of the default churn probability model.
    fn detail(
        &self,
        label: &str,
        data: &learn::Dataset,
        trained_kpis: &learn::TrainedKpiModel,
        bt: &learn::BacktestReport,
        folds: &[learn::Fold],
        t: Instant,
    ) -> String {
        let trained = &trained_kpis.trained;
        format!(
            "{label}: layout {} (CV mean AUC per candidate: {}), lambda {}, class weights {:?} (chosen by CV on the whole set; {:.1} s); folds (churn probability): {}; chosen inside each fold's training part: {}; top KPI weights: {}; contradicting: {}",
            trained_kpis.form.describe(),
            trained_kpis
                .layout_scores
                .iter()
                .map(|s| format!(
                    "{} {:.4}",
                    s.layout.describe(),
                    s.mean_auc.unwrap_or(f64::NAN)
                ))
                .collect::<Vec<_>>()
                .join(", "),
            trained.lambda_selection.lambda,
            trained.lambda_selection.class_weight,
            t.elapsed().as_secs_f64(),
            fold_text(bt),
            folds
                .iter()
                .map(|f| learn::select_layout(
                    &data.subset(&f.train),
                    &self.specs,
                    &self.choice,
                    &self.options
                )
                .map(|(_, l, s, _)| format!(
                    "{} {:?} lambda {}",
                    l.describe(),
                    s.class_weight,
                    s.lambda
                ))
                .unwrap_or_else(|e| e.to_string()))
                .collect::<Vec<_>>()
                .join(" / "),
            {
                let mut w: Vec<&learn::KpiWeight> = trained.weights.kpis.iter().collect();
                w.sort_by(|a, b| b.weight.total_cmp(&a.weight));
                w.iter()
                    .take(8)
                    .map(|k| format!("{} {:.3}", k.name, k.weight))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            trained.weights.contradicting.join(", ")
        )
    }
}

/// One row of the results table.
fn print_row(
    label: &str,
    data: &learn::Dataset,
    model: &str,
    ins: Option<&learn::Evaluation>,
    bt: &learn::BacktestReport,
) {
    println!(
        "| {label} | {} | {} | {model} | {} | {} | {:.3} | {:.2} |",
        data.len(),
        data.n_churned(),
        ins.map_or("–".to_owned(), |e| format!("{:.3}", e.auc)),
        ins.map_or("–".to_owned(), |e| format!("{:.2}", e.top_decile_lift)),
        bt.mean_auc,
        bt.mean_top_decile_lift
    );
}

fn run(dir: &Path) -> Result<(), String> {
    let loaded = load(dir)?;
    let uniform = scoring::ProfileConfig::default();
    let (health, cats, pct) = score_all(&loaded, &uniform)?;
    let cols = informative(&pct);
    let kpis = loaded.catalogue.kpis();
    let names: Vec<String> = cols.iter().map(|&k| kpis[k].name.to_string()).collect();
    println!("informative KPIs ({}): {}", cols.len(), names.join(", "));
    let choice = layout_choice();
    println!(
        "feature layout candidates: {}",
        choice
            .candidates
            .iter()
            .map(learn::KpiForm::describe)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let study = Study {
        loaded: &loaded,
        specs: kpi_specs(kpis, &cols),
        cols,
        layout: learn::LayoutChoice::full_data(),
        choice,
        options: learn::TrainOptions::default(),
        health,
        cats,
    };
    let all = study.dataset(&pct)?;
    let march = NaiveDate::from_ymd_opt(2020, 3, 1).ok_or("date")?;

    println!(
        "\n| observations | n | churned | model | in-sample AUC | in-sample lift | backtest AUC | backtest lift |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut details = Vec::new();
    for (label, subset) in [
        ("all (2020-02-09 ..)", (0..all.len()).collect::<Vec<_>>()),
        (
            "dataset2 period (2020-03-01 ..)",
            (0..all.len()).filter(|&i| all.dates[i] >= march).collect(),
        ),
    ] {
        study.report(label, &all.subset(&subset), &mut details)?;
    }
    println!();
    for d in details {
        println!("{d}\n");
    }
    println!(
        "book's baseline (dataset2 period): backtest AUC 0.705, lift 4.37; in-sample 0.742 / 4.24"
    );
    Ok(())
}
