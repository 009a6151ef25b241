//! A small portfolio whose churn follows a band, not a line: for the tests of the
//! gradient-boosted challenger (a logistic model on monotone KPI features cannot rank it,
//! trees can).
//!
//! Every account uses the product every day with `like` events at a constant 5 a day and
//! `post` events around its own level: low (about 2 a day), middle (about 6) or high
//! (about 10). Accounts of the middle level churn (dates spread over the second half of
//! the period); the low and high ones stay. So every KPI derived from the posts (their
//! count, share, the total activity) ranks the churners in the middle: any monotone
//! function of them ranks them no better than chance, a tree with two splits perfectly.

use chrono::{DateTime, Days, NaiveDate, Utc};
use vitals_store::entity::usage_daily;

/// One account of a [`BandPortfolio`].
#[derive(Debug, Clone)]
pub struct BandAccount {
    /// Its id (`band-NNN`).
    pub id: String,
    /// Posts a day around which it varies (2, 6 or 10).
    pub level: i64,
    /// Churn date, for the middle level.
    pub churn: Option<NaiveDate>,
}

/// A portfolio with a band-shaped churn truth (see the module doc).
#[derive(Debug, Clone)]
pub struct BandPortfolio {
    /// First day of usage (every account is created then).
    pub start: NaiveDate,
    /// Day after the last day of usage.
    pub end: NaiveDate,
    /// The accounts: levels low, middle, high in turn.
    pub accounts: Vec<BandAccount>,
}

impl BandPortfolio {
    /// `n` accounts over `days` days ending at `end` (exclusive); every third one (the
    /// middle level) churns, the dates spread over `[days / 2, days - 5)`.
    pub fn new(n: usize, days: u64, end: NaiveDate) -> Self {
        let start = end.checked_sub_days(Days::new(days)).expect("start");
        let churners = n.div_ceil(3).max(1) as u64;
        let span = days / 2 - 5;
        let accounts = (0..n)
            .map(|i| {
                let level = [2, 6, 10][i % 3];
                let churn = (level == 6).then(|| {
                    let k = (i / 3) as u64;
                    start
                        .checked_add_days(Days::new(days / 2 + k * span / churners))
                        .expect("churn date")
                });
                BandAccount {
                    id: format!("band-{i:03}"),
                    level,
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

    /// Daily roll-ups up to the churn date (exclusive) or the end: posts at the
    /// account's level plus -1, 0 or +1 (deterministic noise), likes 5.
    pub fn usage(&self) -> Vec<usage_daily::Model> {
        let mut out = Vec::new();
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            // xorshift64*: deterministic noise.
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 33
        };
        for a in &self.accounts {
            let last = a.churn.unwrap_or(self.end);
            let mut d = self.start;
            while d < last {
                let posts = a.level - 1 + (next() % 3) as i64;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_middle_level_churns_in_the_second_half() {
        let end = NaiveDate::from_ymd_opt(2025, 9, 1).expect("date");
        let p = BandPortfolio::new(30, 200, end);
        assert_eq!(p.churns().len(), 10);
        let mid = p.start.checked_add_days(Days::new(100)).expect("mid");
        for a in &p.accounts {
            assert_eq!(a.churn.is_some(), a.level == 6, "{a:?}");
            if let Some(d) = a.churn {
                assert!(d >= mid && d < end, "{d}");
            }
        }
        let u = p.usage();
        assert!(u.iter().all(|r| r.day >= p.start && r.day < end));
        // The middle level posts 5..7 a day, the others 1..3 and 9..11.
        assert!(
            u.iter()
                .filter(|r| r.event_type == "post")
                .all(|r| [1, 2, 3, 5, 6, 7, 9, 10, 11].contains(&r.count))
        );
    }
}
