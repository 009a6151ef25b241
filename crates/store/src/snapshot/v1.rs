//! The version 1 format of `drivers_bin` (rows written from migration 10 until the
//! prost format): read only. A version byte `1`, the number of drivers, then for each:
//! its name (`1 + i` for [`KNOWN_KPIS`]`[i]`, or `0`, the length and the UTF-8 bytes),
//! its category (zigzag), then five numbers: `0` none; `1` then its 8 bytes
//! (little-endian bits); else `2 + zigzag(k)` for `k / 1e6`. Integers are LEB128 varints.

use prost::encoding::decode_varint;

use super::StoredDriver;

/// First byte of a version 1 row.
pub(super) const V1: u8 = 1;

/// KPI numbers of the version 1 format (1 + the position here; any other name was stored
/// as its text). **Frozen**: rows written by earlier versions refer to these positions;
/// new rows store names (version 2), so nothing is ever added here.
pub(super) const KNOWN_KPIS: &[&str] = &[
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

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Reads the version 1 format.
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

/// The drivers of a version 1 row.
pub(super) fn decode_v1(b: &[u8]) -> Result<Vec<StoredDriver>, String> {
    let mut r = Reader { b, pos: 0 };
    let version = r.byte()?;
    if version != V1 {
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

/// The version 1 encoder as it was, to produce the bytes earlier versions stored.
#[cfg(test)]
pub(super) mod old {
    use prost::encoding::encode_varint;

    use super::{KNOWN_KPIS, StoredDriver, V1};

    fn zigzag(v: i64) -> u64 {
        ((v << 1) ^ (v >> 63)) as u64
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
    pub(crate) fn encode_v1(drivers: &[StoredDriver]) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + drivers.len() * 24);
        out.push(V1);
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
}
