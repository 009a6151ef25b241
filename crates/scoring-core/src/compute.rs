//! KPI computation as of a date T over a window, from plain per-account inputs.
//!
//! Windows are whole UTC days ending at T inclusive: the current window is
//! `(T - W, T]`, the previous one `(T - 2W, T - W]`, and so on. One pass over the
//! account's roll-ups fills per-day arrays (reused across accounts, no per-account
//! allocation); every usage KPI is then read off those arrays.

use chrono::{Datelike, NaiveDate};
use rayon::prelude::*;

use crate::catalogue::{BUILTIN_COUNT, Builtin, Catalogue, EventDetail};
use crate::inputs::{
    AccountInputs, Channel, ContactRole, DailyUsage, InteractionDirection, Subscription,
};
use crate::trend::{TrendConfig, momentum, trend_z};
use crate::{KpiMatrix, ScoringError};

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

/// Dimensions of one computation: the date, the window and which past windows are usable.
#[derive(Debug, Clone, Copy)]
struct Frame {
    t: i32,
    w: i32,
    wf: f64,
    n_win: usize,
    span: usize,
    n_key: usize,
    /// First day a usable window may start on (data start or account creation).
    floor: Option<i32>,
}

impl Frame {
    fn new(cat: &Catalogue, config: &KpiConfig, t: i32, created: Option<i32>) -> Self {
        let w = config.window_days as i32;
        let n_win = config.history_windows as usize + 1;
        // A window is usable when it starts on or after both the data start and the
        // account's creation; otherwise it would read "no data" as "no activity".
        let floor = [config.data_start.map(day_num), created]
            .into_iter()
            .flatten()
            .max();
        Self {
            t,
            w,
            wf: f64::from(config.window_days),
            n_win,
            span: w as usize * n_win,
            n_key: cat.key_event_count(),
            floor,
        }
    }

    #[inline]
    fn window_usable(&self, wi: usize) -> bool {
        self.floor
            .is_none_or(|f| self.t - (wi as i32 + 1) * self.w + 1 >= f)
    }

    #[inline]
    fn prev_usable(&self) -> bool {
        self.n_win > 1 && self.window_usable(1)
    }
}

fn reset_usage_scratch(f: &Frame, s: &mut KpiScratch) {
    s.events.clear();
    s.events.resize(f.span, 0.0);
    s.dau.clear();
    s.dau.resize(f.span, 0);
    s.value.clear();
    s.value.resize(f.span, 0.0);
    s.seen.clear();
    s.seen.resize(f.n_win * f.n_key, false);
    s.type_prev.clear();
    s.type_prev.resize(f.n_key, 0.0);
    s.type_last.clear();
    s.type_last.resize(f.n_key, i32::MIN);
}

/// What the pass over the roll-ups yields besides the per-day arrays.
struct UsageTotals {
    last_active: Option<i32>,
    all_events: f64,
}

/// One pass over the roll-ups: fills the per-day arrays of `s` and the per-type
/// event count columns of the current window.
fn fold_usage(
    cat: &Catalogue,
    f: &Frame,
    usage: &[DailyUsage],
    row: &mut [f64],
    s: &mut KpiScratch,
) -> UsageTotals {
    let (t, w, n_key, span) = (f.t, f.w, f.n_key, f.span);
    let mut last_active: Option<i32> = None;
    let mut all_events = 0.0;
    let event_col = BUILTIN_COUNT;
    for u in usage {
        let d = day_num(u.day);
        if d > t {
            continue;
        }
        let off = (t - d) as usize;
        if off < w as usize {
            all_events += f64::from(u.count);
        }
        let Some(pos) = cat.key_position(u.event_type) else {
            continue;
        };
        if u.count > 0 {
            if last_active.is_none_or(|l| d > l) {
                last_active = Some(d);
            }
            s.type_last[pos] = s.type_last[pos].max(d);
        }
        if (w as usize..2 * w as usize).contains(&off) {
            s.type_prev[pos] += f64::from(u.count);
        }
        if off < span {
            s.events[off] += f64::from(u.count);
            s.dau[off] = s.dau[off].max(u.distinct_users);
            s.value[off] += u.value_sum;
            if u.count > 0 {
                s.seen[(off / w as usize) * n_key + pos] = true;
            }
            if off < w as usize {
                let c = event_col + pos;
                row[c] = if row[c].is_nan() { 0.0 } else { row[c] } + f64::from(u.count);
            }
        }
    }
    for pos in 0..n_key {
        if row[event_col + pos].is_nan() {
            row[event_col + pos] = 0.0;
        }
    }
    UsageTotals {
        last_active,
        all_events,
    }
}

/// Totals of window `wi` (0 = current) read off the per-day arrays.
#[inline]
fn win_stats(f: &Frame, s: &KpiScratch, wi: usize) -> WinStats {
    let w = f.w as usize;
    let n_key = f.n_key;
    let mut st = WinStats::default();
    let lo = wi * w;
    for o in lo..lo + w {
        let e = s.events[o];
        st.events += e;
        st.time += s.value[o];
        st.dau_sum += f64::from(s.dau[o]);
        st.dau_peak = st.dau_peak.max(s.dau[o]);
        if e > 0.0 {
            st.active_days += 1;
        }
    }
    st.types = s.seen[wi * n_key..(wi + 1) * n_key]
        .iter()
        .filter(|&&b| b)
        .count() as u32;
    st
}

#[inline]
fn breadth_of(f: &Frame, st: &WinStats) -> f64 {
    if f.n_key > 0 {
        f64::from(st.types) / f.n_key as f64
    } else {
        f64::NAN
    }
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

/// Volume, recency-of-volume and user KPIs of the current window.
fn volume_kpis(
    row: &mut [f64],
    f: &Frame,
    s: &KpiScratch,
    cur: &WinStats,
    seats: Option<f64>,
    all_events: f64,
) {
    let (w, wf) = (f.w, f.wf);
    let avg_dau = cur.dau_sum / wf;
    set(row, Builtin::KeyEvents, cur.events);
    set(row, Builtin::AllEvents, all_events);
    set(
        row,
        Builtin::KeyEventsPerSeat,
        seats.map_or(f64::NAN, |st| ratio(cur.events, st)),
    );
    set(
        row,
        Builtin::KeyEventsPerActiveUser,
        ratio(cur.events, f64::from(cur.dau_peak)),
    );
    set(
        row,
        Builtin::EventsPerActiveDay,
        ratio(cur.events, f64::from(cur.active_days)),
    );
    let last7: f64 = s.events[..7.min(w as usize)].iter().sum();
    set(row, Builtin::KeyEventsLast7d, last7);
    set(
        row,
        Builtin::RecentActivityRatio,
        ratio(last7 * wf / 7.0_f64.min(wf), cur.events),
    );
    set(row, Builtin::ActiveDays, f64::from(cur.active_days));
    weekly_kpis(row, f, s);
    set(row, Builtin::AvgDailyActiveUsers, avg_dau);
    set(row, Builtin::PeakDailyActiveUsers, f64::from(cur.dau_peak));
    set(
        row,
        Builtin::ActiveUserRatio,
        seats.map_or(f64::NAN, |st| ratio(f64::from(cur.dau_peak), st)),
    );
    set(
        row,
        Builtin::AvgDauPerSeat,
        seats.map_or(f64::NAN, |st| ratio(avg_dau, st)),
    );
}

/// Active weeks and the slope of the weekly totals of the current window.
fn weekly_kpis(row: &mut [f64], f: &Frame, s: &KpiScratch) {
    let w = f.w;
    let mut active_weeks = 0;
    let n_weeks = (w as usize).div_ceil(7);
    // Weekly totals, chronological (oldest block first), for the slope.
    let (mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0);
    for b in 0..n_weeks {
        let lo = b * 7;
        let hi = (lo + 7).min(w as usize);
        let e: f64 = s.events[lo..hi].iter().sum();
        if e > 0.0 {
            active_weeks += 1;
        }
        let x = (n_weeks - 1 - b) as f64;
        sx += x;
        sy += e;
        sxx += x * x;
        sxy += x * e;
    }
    set(row, Builtin::ActiveWeeks, f64::from(active_weeks));
    let nw = n_weeks as f64;
    let slope_den = nw * sxx - sx * sx;
    let slope = if slope_den > 0.0 {
        (nw * sxy - sx * sy) / slope_den
    } else {
        0.0
    };
    let mean_week = sy / nw;
    set(
        row,
        Builtin::WeeklyEventsSlope,
        if mean_week > 0.0 {
            slope / mean_week
        } else {
            0.0
        },
    );
}

/// Mean gap between active days and the longest inactive streak of the current window.
fn gap_kpis(row: &mut [f64], f: &Frame, s: &KpiScratch, cur: &WinStats) {
    // Gaps: offsets of active days, walking from T backwards.
    let (mut first_o, mut last_o, mut streak, mut max_streak) = (None, 0usize, 0u32, 0u32);
    for o in 0..f.w as usize {
        if s.events[o] > 0.0 {
            first_o.get_or_insert(o);
            last_o = o;
            streak = 0;
        } else {
            streak += 1;
            max_streak = max_streak.max(streak);
        }
    }
    let mean_gap = match first_o {
        Some(fo) if cur.active_days >= 2 => (last_o - fo) as f64 / f64::from(cur.active_days - 1),
        _ => f.wf,
    };
    set(row, Builtin::MeanGapBetweenActiveDays, mean_gap);
    set(row, Builtin::MaxInactiveStreak, f64::from(max_streak));
}

/// Changes of the current window against the previous one.
fn change_kpis(row: &mut [f64], f: &Frame, cur: &WinStats, prev: &WinStats) {
    set(
        row,
        Builtin::KeyEventsChangePct,
        pct_change(cur.events, prev.events),
    );
    set(
        row,
        Builtin::ActiveDaysChangePct,
        pct_change(f64::from(cur.active_days), f64::from(prev.active_days)),
    );
    set(
        row,
        Builtin::ActiveUsersChangePct,
        pct_change(cur.dau_sum, prev.dau_sum),
    );
    set(
        row,
        Builtin::TimeSpentChangePct,
        pct_change(cur.time, prev.time),
    );
    set(
        row,
        Builtin::BreadthChange,
        breadth_of(f, cur) - breadth_of(f, prev),
    );
}

/// Per key event type: share, days since last use, change vs the previous window.
fn event_detail_kpis(
    cat: &Catalogue,
    row: &mut [f64],
    f: &Frame,
    s: &KpiScratch,
    cur: &WinStats,
    since_start: Option<i32>,
) {
    let event_col = BUILTIN_COUNT;
    let prev_usable = f.prev_usable();
    for pos in 0..f.n_key {
        let now = row[event_col + pos];
        let col = |detail| {
            cat.event_detail_kpi(detail, pos)
                .expect("pos < key_event_count")
        };
        row[col(EventDetail::Share)] = ratio(now, cur.events);
        let last = Some(s.type_last[pos])
            .filter(|&d| d != i32::MIN)
            .or(since_start);
        row[col(EventDetail::DaysSince)] = last.map_or(f64::NAN, |d| f64::from(f.t - d));
        if prev_usable {
            row[col(EventDetail::ChangePct)] = pct_change(now, s.type_prev[pos]);
        }
    }
}

/// Momentum: the trend KPIs of the current window against each usable past window.
fn trend_momentum(config: &KpiConfig, f: &Frame, s: &KpiScratch, cur: &WinStats) -> Option<f64> {
    let trend_value = |b: Builtin, st: &WinStats| -> f64 {
        match b {
            Builtin::KeyEvents => st.events,
            Builtin::ActiveDays => f64::from(st.active_days),
            Builtin::AvgDailyActiveUsers => st.dau_sum / f.wf,
            Builtin::TimeSpent => st.time,
            Builtin::Breadth => breadth_of(f, st),
            _ => f64::NAN,
        }
    };
    let mut hist = [[f64::NAN; 53]; TREND_KPIS.len()];
    let mut n_hist = 0;
    for wi in 1..f.n_win {
        if !f.window_usable(wi) {
            break;
        }
        let st = win_stats(f, s, wi);
        for (j, &b) in TREND_KPIS.iter().enumerate() {
            hist[j][n_hist] = trend_value(b, &st);
        }
        n_hist += 1;
    }
    let zs = TREND_KPIS.iter().enumerate().filter_map(|(j, &b)| {
        trend_z(
            trend_value(b, cur),
            &hist[j][..n_hist],
            b.def().direction,
            &config.trend,
        )
    });
    momentum(zs)
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
