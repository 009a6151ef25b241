//! Sanity check of the whole method on the sample data (not a unit test: it needs
//! ../shared/data next to the repository, which a fresh clone may not have).
//!
//! `cargo run --release -p vitals-scoring-core --example sample_check -- [DATA_DIR]`
//! (default `../shared/data/socialnet7-small` next to the repository).
//!
//! Daily roll-ups are built from the raw events; for each observation day T (the 1st of
//! March, April and May 2020) the accounts with an active subscription are scored with
//! the built-in method, uniform weights and one profile, and the score is compared with
//! "churns within the next 30 days" (churn as defined in the data's README). A health
//! score that means anything ranks churners low: AUC of (10 - score) well above 0.5.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use chrono::{Days, NaiveDate};
use flate2::read::GzDecoder;
use vitals_scoring_core::*;

fn lines(path: &Path) -> Vec<String> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| {
        eprintln!(
            "cannot open {}: {e} (the sample data from ../shared/data is needed)",
            path.display()
        );
        std::process::exit(2)
    });
    BufReader::new(GzDecoder::new(file))
        .lines()
        .skip(1)
        .map_while(Result::ok)
        .collect()
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(&s[..10], "%Y-%m-%d").expect("date in the sample data")
}

/// AUC of `risk` for `label` (probability a random positive outranks a random
/// negative, ties counting half), via mid-rank percentiles.
fn auc(risk: &[f64], label: &[bool]) -> f64 {
    let p = mid_rank_percentiles(risk, Direction::HigherIsBetter);
    let n = risk.len() as f64;
    let pos: Vec<f64> = p
        .iter()
        .zip(label)
        .filter(|(_, l)| **l)
        .map(|(p, _)| *p)
        .collect();
    let (n1, n0) = (pos.len() as f64, n - pos.len() as f64);
    // Sum of mid-ranks of the positives: rank = p x n + 0.5.
    let rank_sum: f64 = pos.iter().map(|p| p * n + 0.5).sum();
    (rank_sum - n1 * (n1 + 1.0) / 2.0) / (n1 * n0)
}

/// The sample data as scoring inputs.
struct Sample {
    subs: HashMap<u32, Vec<Subscription>>,
    /// Churn date of each churned account.
    churn: HashMap<u32, NaiveDate>,
    usage: HashMap<u32, Vec<DailyUsage>>,
    catalogue: Catalogue,
    /// Number of event types in the data.
    n_types: usize,
    /// Every account, sorted.
    accounts: Vec<u32>,
    created: HashMap<u32, NaiveDate>,
}

/// Subscriptions per account.
fn load_subscriptions(dir: &Path) -> HashMap<u32, Vec<Subscription>> {
    let mut subs: HashMap<u32, Vec<Subscription>> = HashMap::new();
    for l in lines(&dir.join("subscription.csv.gz")) {
        let f: Vec<&str> = l.split(',').collect();
        subs.entry(f[0].parse().expect("account id"))
            .or_default()
            .push(Subscription {
                start: date(f[2]),
                end: (!f[3].is_empty()).then(|| date(f[3])),
                mrr: f[4].parse().unwrap_or(0.0),
                quantity: f[5].parse().ok(),
                add_on: false,
                discount: f[8].parse().unwrap_or(0.0),
                billing_period_months: f[7].parse().unwrap_or(1),
            });
    }
    subs
}

/// Daily roll-ups from the raw events (events after churn ignored, as the README says)
/// and the event type names by id.
fn roll_up_events(
    dir: &Path,
    churn: &HashMap<u32, NaiveDate>,
) -> (HashMap<u32, Vec<DailyUsage>>, Vec<String>) {
    let mut type_ids: HashMap<String, u32> = HashMap::new();
    let mut roll: HashMap<(u32, NaiveDate, u32), (u32, f64)> = HashMap::new();
    for l in lines(&dir.join("event.csv.gz")) {
        let f: Vec<&str> = l.split(',').collect();
        let account: u32 = f[0].parse().expect("account id");
        let day = date(f[1]);
        if churn.get(&account).is_some_and(|&c| day >= c) {
            continue;
        }
        let next = type_ids.len() as u32;
        let et = *type_ids.entry(f[2].to_string()).or_insert(next);
        let e = roll.entry((account, day, et)).or_insert((0, 0.0));
        e.0 += 1;
        e.1 += f.get(4).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    }
    let mut usage: HashMap<u32, Vec<DailyUsage>> = HashMap::new();
    for ((a, day, et), (count, value)) in roll {
        // user_id is always 0 in this product: one user.
        usage.entry(a).or_default().push(DailyUsage {
            day,
            event_type: et,
            count,
            distinct_users: 1,
            value_sum: value,
        });
    }
    let mut names = vec![String::new(); type_ids.len()];
    for (n, id) in &type_ids {
        names[*id as usize] = n.clone();
    }
    (usage, names)
}

fn load_sample(dir: &Path) -> Sample {
    let end_of_data = NaiveDate::from_ymd_opt(2020, 6, 1).expect("valid date");
    let subs = load_subscriptions(dir);
    let churn: HashMap<u32, NaiveDate> = subs
        .iter()
        .filter_map(|(&a, s)| {
            let last = s.iter().filter_map(|x| x.end).max()?;
            (last <= end_of_data).then_some((a, last))
        })
        .collect();
    let (usage, names) = roll_up_events(dir, &churn);
    let n_types = names.len();
    let catalogue = Catalogue::new(&CatalogueSpec {
        event_types: names,
        ..CatalogueSpec::default()
    })
    .expect("valid catalogue");
    let mut accounts: Vec<u32> = subs.keys().copied().collect();
    accounts.sort_unstable();
    let created: HashMap<u32, NaiveDate> = subs
        .iter()
        .map(|(&a, s)| {
            (
                a,
                s.iter().map(|x| x.start).min().expect("one subscription"),
            )
        })
        .collect();
    Sample {
        subs,
        churn,
        usage,
        catalogue,
        n_types,
        accounts,
        created,
    }
}

/// Scores of the accounts active at `t`, in the order of `active`.
fn score_active(sample: &Sample, t: NaiveDate, active: &[u32]) -> (Vec<f64>, Vec<u32>) {
    let empty: Vec<DailyUsage> = Vec::new();
    let inputs: Vec<AccountInputs<'_>> = active
        .iter()
        .map(|a| AccountInputs {
            usage: sample.usage.get(a).unwrap_or(&empty),
            subscriptions: &sample.subs[a],
            attributes: AccountAttributes {
                seats: None,
                created_at: Some(sample.created[a]),
                contacts: None,
            },
            ..AccountInputs::default()
        })
        .collect();
    let config = KpiConfig {
        data_start: NaiveDate::from_ymd_opt(2020, 1, 1),
        ..KpiConfig::default()
    };
    let batch = compute_kpis(&sample.catalogue, &config, t, &inputs).expect("valid config");
    let profiles = [ProfileConfig::default()];
    let profile_of = vec![0u32; active.len()];
    let input = PopulationInput {
        kpis: sample.catalogue.kpis(),
        matrix: &batch.matrix,
        profile_of: &profile_of,
        profiles: &profiles,
        signals: Some(&batch.signals),
    };
    let scores = score_population(&input, &ScoreOptions::default()).expect("valid input");
    let score = scores
        .results()
        .map(|r| r.score.unwrap_or(f64::NAN))
        .collect();
    (score, scores.uninformative_kpis(0).to_vec())
}

/// Scores the accounts active on `t`, prints their table row and pushes the spread
/// lines (printed after the table) to `spreads`.
fn report_as_of(sample: &Sample, t: NaiveDate, spreads: &mut Vec<String>) {
    let horizon = t.checked_add_days(Days::new(30)).expect("valid date");
    let active: Vec<u32> = sample
        .accounts
        .iter()
        .copied()
        .filter(|a| {
            sample.subs[a]
                .iter()
                .any(|s| s.start <= t && s.end.is_none_or(|e| t < e))
        })
        .collect();
    let (score, uninformative) = score_active(sample, t, &active);
    let label: Vec<bool> = active
        .iter()
        .map(|a| sample.churn.get(a).is_some_and(|&c| c > t && c <= horizon))
        .collect();
    let risk: Vec<f64> = score.iter().map(|s| 10.0 - s).collect();
    let mean = |want: bool| {
        let v: Vec<f64> = score
            .iter()
            .zip(&label)
            .filter(|(_, l)| **l == want)
            .map(|(s, _)| *s)
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let bands = BandThresholds::default();
    let mut per_band = [(0u32, 0u32); 3];
    for (s, l) in score.iter().zip(&label) {
        let b = &mut per_band[bands.band(*s) as usize];
        b.0 += 1;
        b.1 += u32::from(*l);
    }
    let d = distribution(score.iter().copied(), &bands);
    let flat: Vec<&str> = uninformative
        .iter()
        .map(|&k| sample.catalogue.kpis()[k as usize].name.as_ref())
        .collect();
    spreads.push(format!(
        "{t}: {} uninformative KPIs (no variation): {}",
        flat.len(),
        flat.join(", ")
    ));
    spreads.push(format!(
        "{t}: score p10 {:.2}, median {:.2}, p90 {:.2}, std {:.2}, bands red/yellow/green {:?}, histogram {:?}",
        d.p10.unwrap_or(f64::NAN),
        d.median.unwrap_or(f64::NAN),
        d.p90.unwrap_or(f64::NAN),
        d.std.unwrap_or(f64::NAN),
        d.bands,
        d.histogram
    ));
    let rate = |b: (u32, u32)| {
        if b.0 == 0 {
            0.0
        } else {
            100.0 * f64::from(b.1) / f64::from(b.0)
        }
    };
    println!(
        "| {t} | {} | {} | {:.2} | {:.2} | {:.3} | {:.1} % / {:.1} % / {:.1} % |",
        active.len(),
        label.iter().filter(|l| **l).count(),
        mean(true),
        mean(false),
        auc(&risk, &label),
        rate(per_band[0]),
        rate(per_band[1]),
        rate(per_band[2]),
    );
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/socialnet7-small")
        });
    let sample = load_sample(&dir);
    println!(
        "accounts: {}, event types: {}, churned: {}",
        sample.accounts.len(),
        sample.n_types,
        sample.churn.len()
    );
    println!(
        "| as of | active accounts | churn in 30 days | mean score churners | others | AUC of 10 - score | churn rate red / yellow / green |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut spreads = Vec::new();
    for month in [3, 4, 5] {
        let t = NaiveDate::from_ymd_opt(2020, month, 1).expect("valid date");
        report_as_of(&sample, t, &mut spreads);
    }
    println!();
    for line in spreads {
        println!("{line}");
    }
}
