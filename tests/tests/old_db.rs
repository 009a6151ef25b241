//! A database written by an earlier version of Vitals opens with today's binary and reads
//! the same scores: `tests/data/old-db/` holds a SQLite database made by commit `4074e62`
//! (the last build before the store and scoring-input refactor of issue 20) and what that
//! build answered to every read (`expected.txt`, one line per answer). The test serves the
//! old database with today's `vitals serve` (which migrates it), reads everything again and
//! compares line by line; then it recomputes the scores at the same `as_of` and checks
//! today's code gives the old values, bands and drivers from the old data.
//!
//! How the fixture was made, and how to make a new one: `tests/data/old-db/README.md`.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::transport::Channel;
use vitals_proto::learner::v1 as lrn;
use vitals_proto::profiles::v1 as prf;
use vitals_proto::scoring::v1 as sco;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/old-db")
}

/// The fixture database, unpacked to a fresh temporary file (the server migrates it).
fn unpack_fixture() -> PathBuf {
    let gz = std::fs::File::open(fixture_dir().join("vitals-4074e62.db.gz")).expect("fixture");
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut bytes)
        .expect("gunzip fixture");
    let path = common::temp_db("old-db");
    std::fs::write(&path, bytes).expect("write fixture copy");
    path
}

/// Every read a user can make of the stored data, one line per answer (`Debug` of the
/// prost message; page tokens left out: they are opaque and may change format).
async fn read_everything(channel: Channel) -> Vec<String> {
    let mut scoring = sco::scoring_service_client::ScoringServiceClient::new(channel.clone());
    let mut profiles = prf::profiles_service_client::ProfilesServiceClient::new(channel.clone());
    let mut learner = lrn::learner_service_client::LearnerServiceClient::new(channel);
    let mut lines = Vec::new();

    let listed = profiles
        .list_health_profiles(prf::ListHealthProfilesRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("ListHealthProfiles")
        .into_inner();
    let profile_names: Vec<String> = listed
        .health_profiles
        .iter()
        .map(|p| p.name.clone())
        .collect();
    for p in &listed.health_profiles {
        lines.push(format!("profile {p:?}"));
    }
    let cards = profiles
        .list_scorecards(prf::ListScorecardsRequest::default())
        .await
        .expect("ListScorecards")
        .into_inner();
    let card_names: Vec<String> = cards.scorecards.iter().map(|c| c.name.clone()).collect();
    for c in &cards.scorecards {
        lines.push(format!("scorecard {c:?}"));
    }

    // Every latest snapshot, page by page.
    let mut accounts = Vec::new();
    let mut token = String::new();
    loop {
        let page = scoring
            .list_scores(sco::ListScoresRequest {
                page_size: 25,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("ListScores")
            .into_inner();
        lines.push(format!("list_scores total {}", page.total_size));
        for s in page.snapshots {
            accounts.push(s.account_id.clone());
            lines.push(format!("list_scores {s:?}"));
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert!(!accounts.is_empty(), "the old database holds scores");

    for account in &accounts {
        let got = scoring
            .get_score(sco::GetScoreRequest {
                account_id: account.clone(),
                ..Default::default()
            })
            .await
            .expect("GetScore")
            .into_inner();
        lines.push(format!("get_score {got:?}"));
        let explained = scoring
            .explain_score(sco::ExplainScoreRequest {
                account_id: account.clone(),
                ..Default::default()
            })
            .await
            .expect("ExplainScore")
            .into_inner();
        lines.push(format!("explain_score {explained:?}"));
        let history = scoring
            .get_score_history(sco::GetScoreHistoryRequest {
                account_id: account.clone(),
                page_size: 100,
                ..Default::default()
            })
            .await
            .expect("GetScoreHistory")
            .into_inner();
        for s in history.snapshots {
            lines.push(format!("history {s:?}"));
        }
        for card in &card_names {
            let got = scoring
                .get_score(sco::GetScoreRequest {
                    account_id: account.clone(),
                    scorecard: card.clone(),
                    ..Default::default()
                })
                .await;
            lines.push(format!(
                "get_score {card} {:?}",
                got.map(|r| r.into_inner()).map_err(|s| s.code())
            ));
        }
    }

    let global = scoring
        .get_distribution(sco::GetDistributionRequest {
            global: true,
            ..Default::default()
        })
        .await
        .expect("GetDistribution global")
        .into_inner();
    lines.push(format!("distribution global {global:?}"));
    for profile in &profile_names {
        let d = scoring
            .get_distribution(sco::GetDistributionRequest {
                profile: profile.clone(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner())
            .map_err(|s| s.code());
        lines.push(format!("distribution {profile} {d:?}"));
        let w = learner
            .get_weights(lrn::GetWeightsRequest {
                profile: profile.clone(),
            })
            .await
            .map(|r| r.into_inner())
            .map_err(|s| s.code());
        lines.push(format!("weights {profile} {w:?}"));
    }
    let models = learner
        .list_models(lrn::ListModelsRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("ListModels")
        .into_inner();
    for mut m in models.models {
        // `churn_backtest` (added after the fixture) restates the stored training
        // metrics' backtest; the comparison below covers those metrics as they were.
        m.churn_backtest = None;
        lines.push(format!("model {m:?}"));
    }
    let outcomes = learner
        .list_outcomes(lrn::ListOutcomesRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("ListOutcomes")
        .into_inner();
    for o in outcomes.outcomes {
        lines.push(format!("outcome {o:?}"));
    }
    lines
}

/// The latest snapshot of every account: (value, band, drivers' KPI names), by account.
async fn latest_scores(channel: Channel) -> BTreeMap<String, (f64, i32, Vec<String>)> {
    let mut scoring = sco::scoring_service_client::ScoringServiceClient::new(channel);
    let mut out = BTreeMap::new();
    let mut token = String::new();
    loop {
        let page = scoring
            .list_scores(sco::ListScoresRequest {
                page_size: 100,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("ListScores")
            .into_inner();
        for s in page.snapshots {
            let drivers = s.drivers.iter().map(|d| d.kpi.clone()).collect();
            out.insert(s.account_id.clone(), (s.value, s.band, drivers));
        }
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

#[tokio::test]
async fn a_database_written_by_the_old_code_reads_the_same_scores() {
    let db = unpack_fixture();
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let (mut child, addr) = common::spawn_vitals(&[("DATABASE_URL", &url)]);
    common::wait_serving(&mut child, addr, Duration::from_secs(60)).await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");

    let lines = read_everything(channel.clone()).await;
    let expected_path = fixture_dir().join("expected.txt");
    if std::env::var_os("VITALS_OLD_DB_RECORD").is_some() {
        // Only meaningful with the build that wrote the fixture (see the README there).
        std::fs::write(&expected_path, lines.join("\n") + "\n").expect("record expected");
    }
    let expected = std::fs::read_to_string(&expected_path).expect("expected.txt");
    let expected: Vec<&str> = expected.lines().collect();
    assert_eq!(lines.len(), expected.len(), "number of answers");
    for (i, (got, want)) in lines.iter().zip(&expected).enumerate() {
        // Fields added to the answers since the fixture was recorded, whose only right
        // value on an old database is "none": `ScoreSnapshot.manual_override` (the old
        // build had no overrides), the parents' roll-up and `Account.parent_id` (it had
        // no parent accounts), and the learner's fields below.
        let got = got
            .replace(", manual_override: None", "")
            .replace(
                ", rollup_score: None, rollup_children: 0, rollup_method: \"\"",
                "",
            )
            .replace(", parent_id: None", "")
            // The learner's fields added since: the ECE of metrics (0 when not measured),
            // the observation window, the calibration and the serving rule's candidate
            // flag; an old model has no window or calibration and is no candidate.
            .replace(", expected_calibration_error: 0.0", "")
            .replace(
                ", window: None, calibration: None, churn_backtest: None, candidate: false, \
                 candidate_reason: \"\"",
                "",
            )
            // The gradient-boosted challenger (not asked for by an old model's options,
            // no decision on it) and the booster GetWeights would carry.
            .replace(", challenger: Some(false)", "")
            .replace(", challenger: None", "")
            .replace(", booster_json: \"\"", "");
        // Each coefficient's missing value (GetWeights, Model), new since the fixture.
        let got = without_field(&got, ", missing_value: Some(");
        // Decimals to 12 significant digits: the stored JSON's floats are parsed exactly
        // now (serde_json's `float_roundtrip`, enabled by a dependency since), where the
        // old build's parser could be one unit in the last place off.
        assert_eq!(
            round_decimals(&got),
            round_decimals(want),
            "answer {i} differs from the old build's"
        );
    }

    // Today's code, on the old data, at the same as_of: the same scores.
    let before = latest_scores(channel.clone()).await;
    let as_of = {
        let mut scoring = sco::scoring_service_client::ScoringServiceClient::new(channel.clone());
        let any = before.keys().next().expect("an account").clone();
        scoring
            .get_score(sco::GetScoreRequest {
                account_id: any,
                ..Default::default()
            })
            .await
            .expect("GetScore")
            .into_inner()
            .snapshot
            .expect("snapshot")
            .as_of
    };
    let mut scoring = sco::scoring_service_client::ScoringServiceClient::new(channel.clone());
    scoring
        .compute_scores(sco::ComputeScoresRequest {
            as_of,
            ..Default::default()
        })
        .await
        .expect("ComputeScores on the old database");
    let after = latest_scores(channel).await;
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (account, (value, band, drivers)) in &before {
        let (v, b, d) = &after[account];
        assert!(
            (value - v).abs() < 1e-9,
            "{account}: old score {value}, recomputed {v}"
        );
        assert_eq!((band, drivers), (b, d), "{account}");
    }
    drop(child);
    let _ = std::fs::remove_file(&db);
}

/// `s` without each `field` (e.g. `, missing_value: Some(`) and its value up to the
/// closing parenthesis.
fn without_field(s: &str, field: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(field) {
        out.push_str(&rest[..i]);
        let after = &rest[i + field.len()..];
        rest = after.find(')').map_or("", |j| &after[j + 1..]);
    }
    out.push_str(rest);
    out
}

/// `s` with every decimal number (digits, a point, digits, an optional exponent, not part
/// of a name) written with 12 significant digits.
fn round_decimals(s: &str) -> String {
    let b = s.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        let starts_number = b[i].is_ascii_digit()
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'));
        if !starts_number {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let mut j = i;
        while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'.') {
            j += 1;
        }
        if j < b.len() && b[j] == b'e' {
            let mut k = j + 1;
            if k < b.len() && b[k] == b'-' {
                k += 1;
            }
            if k < b.len() && b[k].is_ascii_digit() {
                j = k;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
            }
        }
        let token = &s[i..j];
        match token.parse::<f64>() {
            Ok(v) if token.contains('.') => out.extend_from_slice(format!("{v:.11e}").as_bytes()),
            _ => out.extend_from_slice(token.as_bytes()),
        }
        i = j;
    }
    String::from_utf8(out).expect("only ASCII numbers were rewritten")
}

#[test]
fn decimals_are_compared_to_12_significant_digits() {
    assert_eq!(
        round_decimals("w: 0.12434357757327305, n: 3, id: a1.5"),
        round_decimals("w: 0.12434357757327304, n: 3, id: a1.5")
    );
    assert_ne!(
        round_decimals("w: 0.1243435775"),
        round_decimals("w: 0.1243435776")
    );
    assert_eq!(
        round_decimals("x: 1.5e-7, n: 42"),
        "x: 1.50000000000e-7, n: 42"
    );
}

#[test]
fn a_new_field_is_removed_with_its_value() {
    assert_eq!(
        without_field(
            "C { kpi: \"a:log\", missing_value: Some(2.5) }, C { x: 1, missing_value: Some(0.5) }",
            ", missing_value: Some("
        ),
        "C { kpi: \"a:log\" }, C { x: 1 }"
    );
    assert_eq!(without_field("none here", ", f: Some("), "none here");
}
