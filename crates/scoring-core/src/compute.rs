//! KPI computation as of a date T over a window, from plain per-account inputs.
//!
//! Windows are whole UTC days ending at T inclusive: the current window is
//! `(T - W, T]`, the previous one `(T - 2W, T - W]`, and so on. One pass over the
//! account's roll-ups fills per-day arrays (reused across accounts, no per-account
//! allocation); every usage KPI is then read off those arrays.

use chrono::{Datelike, NaiveDate};
use rayon::prelude::*;

use crate::catalogue::{BUILTIN_COUNT, Builtin, Catalogue};
use crate::inputs::{
    AccountInputs, Channel, ContactRole, DailyUsage, InteractionDirection, Subscription,
};
use crate::trend::TrendConfig;
use crate::{KpiMatrix, ScoringError};

mod usage;

use usage::{
    Frame, breadth_of, change_kpis, event_detail_kpis, fold_usage, gap_kpis, reset_usage_scratch,
    trend_momentum, volume_kpis, win_stats,
};

/// Settings of the KPI computation.
#[derive(Debug, Clone, PartialEq)]
pub struct KpiConfig {
    /// Window length in days (default 28).
    pub window_days: u32,
    /// Past windows compared against for the trend (default 3).
    pub history_windows: u32,
    /// First day the inputs cover. A past window starting before it is not used (the
    /// change-vs-previous KPIs become missing, the trend uses fewer windows) rather than
    /// read as a period of zero activity.
    pub data_start: Option<NaiveDate>,
    /// Trend settings.
    pub trend: TrendConfig,
}

impl Default for KpiConfig {
    fn default() -> Self {
        Self {
            window_days: crate::DEFAULT_WINDOW_DAYS,
            history_windows: crate::DEFAULT_HISTORY_WINDOWS,
            data_start: None,
            trend: TrendConfig::default(),
        }
    }
}

impl KpiConfig {
    fn validate(&self) -> Result<(), ScoringError> {
        if self.window_days == 0 || self.window_days > 3660 {
            return Err(ScoringError::InvalidConfig {
                field: "window_days",
                reason: format!("must be in 1..=3660, got {}", self.window_days),
            });
        }
        if self.history_windows > 52 {
            return Err(ScoringError::InvalidConfig {
                field: "history_windows",
                reason: format!("must be <= 52, got {}", self.history_windows),
            });
        }
        Ok(())
    }
}

/// Per-account results that are not KPI columns.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AccountSignals {
    /// Momentum in [-1, 1] from the account's own history; `None` without enough history.
    pub momentum: Option<f64>,
    /// Webhook adjustment in [-1, 1] points: mean over signal names of (v - 3) / 2, the
    /// latest value of each name within the window; `None` without signals.
    pub webhook: Option<f64>,
}

/// KPIs of a whole population.
#[derive(Debug, Clone, PartialEq)]
pub struct KpiBatch {
    /// accounts x KPIs, in the catalogue's column order; NaN = missing.
    pub matrix: KpiMatrix,
    /// Per account, the same order as the input.
    pub signals: Vec<AccountSignals>,
}

/// Reusable buffers of the per-account computation (one per thread).
#[derive(Debug, Default)]
pub struct KpiScratch {
    events: Vec<f64>,
    dau: Vec<u32>,
    value: Vec<f64>,
    seen: Vec<bool>,
    type_prev: Vec<f64>,
    type_last: Vec<i32>,
    contacts: Vec<u32>,
    decision_makers: Vec<u32>,
    champions: Vec<u32>,
    custom: Vec<(i32, f64, u32)>,
    fields: Vec<(f64, u32)>,
    signals: Vec<(u32, i32, f64, u32)>,
}

impl KpiScratch {
    /// Empty buffers; they grow to the needed size on first use.
    pub fn new() -> Self {
        Self::default()
    }
}

#[inline]
fn day_num(d: NaiveDate) -> i32 {
    d.num_days_from_ce()
}

/// Percent change with a defined value when the previous period is 0:
/// 0 -> 0 is 0 %, 0 -> anything positive is +100 %.
pub fn pct_change(now: f64, prev: f64) -> f64 {
    if prev > 0.0 {
        (now - prev) / prev * 100.0
    } else if now > 0.0 {
        100.0
    } else {
        0.0
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct WinStats {
    events: f64,
    active_days: u32,
    dau_sum: f64,
    dau_peak: u32,
    time: f64,
    types: u32,
}

/// Events of one type in the window ending at `as_of` (a Custify-style scorecard
/// measure "event count in a time window").
pub fn event_count(
    usage: &[DailyUsage],
    event_type: u32,
    as_of: NaiveDate,
    window_days: u32,
) -> u64 {
    let t = day_num(as_of);
    let from = t - window_days as i32;
    usage
        .iter()
        .filter(|u| u.event_type == event_type)
        .filter(|u| {
            let d = day_num(u.day);
            d > from && d <= t
        })
        .map(|u| u64::from(u.count))
        .sum()
}

/// Computes every KPI of one account into `row` (length = catalogue size; missing
/// values are NaN) and returns the momentum and webhook adjustment.
pub fn compute_account(
    catalogue: &Catalogue,
    config: &KpiConfig,
    as_of: NaiveDate,
    inputs: &AccountInputs<'_>,
    row: &mut [f64],
    scratch: &mut KpiScratch,
) -> Result<AccountSignals, ScoringError> {
    config.validate()?;
    if row.len() != catalogue.len() {
        return Err(ScoringError::LengthMismatch {
            field: "row",
            expected: catalogue.len(),
            actual: row.len(),
        });
    }
    Ok(compute_unchecked(
        catalogue,
        config,
        day_num(as_of),
        inputs,
        row,
        scratch,
    ))
}

/// Computes the KPIs of a whole population in parallel (rayon).
pub fn compute_kpis(
    catalogue: &Catalogue,
    config: &KpiConfig,
    as_of: NaiveDate,
    accounts: &[AccountInputs<'_>],
) -> Result<KpiBatch, ScoringError> {
    config.validate()?;
    let k = catalogue.len();
    let mut matrix = KpiMatrix::missing(accounts.len(), k);
    let mut signals = vec![AccountSignals::default(); accounts.len()];
    let t = day_num(as_of);
    matrix
        .values_mut()
        .par_chunks_mut(k.max(1))
        .zip(signals.par_iter_mut())
        .zip(accounts.par_iter())
        .for_each_init(KpiScratch::new, |scratch, ((row, sig), inputs)| {
            *sig = compute_unchecked(catalogue, config, t, inputs, row, scratch);
        });
    Ok(KpiBatch { matrix, signals })
}

fn set(row: &mut [f64], b: Builtin, v: f64) {
    row[b.index()] = v;
}

fn opt(v: Option<f64>) -> f64 {
    v.unwrap_or(f64::NAN)
}

fn ratio(num: f64, den: f64) -> f64 {
    if den > 0.0 { num / den } else { f64::NAN }
}

/// Seats: the attribute, else the quantity of the subscriptions active at T.
fn account_seats(inp: &AccountInputs<'_>, t: i32) -> Option<f64> {
    inp.attributes.seats.or_else(|| {
        let q: f64 = inp
            .subscriptions
            .iter()
            .filter(|x| active_at(x, t))
            .filter_map(|x| x.quantity)
            .sum();
        (q > 0.0).then_some(q)
    })
}

/// Custom metrics (latest day, same-day values averaged) and score fields (averaged).
fn custom_kpis(
    cat: &Catalogue,
    row: &mut [f64],
    inp: &AccountInputs<'_>,
    t: i32,
    s: &mut KpiScratch,
) {
    s.custom.clear();
    s.custom.resize(cat.kpis().len(), (i32::MIN, 0.0, 0));
    for m in inp.custom_metrics {
        let d = day_num(m.at);
        if d > t || !m.value.is_finite() {
            continue;
        }
        if let Some(c) = cat.custom_metric_kpi(m.metric) {
            let e = &mut s.custom[c];
            if d > e.0 {
                *e = (d, m.value, 1);
            } else if d == e.0 {
                e.1 += m.value;
                e.2 += 1;
            }
        }
    }
    s.fields.clear();
    s.fields.resize(cat.kpis().len(), (0.0, 0));
    for f in inp.score_fields {
        if let (Some(c), true) = (cat.score_field_kpi(f.field), f.value.is_finite()) {
            s.fields[c].0 += f.value;
            s.fields[c].1 += 1;
        }
    }
    // Same-day duplicates are averaged so that input order never matters.
    let dynamic = row
        .iter_mut()
        .zip(s.custom.iter().zip(&s.fields))
        .skip(BUILTIN_COUNT);
    for (cell, (custom, field)) in dynamic {
        if custom.2 > 0 {
            *cell = custom.1 / f64::from(custom.2);
        } else if field.1 > 0 {
            *cell = field.0 / f64::from(field.1);
        }
    }
}

/// Webhook signals: latest per name within the window, averaged into points.
fn webhook_adjustment(inp: &AccountInputs<'_>, f: &Frame, s: &mut KpiScratch) -> Option<f64> {
    let (t, w) = (f.t, f.w);
    s.signals.clear();
    for g in inp.webhook_signals {
        let d = day_num(g.at);
        if d > t || d <= t - w || !g.value.is_finite() {
            continue;
        }
        let v = g.value.clamp(1.0, 5.0);
        match s.signals.iter_mut().find(|e| e.0 == g.signal) {
            Some(e) if d > e.1 => *e = (g.signal, d, v, 1),
            Some(e) if d == e.1 => {
                e.2 += v;
                e.3 += 1;
            }
            Some(_) => {}
            None => s.signals.push((g.signal, d, v, 1)),
        }
    }
    (!s.signals.is_empty()).then(|| {
        let sum: f64 = s
            .signals
            .iter()
            .map(|e| webhook_points(e.2 / f64::from(e.3)))
            .sum();
        sum / s.signals.len() as f64
    })
}

fn compute_unchecked(
    cat: &Catalogue,
    config: &KpiConfig,
    t: i32,
    inp: &AccountInputs<'_>,
    row: &mut [f64],
    s: &mut KpiScratch,
) -> AccountSignals {
    row.fill(f64::NAN);
    let created = inp.attributes.created_at.map(day_num);
    let f = Frame::new(cat, config, t, created);
    reset_usage_scratch(&f, s);
    let first_start = inp
        .subscriptions
        .iter()
        .map(|x| day_num(x.start))
        .filter(|&d| d <= t)
        .min();

    // ---- usage: one pass over the roll-ups, then KPIs read off the per-day arrays
    let usage = fold_usage(cat, &f, inp.usage, row, s);
    let cur = win_stats(&f, s, 0);
    let seats = account_seats(inp, t);
    volume_kpis(row, &f, s, &cur, seats, usage.all_events);
    let since = usage
        .last_active
        .or(first_start)
        .or(created)
        .filter(|&d| d <= t);
    set(
        row,
        Builtin::DaysSinceLastActivity,
        since.map_or(f64::NAN, |d| f64::from(t - d)),
    );
    gap_kpis(row, &f, s, &cur);
    set(row, Builtin::TimeSpent, cur.time);
    set(
        row,
        Builtin::TimeSpentPerActiveUser,
        ratio(cur.time, f64::from(cur.dau_peak)),
    );
    set(row, Builtin::Breadth, breadth_of(&f, &cur));
    if f.prev_usable() {
        let prev = win_stats(&f, s, 1);
        change_kpis(row, &f, &cur, &prev);
    }
    let since_start = first_start.or(created).filter(|&d| d <= t);
    event_detail_kpis(cat, row, &f, s, &cur, since_start);
    let momentum = trend_momentum(config, &f, s, &cur);

    conversations(row, inp, t, f.w, f.window_usable(1), &mut *s);
    pulse(row, inp, t);
    contract(row, inp.subscriptions, t, first_start.or(created));
    custom_kpis(cat, row, inp, t, s);
    let webhook = webhook_adjustment(inp, &f, s);
    AccountSignals { momentum, webhook }
}

/// The built-in KPIs that take part in the trend (those flagged `trend`).
const TREND_KPIS: [Builtin; 5] = [
    Builtin::KeyEvents,
    Builtin::ActiveDays,
    Builtin::AvgDailyActiveUsers,
    Builtin::TimeSpent,
    Builtin::Breadth,
];

/// Points a webhook value v (1..5) adds to the usage sub-score: (v - 3) / 2.
pub fn webhook_points(v: f64) -> f64 {
    (v.clamp(1.0, 5.0) - 3.0) / 2.0
}

fn sorted_distinct(v: &mut Vec<u32>) -> usize {
    v.sort_unstable();
    v.dedup();
    v.len()
}

fn conversations(
    row: &mut [f64],
    inp: &AccountInputs<'_>,
    t: i32,
    w: i32,
    prev_usable: bool,
    s: &mut KpiScratch,
) {
    let (mut n, mut inbound, mut meetings, mut tickets, mut n_prev) =
        (0u32, 0u32, 0u32, 0u32, 0u32);
    let (mut sent_sum, mut sent_n, mut neg, mut prev_sent_sum, mut prev_sent_n) =
        (0.0, 0u32, 0u32, 0.0, 0u32);
    let (mut out_known, mut out_replied) = (0u32, 0u32);
    let (mut last, mut last_in): (Option<i32>, Option<i32>) = (None, None);
    s.contacts.clear();
    s.decision_makers.clear();
    s.champions.clear();
    for i in inp.interactions {
        let d = day_num(i.at);
        if d > t {
            continue;
        }
        last = Some(last.map_or(d, |l| l.max(d)));
        if i.direction == InteractionDirection::Inbound {
            last_in = Some(last_in.map_or(d, |l| l.max(d)));
        }
        let sentiment = i
            .sentiment
            .filter(|x| x.is_finite())
            .map(|x| x.clamp(-1.0, 1.0));
        if d > t - w {
            n += 1;
            match i.channel {
                Channel::Meeting | Channel::Call => meetings += 1,
                Channel::Ticket => tickets += 1,
                Channel::Email | Channel::Chat => {}
            }
            match i.direction {
                InteractionDirection::Inbound => inbound += 1,
                InteractionDirection::Outbound => {
                    if let Some(r) = i.replied {
                        out_known += 1;
                        out_replied += u32::from(r);
                    }
                }
            }
            if let Some(x) = sentiment {
                sent_sum += x;
                sent_n += 1;
                neg += u32::from(x < 0.0);
            }
            if let Some(c) = i.contact {
                s.contacts.push(c);
                match i.contact_role {
                    Some(ContactRole::DecisionMaker) => s.decision_makers.push(c),
                    Some(ContactRole::Champion) => s.champions.push(c),
                    _ => {}
                }
            }
        } else if d > t - 2 * w {
            n_prev += 1;
            if let Some(x) = sentiment {
                prev_sent_sum += x;
                prev_sent_n += 1;
            }
        }
    }
    let reached = sorted_distinct(&mut s.contacts) as f64;
    set(row, Builtin::Interactions, f64::from(n));
    set(row, Builtin::InboundInteractions, f64::from(inbound));
    set(row, Builtin::Meetings, f64::from(meetings));
    set(row, Builtin::Tickets, f64::from(tickets));
    set(
        row,
        Builtin::DaysSinceLastContact,
        opt(last.map(|d| f64::from(t - d))),
    );
    set(
        row,
        Builtin::DaysSinceLastInbound,
        opt(last_in.map(|d| f64::from(t - d))),
    );
    set(row, Builtin::ContactsReached, reached);
    set(
        row,
        Builtin::ContactsReachedShare,
        opt(inp
            .attributes
            .contacts
            .map(|c| ratio(reached, f64::from(c)))),
    );
    set(
        row,
        Builtin::DecisionMakersInvolved,
        sorted_distinct(&mut s.decision_makers) as f64,
    );
    set(
        row,
        Builtin::ChampionsInvolved,
        sorted_distinct(&mut s.champions) as f64,
    );
    let mean_sent = ratio(sent_sum, f64::from(sent_n));
    set(row, Builtin::MeanSentiment, mean_sent);
    set(
        row,
        Builtin::NegativeInteractionShare,
        ratio(f64::from(neg), f64::from(sent_n)),
    );
    set(
        row,
        Builtin::ResponseRate,
        ratio(f64::from(out_replied), f64::from(out_known)),
    );
    if prev_usable {
        set(
            row,
            Builtin::InteractionsChangePct,
            pct_change(f64::from(n), f64::from(n_prev)),
        );
        set(
            row,
            Builtin::SentimentChange,
            mean_sent - ratio(prev_sent_sum, f64::from(prev_sent_n)),
        );
    }
}

fn pulse(row: &mut [f64], inp: &AccountInputs<'_>, t: i32) {
    // Latest day and the one before, same-day values averaged.
    let (mut d1, mut s1, mut n1) = (i32::MIN, 0.0, 0u32);
    let (mut d2, mut s2, mut n2) = (i32::MIN, 0.0, 0u32);
    let (mut s90, mut n90) = (0.0, 0u32);
    for p in inp.pulses {
        let d = day_num(p.at);
        if d > t || !p.value.is_finite() {
            continue;
        }
        let v = p.value;
        if d > t - 90 {
            s90 += v;
            n90 += 1;
        }
        if d > d1 {
            (d2, s2, n2) = (d1, s1, n1);
            (d1, s1, n1) = (d, v, 1);
        } else if d == d1 {
            s1 += v;
            n1 += 1;
        } else if d > d2 {
            (d2, s2, n2) = (d, v, 1);
        } else if d == d2 {
            s2 += v;
            n2 += 1;
        }
    }
    if n1 > 0 {
        let latest = s1 / f64::from(n1);
        set(row, Builtin::PulseLatest, latest);
        set(row, Builtin::PulseAgeDays, f64::from(t - d1));
        if n2 > 0 {
            set(row, Builtin::PulseChange, latest - s2 / f64::from(n2));
        }
    }
    set(row, Builtin::PulseMean90d, ratio(s90, f64::from(n90)));
}

#[inline]
fn active_at(s: &Subscription, d: i32) -> bool {
    day_num(s.start) <= d && s.end.is_none_or(|e| d < day_num(e))
}

fn mrr_at(subs: &[Subscription], d: i32) -> f64 {
    subs.iter().filter(|s| active_at(s, d)).map(|s| s.mrr).sum()
}

fn contract(row: &mut [f64], subs: &[Subscription], t: i32, since: Option<i32>) {
    let (mut mrr, mut addon_mrr, mut addons, mut active) = (0.0, 0.0, 0u32, 0u32);
    let (mut disc_w, mut disc_sum, mut qty, mut has_qty, mut period) = (0.0, 0.0, 0.0, false, 0u16);
    let mut renewals = 0u32;
    let mut earliest_end: Option<i32> = None;
    for s in subs {
        if day_num(s.start) <= t {
            renewals += 1;
        }
        if !active_at(s, t) {
            continue;
        }
        active += 1;
        mrr += s.mrr;
        if s.add_on {
            addons += 1;
            addon_mrr += s.mrr;
        }
        disc_w += s.mrr.max(0.0);
        disc_sum += s.mrr.max(0.0) * s.discount;
        if let Some(q) = s.quantity {
            qty += q;
            has_qty = true;
        }
        period = period.max(s.billing_period_months);
        if let Some(e) = s.end.map(day_num) {
            earliest_end = Some(earliest_end.map_or(e, |x| x.min(e)));
        }
    }
    set(row, Builtin::Mrr, mrr);
    set(row, Builtin::AddOns, f64::from(addons));
    set(row, Builtin::AddOnMrrShare, ratio(addon_mrr, mrr));
    set(row, Builtin::ActiveSubscriptions, f64::from(active));
    set(row, Builtin::Renewals, f64::from(renewals));
    if active > 0 {
        let discount = if disc_w > 0.0 {
            disc_sum / disc_w
        } else {
            subs.iter()
                .filter(|s| active_at(s, t))
                .map(|s| s.discount)
                .sum::<f64>()
                / f64::from(active)
        };
        set(row, Builtin::Discount, discount);
        set(row, Builtin::BillingPeriodMonths, f64::from(period));
    }
    if has_qty {
        set(row, Builtin::Quantity, qty);
    }
    set(
        row,
        Builtin::TenureDays,
        opt(since.filter(|&d| d <= t).map(|d| f64::from(t - d))),
    );
    // Remaining duration: the earliest end among the active subscriptions that have
    // one, extended through renewals already on file that start later than T and no
    // later than that end (billing-period rows are renewed back to back). Open-ended
    // lines (e.g. an add-on without term) do not set a renewal date.
    if let Some(mut end) = earliest_end {
        let mut open = false;
        for _ in 0..subs.len() {
            let next = subs
                .iter()
                .filter(|s| {
                    let st = day_num(s.start);
                    st > t && st <= end && s.end.is_none_or(|e| day_num(e) > end)
                })
                .map(|s| s.end.map(day_num))
                .max_by_key(|e| e.unwrap_or(i32::MAX));
            match next {
                Some(Some(e)) => end = e,
                Some(None) => {
                    open = true;
                    break;
                }
                None => break,
            }
        }
        if !open {
            set(row, Builtin::DaysToRenewal, f64::from(end - t));
        }
    }
    // A contract younger than 90 days has no "90 days ago" to compare with.
    if subs
        .iter()
        .map(|s| day_num(s.start))
        .min()
        .is_some_and(|f| f <= t - 90)
    {
        set(
            row,
            Builtin::MrrChange90dPct,
            pct_change(mrr, mrr_at(subs, t - 90)),
        );
    }
}
