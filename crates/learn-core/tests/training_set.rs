//! The training-set builder: labels from outcomes within the horizon, censoring, and no
//! leakage of data dated on or after the observation date into the features.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{Days, NaiveDate};
use vitals_learn_core::*;

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// Daily event counts per account, as a feature source.
struct Events(HashMap<String, DatedSeries<f64>>);

impl Events {
    /// Features as of `date`: events in the 28 days before, and days since the last one.
    fn features(&self, account: &str, date: NaiveDate) -> Option<Vec<f64>> {
        let s = self.0.get(account)?;
        let count: f64 = s.window(date, 28).iter().map(|(_, c)| c).sum();
        let since = s
            .before(date)
            .last()
            .map(|(day, _)| (date - *day).num_days() as f64);
        Some(vec![count, since.unwrap_or(f64::NAN)])
    }
}

fn history(days: &[(&str, f64)]) -> DatedSeries<f64> {
    DatedSeries::new(days.iter().map(|(s, c)| (d(s), *c)).collect())
}

fn outcomes() -> HashMap<String, Vec<Outcome>> {
    let mut o = HashMap::new();
    o.insert(
        "a".to_owned(),
        vec![Outcome {
            kind: OutcomeKind::Churned,
            at: d("2020-03-20"),
        }],
    );
    o.insert(
        "b".to_owned(),
        vec![Outcome {
            kind: OutcomeKind::Renewed,
            at: d("2020-02-15"),
        }],
    );
    o.insert(
        "c".to_owned(),
        vec![Outcome {
            kind: OutcomeKind::Inactive,
            at: d("2020-02-20"),
        }],
    );
    o
}

fn points() -> Vec<ObservationPoint> {
    let mut v = Vec::new();
    for account in ["a", "b", "c"] {
        for date in [
            "2020-01-01",
            "2020-02-01",
            "2020-03-01",
            "2020-04-01",
            "2020-05-01",
        ] {
            v.push(ObservationPoint {
                account: account.to_owned(),
                date: d(date),
                settles: None,
            });
        }
    }
    v
}

fn names() -> Vec<String> {
    vec!["events_28d".to_owned(), "days_since_event".to_owned()]
}

#[test]
fn labels_censoring_and_already_churned() {
    let events = Events(
        ["a", "b", "c"]
            .iter()
            .map(|a| {
                (
                    (*a).to_owned(),
                    history(&[("2019-12-20", 1.0), ("2020-02-10", 2.0)]),
                )
            })
            .collect(),
    );
    let set = build_training_set(
        names(),
        &points(),
        &outcomes(),
        d("2020-04-15"),
        &LabelOptions::default(),
        |a, date| events.features(a, date),
    )
    .unwrap();
    let ds = &set.dataset;
    let label = |acc: &str, date: &str| {
        (0..ds.len())
            .find(|&i| ds.accounts[i] == acc && ds.dates[i] == d(date))
            .map(|i| ds.labels[i])
    };
    // a churns 2020-03-20: within 60 days of 02-01 and 03-01, not of 01-01 (79 days).
    assert_eq!(label("a", "2020-01-01"), Some(false));
    assert_eq!(label("a", "2020-02-01"), Some(true));
    assert_eq!(label("a", "2020-03-01"), Some(true));
    // After its churn, a is not observed any more.
    assert_eq!(label("a", "2020-04-01"), None);
    assert_eq!(set.already_churned, 2);
    // Horizons ending after 04-15 without a churn are unknown: 03-01 + 60 = 04-30.
    assert_eq!(label("b", "2020-02-01"), Some(false));
    assert_eq!(label("b", "2020-03-01"), None);
    // Inactive does not count as churn by default, and b/c at 03-01, 04-01, 05-01 are censored.
    assert_eq!(label("c", "2020-02-01"), Some(false));
    assert_eq!(set.censored, 6);
    assert_eq!(ds.len(), 15 - 2 - 6);
    // With inactivity counted as churn, c churns 02-20.
    let opts = LabelOptions {
        inactive_counts_as_churn: true,
        ..LabelOptions::default()
    };
    let set2 = build_training_set(
        names(),
        &points(),
        &outcomes(),
        d("2020-04-15"),
        &opts,
        |a, date| events.features(a, date),
    )
    .unwrap();
    let i = (0..set2.dataset.len())
        .find(|&i| set2.dataset.accounts[i] == "c" && set2.dataset.dates[i] == d("2020-02-01"))
        .unwrap();
    assert!(set2.dataset.labels[i]);
    // Horizon 30 days: a's 02-01 observation (47 days before the churn) is retained.
    let opts = LabelOptions {
        horizon_days: 30,
        ..LabelOptions::default()
    };
    let set3 = build_training_set(
        names(),
        &points(),
        &outcomes(),
        d("2020-04-15"),
        &opts,
        |a, date| events.features(a, date),
    )
    .unwrap();
    let i = (0..set3.dataset.len())
        .find(|&i| set3.dataset.accounts[i] == "a" && set3.dataset.dates[i] == d("2020-02-01"))
        .unwrap();
    assert!(!set3.dataset.labels[i]);
}

#[test]
fn an_observations_settle_date_decides_whether_its_label_is_known() {
    let events = Events(
        ["b"]
            .iter()
            .map(|a| ((*a).to_owned(), history(&[("2019-12-20", 1.0)])))
            .collect(),
    );
    // b observed 03-01, its renewal 03-05: with outcomes known until 04-15, the horizon
    // (60 days, to 04-30) is not over, but the renewal passed without a churn.
    let point = |settles| ObservationPoint {
        account: "b".to_owned(),
        date: d("2020-03-01"),
        settles,
    };
    let build = |points: &[ObservationPoint]| {
        build_training_set(
            names(),
            points,
            &outcomes(),
            d("2020-04-15"),
            &LabelOptions::default(),
            |a, date| events.features(a, date),
        )
        .unwrap()
    };
    let set = build(&[point(None), point(Some(d("2020-03-05")))]);
    assert_eq!(
        set.censored, 1,
        "without a settle date the label is unknown"
    );
    assert_eq!(set.dataset.len(), 1);
    assert!(!set.dataset.labels[0]);
    // Settled after what is known, or never: censored, even once the horizon is over.
    let set = build(&[point(Some(d("2020-04-20")))]);
    assert_eq!((set.censored, set.dataset.len()), (1, 0));
    let early = ObservationPoint {
        date: d("2020-01-01"),
        ..point(Some(NaiveDate::MAX))
    };
    let set = build(&[
        early.clone(),
        ObservationPoint {
            settles: None,
            ..early
        },
    ]);
    assert_eq!((set.censored, set.dataset.len()), (1, 1));
}

#[test]
fn no_leakage_features_ignore_data_from_the_observation_date_on() {
    // Two worlds that agree before each observation date and differ wildly after it.
    let base = [
        ("2019-12-20", 1.0),
        ("2020-01-15", 3.0),
        ("2020-02-28", 2.0),
    ];
    let mut future = base.to_vec();
    future.extend([
        ("2020-03-01", 500.0),
        ("2020-03-02", 900.0),
        ("2020-06-01", 7.0),
    ]);
    let world = |days: &[(&str, f64)]| {
        Events(
            ["a", "b", "c"]
                .iter()
                .map(|a| ((*a).to_owned(), history(days)))
                .collect(),
        )
    };
    let (past_only, with_future) = (world(&base), world(&future));
    let calls = Mutex::new(Vec::new());
    let build = |events: &Events| {
        build_training_set(
            names(),
            &points(),
            &outcomes(),
            d("2020-12-31"),
            &LabelOptions::default(),
            |a, date| {
                calls.lock().unwrap().push(date);
                events.features(a, date)
            },
        )
        .unwrap()
    };
    let s1 = build(&past_only);
    let s2 = build(&with_future);
    // Observations up to 03-01 have identical features in both worlds: the data dated
    // 03-01 and later is invisible to them (03-01 itself included).
    for i in 0..s1.dataset.len() {
        if s1.dataset.dates[i] <= d("2020-03-01") {
            assert_eq!(s1.dataset.x.row(i), s2.dataset.x.row(i), "row {i} leaked");
        }
    }
    // Labels never depend on the features' data.
    assert_eq!(s1.dataset.labels, s2.dataset.labels);
    // The feature function was only ever asked about observation dates.
    let allowed: Vec<NaiveDate> = points().iter().map(|p| p.date).collect();
    assert!(calls.lock().unwrap().iter().all(|c| allowed.contains(c)));
    // And the 28-day window really is [date - 28, date).
    let i = (0..s1.dataset.len())
        .find(|&i| s1.dataset.accounts[i] == "b" && s1.dataset.dates[i] == d("2020-03-01"))
        .unwrap();
    assert_eq!(s1.dataset.x[[i, 0]], 2.0);
    assert_eq!(s1.dataset.x[[i, 1]], 2.0);
}

#[test]
fn wrong_feature_length_is_an_error_and_none_is_counted() {
    let err = build_training_set(
        names(),
        &points(),
        &outcomes(),
        d("2020-12-31"),
        &LabelOptions::default(),
        |_, _| Some(vec![1.0]),
    );
    assert!(matches!(err, Err(LearnError::ShapeMismatch { .. })));
    let set = build_training_set(
        names(),
        &points(),
        &outcomes(),
        d("2020-12-31"),
        &LabelOptions::default(),
        |a, _| (a != "b").then(|| vec![1.0, 2.0]),
    )
    .unwrap();
    assert_eq!(set.without_features, 5);
}

#[test]
fn regular_observation_dates_follow_the_active_period() {
    let accounts = vec![
        ("a".to_owned(), d("2020-01-10"), Some(d("2020-03-01"))),
        ("b".to_owned(), d("2019-01-01"), None),
    ];
    let pts = regular_observations(&accounts, d("2020-01-01"), d("2020-03-31"), 28).unwrap();
    let dates = |acc: &str| -> Vec<NaiveDate> {
        pts.iter()
            .filter(|p| p.account == acc)
            .map(|p| p.date)
            .collect()
    };
    // 01-01, 01-29, 02-26, 03-25
    assert_eq!(dates("b").len(), 4);
    assert_eq!(dates("a"), vec![d("2020-01-29"), d("2020-02-26")]);
    assert_eq!(
        d("2020-01-01").checked_add_days(Days::new(28)).unwrap(),
        d("2020-01-29")
    );
    assert!(regular_observations(&accounts, d("2020-01-01"), d("2020-03-31"), 0).is_err());
}
