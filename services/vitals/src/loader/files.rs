//! The sample-data files of `vitals load`: CSV (gzip, header row) readers and the churn
//! rule that derives outcomes from the subscriptions.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, Read};
use std::path::Path;

use chrono::{NaiveDate, NaiveDateTime, TimeDelta};
use vitals_proto::common::v1 as cpb;
use vitals_proto::ingestion::v1 as pb;

use super::{KindSummary, LoadError, LoadSummary};

/// Opens the gzip CSV `name` of `dir`; a missing file names the expected layout.
pub(super) fn open_csv(
    dir: &Path,
    name: &str,
) -> Result<csv::Reader<Box<dyn Read + Send>>, LoadError> {
    let path = dir.join(name);
    let f = std::fs::File::open(&path).map_err(|e| LoadError::File {
        path: path.clone(),
        reason: format!(
            "cannot open ({e}); expected the sample-data layout of shared/data/README.md"
        ),
    })?;
    let gz: Box<dyn Read + Send> = Box::new(flate2::read::GzDecoder::new(
        BufReader::with_capacity(1 << 20, f),
    ));
    Ok(csv::ReaderBuilder::new().has_headers(true).from_reader(gz))
}

/// Column positions by header name.
pub(super) fn columns(
    r: &mut csv::Reader<Box<dyn Read + Send>>,
    file: &str,
    want: &[&str],
) -> Result<Vec<usize>, LoadError> {
    let headers = r.headers().map_err(|e| LoadError::File {
        path: file.into(),
        reason: format!("cannot read the header row: {e}"),
    })?;
    want.iter()
        .map(|w| {
            headers
                .iter()
                .position(|h| h == *w)
                .ok_or_else(|| LoadError::File {
                    path: file.into(),
                    reason: format!("no column {w:?} in the header row"),
                })
        })
        .collect()
}

/// A timestamp of a naive UTC time of the files.
pub(super) fn ts(t: NaiveDateTime) -> prost_types::Timestamp {
    let u = t.and_utc();
    prost_types::Timestamp {
        seconds: u.timestamp(),
        nanos: 0,
    }
}

/// The start of day `d`, UTC.
pub(super) fn day_ts(d: NaiveDate) -> prost_types::Timestamp {
    ts(d.and_time(chrono::NaiveTime::MIN))
}

/// Whether `account` is in the subset of `--account-divisor`.
pub(super) fn keep(account: &str, divisor: Option<u64>) -> bool {
    match divisor {
        None => true,
        Some(d) => account.parse::<u64>().is_ok_and(|n| n % d == 0),
    }
}

/// One subscription row as read.
#[derive(Clone, Debug)]
pub(super) struct SubRow {
    pub(super) account: String,
    pub(super) product: String,
    pub(super) start: NaiveDate,
    pub(super) end: Option<NaiveDate>,
    pub(super) mrr: f64,
    pub(super) quantity: Option<f64>,
    pub(super) units: String,
    pub(super) bill: u32,
    pub(super) discount: f64,
}

/// A churn derived from subscriptions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Churn {
    /// The account.
    pub account_id: String,
    /// The churn date: the end of the last subscription of an active period.
    pub date: NaiveDate,
}

/// Churns by the sample data's rule: subscriptions chained back to back (a new one
/// starting within 7 days of the previous end) form an active period; a period whose
/// end is on or before `cutoff` is a churn on that end date. `subs` are
/// (account, start, end exclusive) in any order; open-ended subscriptions never churn.
pub fn derive_churns(
    subs: &[(String, NaiveDate, Option<NaiveDate>)],
    cutoff: NaiveDate,
) -> Vec<Churn> {
    let mut by_account: BTreeMap<&str, Vec<(NaiveDate, Option<NaiveDate>)>> = BTreeMap::new();
    for (a, s, e) in subs {
        by_account.entry(a.as_str()).or_default().push((*s, *e));
    }
    let mut out = Vec::new();
    for (account, mut periods) in by_account {
        periods.sort();
        // End of the current active period; None = open-ended.
        let mut end: Option<Option<NaiveDate>> = None;
        for (s, e) in periods {
            match end {
                None => end = Some(e),
                Some(None) => {}
                Some(Some(cur)) => {
                    if s <= cur + TimeDelta::days(7) {
                        end = Some(e.map(|e| e.max(cur)));
                    } else {
                        if cur <= cutoff {
                            out.push(Churn {
                                account_id: account.to_string(),
                                date: cur,
                            });
                        }
                        end = Some(e);
                    }
                }
            }
        }
        if let Some(Some(cur)) = end
            && cur <= cutoff
        {
            out.push(Churn {
                account_id: account.to_string(),
                date: cur,
            });
        }
    }
    out
}

/// Reads the rows of `file` (columns `cols`, the account id first) of the kept accounts,
/// each parsed by `parse` from its fields; a row that cannot be read or parsed is counted
/// in `kind` of the summary as skipped, with its line and reason.
fn read_rows<T>(
    dir: &Path,
    file: &str,
    cols: &[&str],
    divisor: Option<u64>,
    summary: &mut LoadSummary,
    kind: fn(&mut LoadSummary) -> &mut KindSummary,
    mut parse: impl FnMut(&[&str]) -> Result<T, String>,
) -> Result<Vec<T>, LoadError> {
    let mut r = open_csv(dir, file)?;
    let c = columns(&mut r, file, cols)?;
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let line = i + 2;
        let parsed = match rec {
            Ok(rec) => {
                let fields: Vec<&str> =
                    c.iter().map(|&k| rec.get(k).unwrap_or("").trim()).collect();
                if !keep(fields[0], divisor) {
                    continue;
                }
                kind(summary).read += 1;
                parse(&fields)
            }
            Err(e) => Err(e.to_string()),
        };
        match parsed {
            Ok(row) => out.push(row),
            Err(e) => {
                kind(summary).skipped += 1;
                summary.skip(format!("{file}:{line}: {e}"));
            }
        }
    }
    Ok(out)
}

/// A date `YYYY-MM-DD` of column `what`.
fn date(s: &str, what: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| format!("{what} {s:?}: {e}"))
}

/// A number of column `what`, `default` when empty.
fn num(s: &str, what: &str, default: f64) -> Result<f64, String> {
    if s.is_empty() {
        Ok(default)
    } else {
        s.parse::<f64>().map_err(|e| format!("{what} {s:?}: {e}"))
    }
}

/// The subscriptions of subscription.csv.gz (of the kept accounts); bad rows are counted
/// as skipped with their line and reason.
pub(super) fn read_subscriptions(
    dir: &Path,
    divisor: Option<u64>,
    summary: &mut LoadSummary,
) -> Result<Vec<SubRow>, LoadError> {
    let cols = [
        "account_id",
        "product",
        "start_date",
        "end_date",
        "mrr",
        "quantity",
        "units",
        "bill_period_months",
        "discount",
    ];
    read_rows(
        dir,
        "subscription.csv.gz",
        &cols,
        divisor,
        summary,
        |s| &mut s.subscriptions,
        |f| {
            Ok(SubRow {
                account: f[0].to_string(),
                product: f[1].to_string(),
                start: date(f[2], "start_date")?,
                end: if f[3].is_empty() {
                    None
                } else {
                    Some(date(f[3], "end_date")?)
                },
                mrr: num(f[4], "mrr", 0.0)?,
                quantity: if f[5].is_empty() {
                    None
                } else {
                    Some(num(f[5], "quantity", 0.0)?)
                },
                units: f[6].to_string(),
                bill: num(f[7], "bill_period_months", 1.0)? as u32,
                discount: num(f[8], "discount", 0.0)?,
            })
        },
    )
}

/// The accounts of account.csv.gz (of the kept accounts) with their attributes; the create
/// time is the account's first subscription start.
pub(super) fn read_accounts(
    dir: &Path,
    divisor: Option<u64>,
    first_start: &HashMap<&str, NaiveDate>,
    summary: &mut LoadSummary,
) -> Result<Vec<pb::Account>, LoadError> {
    let cols = ["account_id", "channel", "date_of_birth", "country"];
    read_rows(
        dir,
        "account.csv.gz",
        &cols,
        divisor,
        summary,
        |s| &mut s.accounts,
        |f| {
            if f[0].is_empty() {
                return Err("empty account_id".into());
            }
            let s = |v: &str| cpb::AttributeValue {
                kind: Some(cpb::attribute_value::Kind::StringValue(v.to_string())),
            };
            let mut attributes = HashMap::new();
            if !f[1].is_empty() {
                attributes.insert("channel".to_string(), s(f[1]));
            }
            if !f[3].is_empty() {
                attributes.insert("country".to_string(), s(f[3]));
            }
            if !f[2].is_empty() {
                let born = date(f[2], "date_of_birth")?;
                attributes.insert(
                    "date_of_birth".to_string(),
                    cpb::AttributeValue {
                        kind: Some(cpb::attribute_value::Kind::TimestampValue(day_ts(born))),
                    },
                );
            }
            Ok(pb::Account {
                account_id: f[0].to_string(),
                display_name: String::new(),
                attributes,
                create_time: first_start.get(f[0]).map(|d| day_ts(*d)),
                status: pb::AccountStatus::Unspecified as i32,
                profile: String::new(),
                update_time: None,
                // The simulated data has no account hierarchy: keep whatever is stored.
                parent_id: None,
            })
        },
    )
}

/// The event types named in event_type.csv.gz.
pub(super) fn read_event_types(
    dir: &Path,
    summary: &mut LoadSummary,
) -> Result<Vec<pb::EventType>, LoadError> {
    let file = "event_type.csv.gz";
    let mut r = open_csv(dir, file)?;
    let c = columns(&mut r, file, &["event_type_name"])?;
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        summary.event_types.read += 1;
        match rec {
            Ok(rec) if !rec.get(c[0]).unwrap_or("").trim().is_empty() => {
                let name = rec.get(c[0]).unwrap_or("").trim().to_string();
                out.push(pb::EventType {
                    display_name: name.clone(),
                    name,
                    key: false,
                    description: String::new(),
                    event_count: 0,
                });
            }
            Ok(_) => {
                summary.event_types.skipped += 1;
                summary.skip(format!("{file}:{}: empty event_type_name", i + 2));
            }
            Err(e) => {
                summary.event_types.skipped += 1;
                summary.skip(format!("{file}:{}: {e}", i + 2));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn churn_rule() {
        let subs = vec![
            // a: renewed back to back, ends before the cutoff: churn at the last end.
            ("a".to_string(), d("2020-01-01"), Some(d("2020-02-01"))),
            ("a".to_string(), d("2020-02-01"), Some(d("2020-03-01"))),
            // b: still subscribed after the cutoff: no churn.
            ("b".to_string(), d("2020-05-10"), Some(d("2020-06-10"))),
            // c: gap of 10 days, then back, then still active: one churn at the gap.
            ("c".to_string(), d("2020-01-01"), Some(d("2020-02-01"))),
            ("c".to_string(), d("2020-02-11"), Some(d("2020-07-01"))),
            // e: renewal 7 days after the end counts as continuous.
            ("e".to_string(), d("2020-01-01"), Some(d("2020-02-01"))),
            ("e".to_string(), d("2020-02-08"), Some(d("2020-07-01"))),
            // f: ends exactly on the cutoff: churn.
            ("f".to_string(), d("2020-05-01"), Some(d("2020-06-01"))),
        ];
        let churns = derive_churns(&subs, d("2020-06-01"));
        assert_eq!(
            churns,
            vec![
                Churn {
                    account_id: "a".into(),
                    date: d("2020-03-01")
                },
                Churn {
                    account_id: "c".into(),
                    date: d("2020-02-01")
                },
                Churn {
                    account_id: "f".into(),
                    date: d("2020-06-01")
                },
            ]
        );
    }
}
