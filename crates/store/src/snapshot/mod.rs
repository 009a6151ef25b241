//! The stored form of a snapshot's drivers, `score_snapshots.drivers_bin`: every present
//! KPI's part in a profile score, so ExplainScore and "why it changed" never recompute a
//! population. Owned by the store; the scoring service builds [`StoredDriver`]s and calls
//! [`encode_drivers`] / [`decode_drivers`].
//!
//! Three stored forms, all read by [`decode_drivers`] (or, for the first, the JSON
//! reader of `drivers`):
//! - JSON arrays `[kpi, category, value, percentile, kpi_score, weight, contribution]` in
//!   the `drivers` column (rows written before migration 10; `drivers_bin` is NULL);
//! - version 1 (first byte `1`): the hand-written varint format of [`v1`], KPI names as
//!   numbers of a frozen table; read only;
//! - version 2 (first byte `2`): the byte `2` then a protobuf message, [`DriversMsg`],
//!   KPI names as names. A number is stored as its integer count of millionths
//!   (`sint64`) when that reproduces it bit for bit, else as its `double`; an absent
//!   percentile has neither;
//! - version 3 (first byte `3`, what scoring runs write now): version 2's message with
//!   each KPI named by its number in the store's table `kpi_names` ([`names`]) instead
//!   of its text, about half the bytes of a row. The store's snapshot readers return such
//!   rows in the version 2 form ([`names::expand`]); [`decode_drivers_with`] reads them
//!   given the table.

use prost::Message;
use serde::{Deserialize, Serialize};

pub mod names;
mod v1;

pub use names::{KpiNames, kpi_names};

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

/// First byte of a version 2 row.
const V2: u8 = 2;

/// First byte of a version 3 row (KPIs by number, see [`names`]).
const V3: u8 = 3;

/// Version 2: the drivers of one snapshot, most negative contribution first.
#[derive(Clone, PartialEq, Message)]
pub struct DriversMsg {
    /// The drivers.
    #[prost(message, repeated, tag = "1")]
    pub drivers: Vec<DriverMsg>,
}

/// Version 2: one KPI's part. Each number is `*_micros` (its count of millionths) or
/// the `double` beside it; see [`Number`].
#[derive(Clone, PartialEq, Message)]
pub struct DriverMsg {
    /// KPI name, as in scoring-core's catalogue.
    #[prost(string, tag = "1")]
    pub kpi: String,
    /// Proto `ScoreCategory` value.
    #[prost(sint32, tag = "2")]
    pub category: i32,
    /// Raw value.
    #[prost(sint64, optional, tag = "3")]
    pub value_micros: Option<i64>,
    /// Raw value (when not exact in millionths).
    #[prost(double, optional, tag = "4")]
    pub value: Option<f64>,
    /// Peer percentile 0..1 (neither set for absolutely scored KPIs).
    #[prost(sint64, optional, tag = "5")]
    pub percentile_micros: Option<i64>,
    /// Peer percentile (when not exact in millionths).
    #[prost(double, optional, tag = "6")]
    pub percentile: Option<f64>,
    /// KPI score 0..10.
    #[prost(sint64, optional, tag = "7")]
    pub kpi_score_micros: Option<i64>,
    /// KPI score (when not exact in millionths).
    #[prost(double, optional, tag = "8")]
    pub kpi_score: Option<f64>,
    /// Effective weight.
    #[prost(sint64, optional, tag = "9")]
    pub weight_micros: Option<i64>,
    /// Effective weight (when not exact in millionths).
    #[prost(double, optional, tag = "10")]
    pub weight: Option<f64>,
    /// Contribution in score points.
    #[prost(sint64, optional, tag = "11")]
    pub contribution_micros: Option<i64>,
    /// Contribution (when not exact in millionths).
    #[prost(double, optional, tag = "12")]
    pub contribution: Option<f64>,
}

/// Version 3: the drivers of one snapshot as columns, most negative contribution first:
/// each KPI by its number in `kpi_names` ([`names`]), and the five numbers of each
/// driver in turn (value, percentile, KPI score, weight, contribution) as counts of
/// millionths in one packed list; a number that is not exact in millionths, or an absent
/// percentile, is listed in `exceptions` (its place in `micros` holds 0).
#[derive(Clone, PartialEq, Message)]
pub struct DriverColumns {
    /// The KPIs' numbers in `kpi_names`.
    #[prost(uint32, repeated, tag = "1")]
    pub kpi: Vec<u32>,
    /// Proto `ScoreCategory` values.
    #[prost(sint32, repeated, tag = "2")]
    pub category: Vec<i32>,
    /// Five numbers per driver, as counts of millionths.
    #[prost(sint64, repeated, tag = "3")]
    pub micros: Vec<i64>,
    /// The numbers `micros` cannot hold.
    #[prost(message, repeated, tag = "4")]
    pub exceptions: Vec<Exception>,
}

/// Version 3: a number of [`DriverColumns::micros`] given otherwise.
#[derive(Clone, PartialEq, Message)]
pub struct Exception {
    /// Its place in `micros` (5 x driver + field).
    #[prost(uint32, tag = "1")]
    pub slot: u32,
    /// The number (absent: an absent percentile).
    #[prost(double, optional, tag = "2")]
    pub value: Option<f64>,
}

/// The fields of a driver's five numbers, in their order in [`DriverColumns::micros`].
const FIELDS: [&str; 5] = ["value", "percentile", "kpi_score", "weight", "contribution"];

/// Largest count of millionths kept as an integer (2^53: every integer up to it is an
/// exact `f64`).
const MAX_MICROS: f64 = 9_007_199_254_740_992.0;

/// A number as (millionths, double): the first when `k / 1e6` is `x` bit for bit (so
/// -0.0, which would come back as 0.0, is kept as a double), else the second.
#[derive(Clone, Copy)]
struct Number(Option<i64>, Option<f64>);

impl Number {
    fn of(x: Option<f64>) -> Self {
        let Some(x) = x else {
            return Self(None, None);
        };
        let k = (x * 1e6).round();
        let micros = (k.abs() < MAX_MICROS).then_some(k as i64);
        match micros.filter(|&m| (m as f64 / 1e6).to_bits() == x.to_bits()) {
            Some(m) => Self(Some(m), None),
            None => Self(None, Some(x)),
        }
    }

    fn get(self) -> Option<f64> {
        match self {
            Self(Some(m), _) => Some(m as f64 / 1e6),
            Self(None, x) => x,
        }
    }

    fn some(self, what: &str) -> Result<f64, String> {
        self.get().ok_or_else(|| format!("missing {what}"))
    }
}

impl From<&StoredDriver> for DriverMsg {
    fn from(d: &StoredDriver) -> Self {
        let [v, p, s, w, c] = [Some(d.2), d.3, Some(d.4), Some(d.5), Some(d.6)].map(Number::of);
        Self {
            kpi: d.0.clone(),
            category: d.1,
            value_micros: v.0,
            value: v.1,
            percentile_micros: p.0,
            percentile: p.1,
            kpi_score_micros: s.0,
            kpi_score: s.1,
            weight_micros: w.0,
            weight: w.1,
            contribution_micros: c.0,
            contribution: c.1,
        }
    }
}

impl TryFrom<DriverMsg> for StoredDriver {
    type Error = String;

    fn try_from(m: DriverMsg) -> Result<Self, String> {
        Ok(Self(
            m.kpi,
            m.category,
            Number(m.value_micros, m.value).some("value")?,
            Number(m.percentile_micros, m.percentile).get(),
            Number(m.kpi_score_micros, m.kpi_score).some("kpi_score")?,
            Number(m.weight_micros, m.weight).some("weight")?,
            Number(m.contribution_micros, m.contribution).some("contribution")?,
        ))
    }
}

/// The stored form of `drivers` (version 2, see the module's doc): self-contained.
pub fn encode_drivers(drivers: &[StoredDriver]) -> Vec<u8> {
    let msg = DriversMsg {
        drivers: drivers.iter().map(DriverMsg::from).collect(),
    };
    framed(V2, &msg)
}

/// The stored form of `drivers` with each KPI by its number in `names` (version 3, what
/// scoring runs write); version 2 when a name has no number.
pub fn encode_drivers_with(drivers: &[StoredDriver], names: &KpiNames) -> Vec<u8> {
    let n = drivers.len();
    let mut cols = DriverColumns {
        kpi: Vec::with_capacity(n),
        category: Vec::with_capacity(n),
        micros: Vec::with_capacity(5 * n),
        exceptions: Vec::new(),
    };
    for d in drivers {
        let Some(id) = names.id(&d.0) else {
            return encode_drivers(drivers);
        };
        cols.kpi.push(id);
        cols.category.push(d.1);
        for x in [Some(d.2), d.3, Some(d.4), Some(d.5), Some(d.6)] {
            let slot = cols.micros.len() as u32;
            match Number::of(x) {
                Number(Some(m), _) => cols.micros.push(m),
                Number(None, value) => {
                    cols.micros.push(0);
                    cols.exceptions.push(Exception { slot, value });
                }
            }
        }
    }
    let mut out = Vec::with_capacity(1 + cols.encoded_len());
    out.push(V3);
    cols.encode(&mut out)
        .expect("a Vec grows to hold the message");
    out
}

fn framed(version: u8, msg: &DriversMsg) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + msg.encoded_len());
    out.push(version);
    msg.encode(&mut out)
        .expect("a Vec grows to hold the message");
    out
}

/// The drivers of a stored `drivers_bin` of version 1 or 2 (rows as the store's readers
/// return them); an error names what is wrong. A version 3 row needs the KPI names:
/// [`decode_drivers_with`].
pub fn decode_drivers(b: &[u8]) -> Result<Vec<StoredDriver>, String> {
    decode(b, None)
}

/// The drivers of a stored `drivers_bin` of any version, KPI numbers read in `names`.
pub fn decode_drivers_with(b: &[u8], names: &KpiNames) -> Result<Vec<StoredDriver>, String> {
    decode(b, Some(names))
}

fn decode(b: &[u8], names: Option<&KpiNames>) -> Result<Vec<StoredDriver>, String> {
    match b.first() {
        Some(&V2) => DriversMsg::decode(&b[1..])
            .map_err(|e| e.to_string())?
            .drivers
            .into_iter()
            .map(StoredDriver::try_from)
            .collect(),
        Some(&V3) => {
            let Some(names) = names else {
                return Err("KPIs stored by number, read without the KPI names".into());
            };
            decode_v3(&b[1..], names)
        }
        Some(&v1::V1) => v1::decode_v1(b),
        Some(v) => Err(format!("unknown drivers format {v}")),
        None => Err("truncated".into()),
    }
}

fn decode_v3(b: &[u8], names: &KpiNames) -> Result<Vec<StoredDriver>, String> {
    let cols = DriverColumns::decode(b).map_err(|e| e.to_string())?;
    let n = cols.kpi.len();
    if cols.category.len() != n || cols.micros.len() != 5 * n {
        return Err(format!(
            "{n} KPIs, {} categories and {} numbers",
            cols.category.len(),
            cols.micros.len()
        ));
    }
    let mut numbers: Vec<Option<f64>> = cols.micros.iter().map(|&m| Some(m as f64 / 1e6)).collect();
    for e in &cols.exceptions {
        *numbers
            .get_mut(e.slot as usize)
            .ok_or_else(|| format!("number {} of {}", e.slot, 5 * n))? = e.value;
    }
    let mut out = Vec::with_capacity(n);
    for (i, (&id, &category)) in cols.kpi.iter().zip(&cols.category).enumerate() {
        let name = names
            .name(id)
            .ok_or_else(|| format!("unknown KPI number {id}"))?;
        let x = &numbers[5 * i..5 * i + 5];
        let some = |f: usize| x[f].ok_or_else(|| format!("missing {}", FIELDS[f]));
        out.push(StoredDriver(
            name.to_owned(),
            category,
            some(0)?,
            x[1],
            some(2)?,
            some(3)?,
            some(4)?,
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::v1::KNOWN_KPIS;
    use super::v1::old::encode_v1;
    use super::*;
    use prost::encoding::encode_varint;

    /// Rounds to 6 decimals.
    fn r6(x: f64) -> f64 {
        (x * 1e6).round() / 1e6
    }

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
            // New rows, and rows as earlier versions wrote them.
            for (form, b) in [
                ("v2", encode_drivers(&all[..n])),
                ("v1", encode_v1(&all[..n])),
            ] {
                let back = decode_drivers(&b).unwrap();
                assert_eq!(bits(&back), bits(&all[..n]), "{form}: {n} drivers");
            }
            // Rows as runs write them: KPIs by number.
            let mut seen: Vec<&str> = all.iter().map(|d| d.0.as_str()).collect();
            seen.sort_unstable();
            seen.dedup();
            let names = KpiNames::from_pairs(seen.iter().enumerate().map(|(i, k)| (i as u32, *k)));
            let b = encode_drivers_with(&all[..n], &names);
            assert_eq!(b[0], V3);
            let back = decode_drivers_with(&b, &names).unwrap();
            assert_eq!(bits(&back), bits(&all[..n]), "v3: {n} drivers");
        }
        assert_eq!(encode_drivers(&[]), vec![V2]);
        assert_eq!(encode_v1(&[]), vec![v1::V1, 0]);
    }

    /// A profile score's drivers as stored in the bench: built-in names, 6 decimals.
    fn bench_like() -> Vec<StoredDriver> {
        KNOWN_KPIS
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
            .collect()
    }

    #[test]
    fn version_3_names_kpis_by_number_and_reads_back_given_the_names() {
        let names = KpiNames::from_pairs(
            KNOWN_KPIS
                .iter()
                .enumerate()
                .map(|(i, k)| (i as u32 + 1, *k)),
        );
        let v = bench_like();
        let b = encode_drivers_with(&v, &names);
        assert_eq!(b[0], V3);
        assert_eq!(decode_drivers_with(&b, &names).unwrap(), v);
        assert_eq!(
            decode_drivers(&b).unwrap_err(),
            "KPIs stored by number, read without the KPI names"
        );
        let unknown = KpiNames::from_pairs([(1, "key_events")]);
        assert_eq!(
            decode_drivers_with(&b, &unknown).unwrap_err(),
            "unknown KPI number 2"
        );
        // About the bytes of version 1, about half of version 2's.
        let (v1, v2) = (encode_v1(&v).len(), encode_drivers(&v).len());
        assert!(
            b.len() * 10 <= v1 * 11,
            "version 3 {} bytes, version 1 {v1}",
            b.len()
        );
        assert!(
            b.len() * 3 <= v2 * 2,
            "version 3 {} bytes, version 2 {v2}",
            b.len()
        );
        // A name without a number: the row is stored self-contained (version 2).
        let mut odd = v.clone();
        odd.push(d("custom_x", 2, [1.0, 0.5, 5.0, 0.025, 0.1], true));
        let b = encode_drivers_with(&odd, &names);
        assert_eq!(b[0], V2);
        assert_eq!(decode_drivers(&b).unwrap(), odd);
        // Every older form reads with names too.
        assert_eq!(decode_drivers_with(&encode_v1(&v), &names).unwrap(), v);
        // Columns that do not line up, a number listed twice out of range, a required
        // number absent.
        let cols = |kpi: Vec<u32>, micros: Vec<i64>, exceptions: Vec<Exception>| {
            let mut b = vec![V3];
            DriverColumns {
                category: vec![1; kpi.len()],
                kpi,
                micros,
                exceptions,
            }
            .encode(&mut b)
            .unwrap();
            b
        };
        assert_eq!(
            decode_drivers_with(&cols(vec![1], vec![1, 2, 3, 4], vec![]), &names).unwrap_err(),
            "1 KPIs, 1 categories and 4 numbers"
        );
        let slot = |slot, value| Exception { slot, value };
        assert_eq!(
            decode_drivers_with(&cols(vec![1], vec![0; 5], vec![slot(5, None)]), &names)
                .unwrap_err(),
            "number 5 of 5"
        );
        assert_eq!(
            decode_drivers_with(&cols(vec![1], vec![0; 5], vec![slot(4, None)]), &names)
                .unwrap_err(),
            "missing contribution"
        );
        let back = decode_drivers_with(
            &cols(
                vec![2],
                vec![1, 0, 3, 4, 5],
                vec![slot(1, None), slot(0, Some(0.1))],
            ),
            &names,
        )
        .unwrap();
        assert_eq!(
            back,
            vec![StoredDriver(
                KNOWN_KPIS[1].into(),
                1,
                0.1,
                None,
                3e-6,
                4e-6,
                5e-6
            )]
        );
    }

    #[test]
    fn drivers_binary_is_smaller_than_the_json() {
        let v = bench_like();
        let json = serde_json::to_string(&v).unwrap().len();
        let old = encode_v1(&v).len();
        assert!(old * 3 < json, "version 1 {old} bytes, JSON {json}");
        // Version 2 stores the names as text: bigger than version 1, smaller than JSON.
        let new = encode_drivers(&v).len();
        assert!(new < json, "version 2 {new} bytes, JSON {json}");
    }

    #[test]
    fn bad_drivers_are_refused_with_a_reason() {
        let good = encode_v1(&[d("mrr", 4, [1.0, 0.5, 5.0, 0.025, 0.1], true)]);
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
        let mut unknown = vec![v1::V1, 1];
        encode_varint(KNOWN_KPIS.len() as u64 + 1, &mut unknown);
        unknown.extend_from_slice(&[2, 2, 2, 2, 2, 2]);
        assert!(
            decode_drivers(&unknown)
                .unwrap_err()
                .contains("unknown KPI")
        );
        // A missing number where one is required.
        assert_eq!(
            decode_drivers(&[v1::V1, 1, 1, 2, 0, 2, 2, 2, 2]).unwrap_err(),
            "missing number"
        );
        // A huge count with no bytes behind it.
        assert_eq!(
            decode_drivers(&[v1::V1, 0xff, 0xff, 0xff, 0x7f]).unwrap_err(),
            "truncated"
        );
        // A count cut in the middle of its varint, and one longer than 10 bytes.
        assert_eq!(
            decode_drivers(&[v1::V1, 0xff, 0xff]).unwrap_err(),
            "truncated or overlong varint"
        );
        let mut overlong = vec![v1::V1];
        overlong.extend_from_slice(&[0x80; 11]);
        overlong.push(0);
        assert_eq!(
            decode_drivers(&overlong).unwrap_err(),
            "truncated or overlong varint"
        );
    }

    #[test]
    fn bad_version_2_rows_are_refused_with_a_reason() {
        let good = encode_drivers(&[d("mrr", 4, [1.0, 0.5, 5.0, 0.025, 0.1], true)]);
        // `[2]` alone is the empty list; any other cut ends inside the driver.
        assert_eq!(decode_drivers(&good[..1]).unwrap(), vec![]);
        for cut in (0..good.len()).filter(|&c| c != 1) {
            assert!(decode_drivers(&good[..cut]).is_err(), "cut at {cut}");
        }
        // A driver without its contribution.
        let mut m = DriverMsg::from(&d("mrr", 4, [1.0, 0.5, 5.0, 0.025, 0.1], true));
        m.contribution_micros = None;
        let mut b = vec![V2];
        DriversMsg { drivers: vec![m] }.encode(&mut b).unwrap();
        assert_eq!(decode_drivers(&b).unwrap_err(), "missing contribution");
        assert_eq!(decode_drivers(&[]).unwrap_err(), "truncated");
    }

    #[test]
    fn version_1_bytes_of_an_earlier_release_decode() {
        // Bytes as the release before the prost format stored them (a built-in KPI by
        // number, a custom one by name, no percentile on the second).
        let stored = [
            1, 2, 45, 8, 194, 180, 241, 248, 8, 162, 194, 30, 194, 195, 147, 7, 210, 134, 3, 193,
            154, 12, 0, 3, 110, 112, 115, 12, 130, 209, 202, 8, 0, 130, 218, 196, 9, 194, 132, 61,
            130, 181, 24,
        ];
        assert_eq!(
            decode_drivers(&stored).unwrap(),
            vec![
                StoredDriver("mrr".into(), 4, 1200.5, Some(0.25), 7.5, 0.025, -0.1),
                StoredDriver("nps".into(), 6, 9.0, None, 10.0, 0.5, 0.2),
            ]
        );
    }

    #[test]
    fn every_builtin_kpi_is_stored_by_name() {
        let catalogue =
            vitals_scoring_core::Catalogue::new(&vitals_scoring_core::CatalogueSpec::default())
                .unwrap();
        let v: Vec<StoredDriver> = catalogue
            .kpis()
            .iter()
            .map(|k| d(&k.name, 1, [1.0, 0.5, 5.0, 0.025, 0.1], true))
            .collect();
        assert_eq!(decode_drivers(&encode_drivers(&v)).unwrap(), v);
    }
}
