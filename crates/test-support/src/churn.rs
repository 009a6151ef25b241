//! A small portfolio whose churn is an interaction: for the tests of the gradient-boosted
//! challenger (a logistic model adds one function per KPI and cannot rank it, trees can).
//!
//! Every account uses the product every day (`post` events around a low 2 or a high 10 a
//! day, `like` events 5 a day) and gets a weekly CSM pulse, low (2) or high (4). The four
//! combinations take turns; an account churns when exactly one of its posts and its pulse
//! is high (dates spread over the last three quarters of the period). No KPI mixes usage and
//! pulses, so any sum of per-KPI effects ranks the churners no better than chance, while a
//! tree with two levels ranks them perfectly.

use chrono::{DateTime, Days, NaiveDate, Utc};
use vitals_store::entity::{pulse, usage_daily};
use vitals_store::sea_orm::Set;

/// One account of an [`XorPortfolio`].
#[derive(Debug, Clone)]
pub struct XorAccount {
    /// Its id (`xor-NNN`).
    pub id: String,
    /// Posts about 10 a day (else about 2).
    pub posts_high: bool,
    /// Weekly pulse 4 (else 2).
    pub pulse_high: bool,
    /// Churn date, when exactly one of the two is high.
    pub churn: Option<NaiveDate>,
}

/// A portfolio with an interaction churn truth (see the module doc).
#[derive(Debug, Clone)]
pub struct XorPortfolio {
    /// First day of usage (every account is created then).
    pub start: NaiveDate,
    /// Day after the last day of usage.
    pub end: NaiveDate,
    /// The accounts: the four combinations in turn.
    pub accounts: Vec<XorAccount>,
}

impl XorPortfolio {
    /// `n` accounts over `days` days ending at `end` (exclusive); half of them (exactly one
    /// of posts and pulse high) churn, the dates spread over `[days / 4, days - 5)` (early
    /// enough that the first CV fold holds churns).
    pub fn new(n: usize, days: u64, end: NaiveDate) -> Self {
        let start = end.checked_sub_days(Days::new(days)).expect("start");
        let churners = n.div_ceil(2).max(1) as u64;
        let span = days - days / 4 - 5;
        let accounts = (0..n)
            .map(|i| {
                let (posts_high, pulse_high) =
                    [(false, false), (true, false), (true, true), (false, true)][i % 4];
                let churn = (posts_high != pulse_high).then(|| {
                    let k = (i / 2) as u64;
                    start
                        .checked_add_days(Days::new(days / 4 + k * span / churners))
                        .expect("churn date")
                });
                XorAccount {
                    id: format!("xor-{i:03}"),
                    posts_high,
                    pulse_high,
                    churn,
                }
            })
            .collect();
        Self {
            start,
            end,
            accounts,
        }
    }

    /// Midnight UTC of the first day: when every account was created.
    pub fn created_at(&self) -> DateTime<Utc> {
        self.start.and_hms_opt(0, 0, 0).expect("midnight").and_utc()
    }

    /// (account, churn date) of the churners, in churn-date order.
    pub fn churns(&self) -> Vec<(String, NaiveDate)> {
        let mut v: Vec<(String, NaiveDate)> = self
            .accounts
            .iter()
            .filter_map(|a| a.churn.map(|d| (a.id.clone(), d)))
            .collect();
        v.sort_by_key(|(id, d)| (*d, id.clone()));
        v
    }

    /// Weekly pulses (account, day, value) from the first day up to the churn date
    /// (exclusive) or the end.
    pub fn pulses(&self) -> Vec<(String, NaiveDate, i32)> {
        let mut out = Vec::new();
        for a in &self.accounts {
            let last = a.churn.unwrap_or(self.end);
            let mut d = self.start;
            while d < last {
                out.push((a.id.clone(), d, if a.pulse_high { 4 } else { 2 }));
                d = d.checked_add_days(Days::new(7)).expect("next week");
            }
        }
        out
    }

    /// [`XorPortfolio::pulses`] as rows to insert (author `csm`, at midnight UTC).
    pub fn pulse_rows(&self) -> Vec<pulse::ActiveModel> {
        self.pulses()
            .into_iter()
            .map(|(id, day, value)| pulse::ActiveModel {
                account_id: Set(id),
                author: Set("csm".into()),
                value: Set(value),
                note: Set(String::new()),
                at: Set(day.and_hms_opt(0, 0, 0).expect("midnight").and_utc()),
                ..Default::default()
            })
            .collect()
    }

    /// Daily roll-ups up to the churn date (exclusive) or the end: posts 2 or 10 plus
    /// -1, 0 or +1 (deterministic noise), likes 5.
    pub fn usage(&self) -> Vec<usage_daily::Model> {
        let mut out = Vec::new();
        let mut next = noise(0x2545_f491_4f6c_dd1d, 0x9e37_79b9_7f4a_7c15);
        for a in &self.accounts {
            let last = a.churn.unwrap_or(self.end);
            let mut d = self.start;
            while d < last {
                let level = if a.posts_high { 10 } else { 2 };
                let posts = level - 1 + (next() % 3) as i64;
                for (ty, count) in [("post", posts), ("like", 5)] {
                    out.push(usage_daily::Model {
                        account_id: a.id.clone(),
                        day: d,
                        event_type: ty.into(),
                        count,
                        distinct_users: 1,
                        value_sum: 0.0,
                    });
                }
                d = d.succ_opt().expect("next day");
            }
        }
        out
    }
}

/// Deterministic noise for test data: a xorshift64* generator from `seed`, its output
/// multiplied by `multiplier` and shifted to 31 bits.
pub fn noise(mut seed: u64, multiplier: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        seed.wrapping_mul(multiplier) >> 33
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_high_churns_after_the_first_quarter() {
        let end = NaiveDate::from_ymd_opt(2025, 9, 1).expect("date");
        let p = XorPortfolio::new(40, 200, end);
        assert_eq!(p.churns().len(), 20);
        let mid = p.start.checked_add_days(Days::new(50)).expect("mid");
        for a in &p.accounts {
            assert_eq!(a.churn.is_some(), a.posts_high != a.pulse_high, "{a:?}");
            if let Some(d) = a.churn {
                assert!(d >= mid && d < end, "{d}");
            }
        }
        // Neither posts nor pulse alone says who churns: half of each level churns.
        let churned = |high: bool| {
            p.accounts
                .iter()
                .filter(|a| a.posts_high == high && a.churn.is_some())
                .count()
        };
        assert_eq!(churned(true), churned(false));
        let u = p.usage();
        assert!(u.iter().all(|r| r.day >= p.start && r.day < end));
        assert!(p.pulses().iter().all(|(_, _, v)| *v == 2 || *v == 4));
    }
}
