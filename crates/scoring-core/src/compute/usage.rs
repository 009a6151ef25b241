//! Usage KPIs: one pass over the roll-ups fills per-day arrays, every usage KPI and the
//! trend are then read off them.

use super::{KpiConfig, KpiScratch, TREND_KPIS, WinStats, day_num, pct_change, ratio, set};
use crate::catalogue::{BUILTIN_COUNT, Builtin, Catalogue, EventDetail};
use crate::inputs::DailyUsage;
use crate::trend::{momentum, trend_z};

/// Dimensions of one computation: the date, the window and which past windows are usable.
#[derive(Debug, Clone, Copy)]
pub(super) struct Frame {
    pub(super) t: i32,
    pub(super) w: i32,
    wf: f64,
    n_win: usize,
    span: usize,
    n_key: usize,
    /// First day a usable window may start on (data start or account creation).
    floor: Option<i32>,
}

impl Frame {
    pub(super) fn new(cat: &Catalogue, config: &KpiConfig, t: i32, created: Option<i32>) -> Self {
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
    pub(super) fn window_usable(&self, wi: usize) -> bool {
        self.floor
            .is_none_or(|f| self.t - (wi as i32 + 1) * self.w + 1 >= f)
    }

    #[inline]
    pub(super) fn prev_usable(&self) -> bool {
        self.n_win > 1 && self.window_usable(1)
    }
}

pub(super) fn reset_usage_scratch(f: &Frame, s: &mut KpiScratch) {
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
pub(super) struct UsageTotals {
    pub(super) last_active: Option<i32>,
    pub(super) all_events: f64,
}

/// One pass over the roll-ups: fills the per-day arrays of `s` and the per-type
/// event count columns of the current window.
pub(super) fn fold_usage(
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
pub(super) fn win_stats(f: &Frame, s: &KpiScratch, wi: usize) -> WinStats {
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
pub(super) fn breadth_of(f: &Frame, st: &WinStats) -> f64 {
    if f.n_key > 0 {
        f64::from(st.types) / f.n_key as f64
    } else {
        f64::NAN
    }
}

/// Volume, recency-of-volume and user KPIs of the current window.
pub(super) fn volume_kpis(
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
pub(super) fn gap_kpis(row: &mut [f64], f: &Frame, s: &KpiScratch, cur: &WinStats) {
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
pub(super) fn change_kpis(row: &mut [f64], f: &Frame, cur: &WinStats, prev: &WinStats) {
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
pub(super) fn event_detail_kpis(
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
pub(super) fn trend_momentum(
    config: &KpiConfig,
    f: &Frame,
    s: &KpiScratch,
    cur: &WinStats,
) -> Option<f64> {
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
