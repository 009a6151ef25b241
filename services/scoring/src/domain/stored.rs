//! What the scoring service keeps in `score_snapshots.sub_scores` (JSON) and
//! `.drivers_bin` (or, in rows written before migration 10, the JSON `.drivers`).
//!
//! The drivers are every present KPI's part in a profile score, most negative
//! contribution first: `(kpi, category, value, percentile, kpi_score, weight,
//! contribution)` (percentile 0..1 or none), so ExplainScore and "why it changed" never
//! recompute a population. The contribution is stored as scoring-core computed it (its
//! attribution of the calibrated category scores, see docs/scoring.md §9), so the
//! contributions plus the adjustment's share add up to the score minus 5. Numbers are
//! rounded to 6 decimals.
//!
//! Two stored forms, read alike by [`decode_drivers`] / the JSON reader:
//! - JSON (rows written before migration 10, in `drivers`): an array of arrays
//!   `[kpi, category, value, percentile, kpi_score, weight, contribution]`;
//! - binary (every row since, in `drivers_bin`; `drivers` is then JSON `null`), see
//!   [`encode_drivers`]: about 0.7 KB instead of 2.3 KB for the ~38 drivers of a
//!   profile score, which is what PostgreSQL validated, compressed and logged on every
//!   run (docs/bench-scoring-service.md). It holds exactly the same values: a number
//!   is kept as its integer count of millionths when that reproduces it bit for bit, else
//!   as its 8 bytes.

use prost::encoding::{decode_varint, encode_varint};
use serde::{Deserialize, Serialize};
use vitals_scoring_core::{Category, ChangeItem, Explanation, KpiContribution};

/// Rounds to 6 decimals.
pub fn r6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// One category sub-score.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredCategory {
    /// Proto `ScoreCategory` value.
    pub c: i32,
    /// Custom score field name (score-field category only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub f: String,
    /// Sub-score; none when nothing of the category had a value.
    pub v: Option<f64>,
    /// Effective weight (sums to 1 over the present categories).
    pub w: f64,
    /// KPIs present.
    pub p: u32,
    /// KPIs counted.
    pub t: u32,
}

/// `sub_scores`: the category sub-scores and the other details of a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredDetails {
    /// Category sub-scores (profile score only).
    #[serde(default)]
    pub categories: Vec<StoredCategory>,
    /// Global band (profile score only).
    #[serde(default)]
    pub global_band: String,
    /// Whether a momentum was computed (enough history).
    #[serde(default)]
    pub has_momentum: bool,
    /// Momentum x trend weight.
    #[serde(default)]
    pub trend_adjustment: f64,
    /// Webhook points.
    #[serde(default)]
    pub signal_adjustment: f64,
    /// Points applied to the usage sub-score.
    #[serde(default)]
    pub usage_adjustment: f64,
    /// Share of the score due to the usage adjustment.
    #[serde(default)]
    pub adjustment_contribution: f64,
    /// Model behind the weights, `models/{id}`.
    #[serde(default)]
    pub model: String,
    /// Peers compared with.
    #[serde(default)]
    pub peer_count: u32,
    /// Scorecards: the raw measure value.
    #[serde(default)]
    pub measure_value: Option<f64>,
}

/// One KPI's part, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredDriver(
    /// KPI name.
    pub String,
    /// Proto `ScoreCategory` value.
    pub i32,
    /// Raw value.
    pub f64,
    /// Peer percentile 0..1 (none for absolutely scored KPIs).
    pub Option<f64>,
    /// KPI score 0..10.
    pub f64,
    /// Effective weight.
    pub f64,
    /// Contribution in score points.
    pub f64,
);

impl StoredDriver {
    /// Contribution in score points.
    pub fn contribution(&self) -> f64 {
        self.6
    }
}

/// The proto value of a scoring-core category.
pub fn category_proto(c: Category) -> i32 {
    use vitals_proto::common::v1::ScoreCategory as S;
    (match c {
        Category::Usage => S::Usage,
        Category::Conversations => S::Conversations,
        Category::Pulse => S::Pulse,
        Category::Contract => S::Contract,
        Category::Custom => S::CustomMetrics,
        Category::ScoreField => S::CustomScoreField,
    }) as i32
}

/// Stored form of an explanation's contributions.
pub fn drivers_of(e: &Explanation, category: impl Fn(usize) -> Category) -> Vec<StoredDriver> {
    e.contributions
        .iter()
        .map(|c| {
            let pct = c.percentile.is_finite().then(|| r6(c.percentile));
            StoredDriver(
                c.name.clone(),
                category_proto(category(c.kpi)),
                r6(c.value),
                pct,
                r6(c.kpi_score),
                r6(c.weight),
                r6(c.contribution),
            )
        })
        .collect()
}

/// Back to a scoring-core explanation (enough of it for `explain_change`).
pub fn explanation_of(
    score: f64,
    drivers: &[StoredDriver],
    adjustment_contribution: f64,
) -> Explanation {
    Explanation {
        score: vitals_scoring_core::AccountScore {
            score: Some(score),
            categories: [None; 5],
            usage_adjustment: 0.0,
            coverage: Default::default(),
            fallback: false,
        },
        contributions: drivers
            .iter()
            .enumerate()
            .map(|(i, d)| KpiContribution {
                kpi: i,
                name: d.0.clone(),
                value: d.2,
                percentile: d.3.unwrap_or(f64::NAN),
                kpi_score: d.4,
                weight: d.5,
                contribution: d.contribution(),
            })
            .collect(),
        adjustment_contribution,
    }
}

/// A change item's KPI category, looked up in both snapshots.
pub fn change_category(item: &ChangeItem, before: &[StoredDriver], after: &[StoredDriver]) -> i32 {
    after
        .iter()
        .chain(before)
        .find(|d| d.0 == item.name)
        .map_or(0, |d| d.1)
}

/// First byte of [`encode_drivers`]'s output: the format's version.
const DRIVERS_V1: u8 = 1;

/// KPI names stored as a number in [`encode_drivers`] (1 + the position here); any other
/// name is stored as its text. **Append only**: stored rows refer to these positions. The
/// first 55 are scoring-core's built-in KPIs of 2026-12-04, in their column order.
const KNOWN_KPIS: &[&str] = &[
    "key_events",
    "all_events",
    "key_events_per_seat",
    "key_events_per_active_user",
    "events_per_active_day",
    "key_events_last_7d",
    "recent_activity_ratio",
    "active_days",
    "active_weeks",
    "avg_daily_active_users",
    "peak_daily_active_users",
    "active_user_ratio",
    "avg_dau_per_seat",
    "days_since_last_activity",
    "mean_gap_between_active_days",
    "max_inactive_streak",
    "time_spent",
    "time_spent_per_active_user",
    "breadth",
    "key_events_change_pct",
    "active_days_change_pct",
    "active_users_change_pct",
    "time_spent_change_pct",
    "breadth_change",
    "weekly_events_slope",
    "interactions",
    "inbound_interactions",
    "meetings",
    "tickets",
    "days_since_last_contact",
    "days_since_last_inbound",
    "contacts_reached",
    "contacts_reached_share",
    "decision_makers_involved",
    "champions_involved",
    "mean_sentiment",
    "negative_interaction_share",
    "response_rate",
    "interactions_change_pct",
    "sentiment_change",
    "pulse_latest",
    "pulse_age_days",
    "pulse_mean_90d",
    "pulse_change",
    "mrr",
    "mrr_change_90d_pct",
    "add_ons",
    "add_on_mrr_share",
    "tenure_days",
    "days_to_renewal",
    "discount",
    "quantity",
    "active_subscriptions",
    "billing_period_months",
    "renewals",
];

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Largest count of millionths kept as an integer (2^53: every integer up to it is an
/// exact `f64`).
const MAX_MICROS: f64 = 9_007_199_254_740_992.0;

/// A number: `0` none; `1` then its 8 bytes (little-endian bits); else `2 + zigzag(k)`
/// for `k / 1e6` when that is the number bit for bit.
fn put_number(out: &mut Vec<u8>, x: Option<f64>) {
    let Some(x) = x else {
        out.push(0);
        return;
    };
    let k = (x * 1e6).round();
    // The check is on what the reader computes (so -0.0, which would come back as 0.0,
    // is kept as its bits).
    let micros = (k.abs() < MAX_MICROS).then_some(k as i64);
    if let Some(m) = micros.filter(|&m| (m as f64 / 1e6).to_bits() == x.to_bits()) {
        encode_varint(2 + zigzag(m), out);
    } else {
        out.push(1);
        out.extend_from_slice(&x.to_bits().to_le_bytes());
    }
}

/// The binary form of `drivers` (see the module's doc): a version byte, the number of
/// drivers, then for each: its name (`1 + i` for [`KNOWN_KPIS`]`[i]`, or `0`, the
/// length and the UTF-8 bytes), its category (zigzag), then the five numbers of
/// [`put_number`]. Integers are LEB128 varints (protobuf's, through `prost::encoding`).
pub fn encode_drivers(drivers: &[StoredDriver]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + drivers.len() * 24);
    out.push(DRIVERS_V1);
    encode_varint(drivers.len() as u64, &mut out);
    for d in drivers {
        match KNOWN_KPIS.iter().position(|k| *k == d.0) {
            Some(i) => encode_varint(1 + i as u64, &mut out),
            None => {
                out.push(0);
                encode_varint(d.0.len() as u64, &mut out);
                out.extend_from_slice(d.0.as_bytes());
            }
        }
        encode_varint(zigzag(i64::from(d.1)), &mut out);
        put_number(&mut out, Some(d.2));
        put_number(&mut out, d.3);
        put_number(&mut out, Some(d.4));
        put_number(&mut out, Some(d.5));
        put_number(&mut out, Some(d.6));
    }
    out
}

/// Reads [`encode_drivers`]'s output.
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let v = *self.b.get(self.pos).ok_or("truncated")?;
        self.pos += 1;
        Ok(v)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut rest = &self.b[self.pos..];
        let before = rest.len();
        if before == 0 {
            return Err("truncated".into());
        }
        let v = decode_varint(&mut rest).map_err(|_| "truncated or overlong varint")?;
        self.pos += before - rest.len();
        Ok(v)
    }

    fn bytes(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or("truncated")?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn number(&mut self) -> Result<Option<f64>, String> {
        match self.varint()? {
            0 => Ok(None),
            1 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(self.bytes(8)?);
                Ok(Some(f64::from_bits(u64::from_le_bytes(a))))
            }
            v => Ok(Some(unzigzag(v - 2) as f64 / 1e6)),
        }
    }

    fn some(&mut self) -> Result<f64, String> {
        self.number()?.ok_or_else(|| "missing number".into())
    }
}

/// The drivers of [`encode_drivers`]'s output; an error names what is wrong.
pub fn decode_drivers(b: &[u8]) -> Result<Vec<StoredDriver>, String> {
    let mut r = Reader { b, pos: 0 };
    let version = r.byte()?;
    if version != DRIVERS_V1 {
        return Err(format!("unknown drivers format {version}"));
    }
    let n = usize::try_from(r.varint()?).map_err(|e| e.to_string())?;
    // Each driver takes at least 7 bytes: no allocation beyond what the input can hold.
    let mut out = Vec::with_capacity(n.min(b.len() / 7));
    for _ in 0..n {
        let name = match r.varint()? {
            0 => {
                let len = usize::try_from(r.varint()?).map_err(|e| e.to_string())?;
                std::str::from_utf8(r.bytes(len)?)
                    .map_err(|e| e.to_string())?
                    .to_string()
            }
            i => KNOWN_KPIS
                .get(usize::try_from(i - 1).map_err(|e| e.to_string())?)
                .ok_or_else(|| format!("unknown KPI number {i}"))?
                .to_string(),
        };
        let category = i32::try_from(unzigzag(r.varint()?)).map_err(|e| e.to_string())?;
        out.push(StoredDriver(
            name,
            category,
            r.some()?,
            r.number()?,
            r.some()?,
            r.some()?,
            r.some()?,
        ));
    }
    if r.pos != b.len() {
        return Err("trailing bytes".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(name: &str, cat: i32, v: [f64; 5], pct: bool) -> StoredDriver {
        StoredDriver(
            name.into(),
            cat,
            v[0],
            pct.then_some(v[1]),
            v[2],
            v[3],
            v[4],
        )
    }

    #[test]
    fn drivers_round_trip_bit_for_bit() {
        let odd = [
            0.0,
            -0.0,
            1e-7,
            -0.823072,
            421.251168,
            1.0 / 3.0,
            1e300,
            -9_007_199_254.740_993,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            123_456_789_012.345_67,
        ];
        let mut all = vec![
            d(
                "quantity",
                4,
                [11.0, 0.016354, 0.163537, 0.025, -0.823072],
                true,
            ),
            d(
                "events_login",
                1,
                [13.0, 0.0, 0.381298, 0.026786, -0.180308],
                false,
            ),
            d(
                "nps\ttab \"q\" \\ é",
                6,
                [r6(2.0 / 3.0), 0.5, 10.0, 0.9, 1e-6],
                true,
            ),
            d("", -3, [0.0; 5], true),
            d("renewals", i32::MAX, [1.0, 0.5, 5.0, 0.025, 0.000194], true),
            d("renewal", i32::MIN, [1.0, 0.5, 5.0, 0.025, 0.000194], true),
        ];
        for (i, &x) in odd.iter().enumerate() {
            all.push(d(KNOWN_KPIS[i], 1, [x, x, x, x, x], i % 2 == 0));
            all.push(d("custom_x", 2, [x, -x, r6(x), x * 0.5, x], true));
        }
        let bits = |v: &[StoredDriver]| -> Vec<(String, i32, [u64; 5], bool)> {
            v.iter()
                .map(|d| {
                    (
                        d.0.clone(),
                        d.1,
                        [d.2, d.3.unwrap_or(0.0), d.4, d.5, d.6].map(f64::to_bits),
                        d.3.is_some(),
                    )
                })
                .collect()
        };
        for n in [0, 1, 3, all.len()] {
            let b = encode_drivers(&all[..n]);
            let back = decode_drivers(&b).unwrap();
            assert_eq!(bits(&back), bits(&all[..n]), "{n} drivers");
        }
        assert_eq!(encode_drivers(&[]), vec![DRIVERS_V1, 0]);
    }

    #[test]
    fn drivers_binary_is_smaller_than_the_json() {
        // A profile score's drivers as stored in the bench: built-in names, 6 decimals.
        let v: Vec<StoredDriver> = KNOWN_KPIS
            .iter()
            .take(38)
            .enumerate()
            .map(|(i, k)| {
                let x = i as f64;
                d(
                    k,
                    1,
                    [
                        r6(x * 13.7),
                        r6(x / 38.0),
                        r6(x / 3.8),
                        0.026786,
                        r6(x / 100.0 - 0.19),
                    ],
                    true,
                )
            })
            .collect();
        let json = serde_json::to_string(&v).unwrap().len();
        let bin = encode_drivers(&v).len();
        assert!(bin * 3 < json, "binary {bin} bytes, JSON {json}");
    }

    #[test]
    fn bad_drivers_are_refused_with_a_reason() {
        let good = encode_drivers(&[d("mrr", 4, [1.0, 0.5, 5.0, 0.025, 0.1], true)]);
        for cut in 0..good.len() {
            assert!(decode_drivers(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = good.clone();
        extra.push(0);
        assert_eq!(decode_drivers(&extra).unwrap_err(), "trailing bytes");
        let mut version = good.clone();
        version[0] = 9;
        assert_eq!(
            decode_drivers(&version).unwrap_err(),
            "unknown drivers format 9"
        );
        // A KPI number past the table.
        let mut unknown = vec![DRIVERS_V1, 1];
        encode_varint(KNOWN_KPIS.len() as u64 + 1, &mut unknown);
        unknown.extend_from_slice(&[2, 2, 2, 2, 2, 2]);
        assert!(
            decode_drivers(&unknown)
                .unwrap_err()
                .contains("unknown KPI")
        );
        // A missing number where one is required.
        assert_eq!(
            decode_drivers(&[DRIVERS_V1, 1, 1, 2, 0, 2, 2, 2, 2]).unwrap_err(),
            "missing number"
        );
        // A huge count with no bytes behind it.
        assert_eq!(
            decode_drivers(&[DRIVERS_V1, 0xff, 0xff, 0xff, 0x7f]).unwrap_err(),
            "truncated"
        );
        // A count cut in the middle of its varint, and one longer than 10 bytes.
        assert_eq!(
            decode_drivers(&[DRIVERS_V1, 0xff, 0xff]).unwrap_err(),
            "truncated or overlong varint"
        );
        let mut overlong = vec![DRIVERS_V1];
        overlong.extend_from_slice(&[0x80; 11]);
        overlong.push(0);
        assert_eq!(
            decode_drivers(&overlong).unwrap_err(),
            "truncated or overlong varint"
        );
    }

    #[test]
    fn every_builtin_kpi_has_a_number() {
        // Not needed for correctness (other names are stored as text), but a built-in
        // missing here would store its name on every snapshot.
        let catalogue =
            vitals_scoring_core::Catalogue::new(&vitals_scoring_core::CatalogueSpec::default())
                .unwrap();
        for k in catalogue.kpis() {
            assert!(
                KNOWN_KPIS.contains(&k.name.as_ref()),
                "{} is not in KNOWN_KPIS (append it)",
                k.name
            );
        }
    }
}
