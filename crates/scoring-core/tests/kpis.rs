//! KPI computation worked by hand on one account (see the comments for the arithmetic).

use chrono::NaiveDate;
use vitals_scoring_core::*;

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

fn u(day: NaiveDate, event_type: u32, count: u32, users: u32, value: f64) -> DailyUsage {
    DailyUsage {
        day,
        event_type,
        count,
        distinct_users: users,
        value_sum: value,
    }
}

fn catalogue() -> Catalogue {
    Catalogue::new(&CatalogueSpec {
        event_types: vec!["login".into(), "report".into(), "noise".into()],
        key_event_types: Some(vec![0, 1]),
        custom_metrics: vec![CustomMetricSpec {
            name: "roi".into(),
            direction: Direction::HigherIsBetter,
        }],
        score_fields: vec!["exec sponsor".into()],
    })
    .unwrap()
}

struct Fixture {
    usage: Vec<DailyUsage>,
    interactions: Vec<Interaction>,
    pulses: Vec<Pulse>,
    subs: Vec<Subscription>,
    custom: Vec<CustomMetricValue>,
    fields: Vec<ScoreFieldValue>,
    signals: Vec<WebhookSignal>,
}

fn fixture() -> Fixture {
    let inter = |at, channel, direction, replied, contact, role, sentiment| Interaction {
        at,
        channel,
        direction,
        replied,
        contact,
        contact_role: role,
        sentiment,
    };
    use Channel::*;
    use InteractionDirection::*;
    Fixture {
        usage: vec![
            u(d(2024, 3, 31), 0, 4, 2, 30.0),
            u(d(2024, 3, 30), 1, 1, 1, 0.0),
            u(d(2024, 3, 25), 0, 2, 3, 10.0),
            u(d(2024, 3, 25), 2, 100, 9, 0.0), // not a key event type
            u(d(2024, 3, 4), 0, 3, 1, 0.0),    // offset 27: last day of the window
            u(d(2024, 3, 3), 0, 5, 1, 0.0),    // offset 28: previous window
            u(d(2024, 2, 10), 1, 2, 1, 0.0),   // previous window
            u(d(2024, 2, 1), 0, 6, 2, 0.0),    // window before that
            u(d(2024, 4, 1), 0, 99, 9, 0.0),   // after T: ignored
        ],
        interactions: vec![
            inter(
                d(2024, 3, 30),
                Email,
                Outbound,
                Some(true),
                Some(1),
                Some(ContactRole::DecisionMaker),
                Some(0.5),
            ),
            inter(
                d(2024, 3, 20),
                Meeting,
                Inbound,
                None,
                Some(2),
                Some(ContactRole::Champion),
                Some(-0.5),
            ),
            inter(
                d(2024, 3, 10),
                Ticket,
                Inbound,
                None,
                Some(1),
                Some(ContactRole::DecisionMaker),
                None,
            ),
            inter(
                d(2024, 3, 5),
                Email,
                Outbound,
                Some(false),
                Some(3),
                Some(ContactRole::User),
                Some(0.3),
            ),
            inter(d(2024, 2, 20), Call, Outbound, None, None, None, Some(0.8)),
            inter(d(2024, 1, 1), Chat, Inbound, None, None, None, None),
        ],
        pulses: vec![
            Pulse {
                at: d(2024, 3, 1),
                value: 4.0,
            },
            Pulse {
                at: d(2024, 3, 15),
                value: 2.0,
            },
            Pulse {
                at: d(2024, 3, 15),
                value: 3.0,
            },
            Pulse {
                at: d(2023, 10, 1),
                value: 5.0,
            },
        ],
        subs: vec![
            Subscription {
                start: d(2023, 6, 1),
                end: Some(d(2024, 4, 15)),
                mrr: 100.0,
                quantity: Some(5.0),
                add_on: false,
                discount: 0.1,
                billing_period_months: 12,
            },
            Subscription {
                start: d(2024, 2, 1),
                end: None,
                mrr: 20.0,
                quantity: None,
                add_on: true,
                discount: 0.0,
                billing_period_months: 1,
            },
            Subscription {
                start: d(2024, 4, 15),
                end: Some(d(2025, 4, 15)),
                mrr: 110.0,
                quantity: Some(5.0),
                add_on: false,
                discount: 0.1,
                billing_period_months: 12,
            },
            Subscription {
                start: d(2023, 1, 1),
                end: Some(d(2023, 6, 1)),
                mrr: 80.0,
                quantity: Some(5.0),
                add_on: false,
                discount: 0.0,
                billing_period_months: 1,
            },
        ],
        custom: vec![
            CustomMetricValue {
                metric: 0,
                at: d(2024, 3, 1),
                value: 2.0,
            },
            CustomMetricValue {
                metric: 0,
                at: d(2024, 3, 20),
                value: 3.0,
            },
            CustomMetricValue {
                metric: 0,
                at: d(2024, 3, 20),
                value: 5.0,
            },
            CustomMetricValue {
                metric: 0,
                at: d(2024, 4, 5),
                value: 100.0,
            },
        ],
        fields: vec![ScoreFieldValue {
            field: 0,
            value: 4.0,
        }],
        signals: vec![
            WebhookSignal {
                signal: 7,
                at: d(2024, 3, 10),
                value: 5.0,
            },
            WebhookSignal {
                signal: 7,
                at: d(2024, 3, 25),
                value: 1.0,
            },
            WebhookSignal {
                signal: 8,
                at: d(2024, 3, 30),
                value: 4.0,
            },
            WebhookSignal {
                signal: 9,
                at: d(2024, 2, 1),
                value: 5.0,
            },
        ],
    }
}

fn inputs(f: &Fixture) -> AccountInputs<'_> {
    AccountInputs {
        usage: &f.usage,
        interactions: &f.interactions,
        pulses: &f.pulses,
        subscriptions: &f.subs,
        custom_metrics: &f.custom,
        score_fields: &f.fields,
        webhook_signals: &f.signals,
        attributes: AccountAttributes {
            seats: Some(5.0),
            created_at: Some(d(2023, 1, 1)),
            contacts: Some(6),
        },
    }
}

fn config() -> KpiConfig {
    KpiConfig {
        history_windows: 2,
        ..KpiConfig::default()
    }
}

#[track_caller]
fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-9, "{a} != {b}");
}

#[test]
fn every_builtin_by_hand() {
    let cat = catalogue();
    let f = fixture();
    let mut row = vec![0.0; cat.len()];
    let sig = compute_account(
        &cat,
        &config(),
        d(2024, 3, 31),
        &inputs(&f),
        &mut row,
        &mut KpiScratch::new(),
    )
    .unwrap();
    let v = |b: Builtin| row[b.index()];
    use Builtin::*;
    // Current window = 2024-03-04..=2024-03-31; key events on offsets 0 (4), 1 (1), 6 (2), 27 (3).
    close(v(KeyEvents), 10.0);
    close(v(AllEvents), 110.0);
    close(v(KeyEventsPerSeat), 2.0);
    // Daily active users per day = max over key types: 2, 1, 3, 1 -> peak 3, sum 7.
    close(v(KeyEventsPerActiveUser), 10.0 / 3.0);
    close(v(EventsPerActiveDay), 2.5);
    close(v(KeyEventsLast7d), 7.0);
    // 7 in the last week vs 10 / 4 per week on average: 7 x 28 / 7 / 10 = 2.8
    close(v(RecentActivityRatio), 2.8);
    close(v(ActiveDays), 4.0);
    // Weeks back from T: 7, 0, 0, 3 -> 2 active weeks.
    close(v(ActiveWeeks), 2.0);
    close(v(AvgDailyActiveUsers), 7.0 / 28.0);
    close(v(PeakDailyActiveUsers), 3.0);
    close(v(ActiveUserRatio), 0.6);
    close(v(AvgDauPerSeat), 0.05);
    close(v(DaysSinceLastActivity), 0.0);
    // Active offsets 0, 1, 6, 27: (27 - 0) / 3 = 9; longest inactive run offsets 7..=26 = 20.
    close(v(MeanGapBetweenActiveDays), 9.0);
    close(v(MaxInactiveStreak), 20.0);
    close(v(TimeSpent), 40.0);
    close(v(TimeSpentPerActiveUser), 40.0 / 3.0);
    close(v(Breadth), 1.0);
    // Previous window: 5 (login) + 2 (report) = 7 events on 2 days, DAU sum 2, time 0, breadth 1.
    close(v(KeyEventsChangePct), 300.0 / 7.0);
    close(v(ActiveDaysChangePct), 100.0);
    close(v(ActiveUsersChangePct), 250.0);
    close(v(TimeSpentChangePct), 100.0);
    close(v(BreadthChange), 0.0);
    // Weekly totals oldest first y = 3, 0, 0, 7 at x = 0..3: slope = (4 x 21 - 6 x 10) / (4 x 14 - 36)
    // = 1.2, over a mean week of 2.5 -> 0.48.
    close(v(WeeklyEventsSlope), 0.48);
    close(row[cat.index_of("events_login").unwrap()], 9.0);
    close(row[cat.index_of("events_report").unwrap()], 1.0);
    // Per key type: share of the window's 10 key events, days since the type's last event
    // (login on 03-31, report on 03-30), change vs the previous window (login 5 -> 9,
    // report 2 -> 1).
    let k = |name: &str| row[cat.index_of(name).unwrap()];
    close(k("events_login__share"), 0.9);
    close(k("events_report__share"), 0.1);
    close(k("events_login__days_since"), 0.0);
    close(k("events_report__days_since"), 1.0);
    close(k("events_login__change_pct"), 80.0);
    close(k("events_report__change_pct"), -50.0);
    assert_eq!(cat.index_of("events_noise__share"), None);

    close(v(Interactions), 4.0);
    close(v(InboundInteractions), 2.0);
    close(v(Meetings), 1.0);
    close(v(Tickets), 1.0);
    close(v(DaysSinceLastContact), 1.0);
    close(v(DaysSinceLastInbound), 11.0);
    close(v(ContactsReached), 3.0);
    close(v(ContactsReachedShare), 0.5);
    close(v(DecisionMakersInvolved), 1.0);
    close(v(ChampionsInvolved), 1.0);
    close(v(MeanSentiment), 0.1);
    close(v(NegativeInteractionShare), 1.0 / 3.0);
    close(v(ResponseRate), 0.5);
    close(v(InteractionsChangePct), 300.0);
    close(v(SentimentChange), 0.1 - 0.8);

    // Pulses: latest day 03-15 averages 2 and 3; previous 4; 90-day mean of 4, 2, 3.
    close(v(PulseLatest), 2.5);
    close(v(PulseAgeDays), 16.0);
    close(v(PulseMean90d), 3.0);
    close(v(PulseChange), -1.5);

    // Active at T: main (100, discount 0.1, qty 5, 12 months) and the add-on (20).
    close(v(Mrr), 120.0);
    close(v(MrrChange90dPct), 20.0);
    close(v(AddOns), 1.0);
    close(v(AddOnMrrShare), 20.0 / 120.0);
    close(v(TenureDays), 455.0);
    // Main ends 2024-04-15, renewed back to back until 2025-04-15: 15 + 365 days.
    close(v(DaysToRenewal), 380.0);
    close(v(Discount), 10.0 / 120.0);
    close(v(Quantity), 5.0);
    close(v(ActiveSubscriptions), 2.0);
    close(v(BillingPeriodMonths), 12.0);
    close(v(Renewals), 3.0);

    close(row[cat.index_of("custom_roi").unwrap()], 4.0);
    close(row[cat.index_of("score_field_exec_sponsor").unwrap()], 4.0);

    // Trend, history = windows 1 and 2:
    //  key_events 10 vs 7, 6 -> clamp 2; active_days 4 vs 2, 1 -> clamp 2;
    //  avg DAU 7/28 vs 2/28, 2/28 -> clamp 2; time 40 vs 0, 0 -> clamp 2;
    //  breadth 1 vs 1, 0.5: mean 0.75, std 0.25, eps 0.075 -> 0.25 / 0.325 = 10/13.
    close(sig.momentum.unwrap(), (8.0 + 10.0 / 13.0) / 10.0);
    // Webhook: signal 7 latest = 1 -> -1, signal 8 = 4 -> +0.5, signal 9 outside the window.
    close(sig.webhook.unwrap(), -0.25);
}

#[test]
fn missing_rather_than_zero_when_not_applicable() {
    let cat = catalogue();
    let empty = AccountInputs::default();
    let mut row = vec![0.0; cat.len()];
    let sig = compute_account(
        &cat,
        &config(),
        d(2024, 3, 31),
        &empty,
        &mut row,
        &mut KpiScratch::new(),
    )
    .unwrap();
    use Builtin::*;
    for b in [
        KeyEventsPerSeat,
        KeyEventsPerActiveUser,
        EventsPerActiveDay,
        RecentActivityRatio,
        DaysSinceLastActivity,
        DaysSinceLastContact,
        MeanSentiment,
        ResponseRate,
        PulseLatest,
        PulseAgeDays,
        Discount,
        DaysToRenewal,
        TenureDays,
        MrrChange90dPct,
    ] {
        assert!(row[b.index()].is_nan(), "{b:?} = {}", row[b.index()]);
    }
    for b in [KeyEvents, ActiveDays, Interactions, Mrr, MaxInactiveStreak] {
        assert!(!row[b.index()].is_nan(), "{b:?}");
    }
    assert_eq!(row[MeanGapBetweenActiveDays.index()], 28.0);
    assert!(row[cat.index_of("custom_roi").unwrap()].is_nan());
    assert_eq!(sig.webhook, None);
    // No key events in the window: no share; never used and no start: no days since.
    for kpi in ["events_login__share", "events_report__days_since"] {
        assert!(row[cat.index_of(kpi).unwrap()].is_nan(), "{kpi}");
    }
    assert_eq!(row[cat.index_of("events_login__change_pct").unwrap()], 0.0);

    // A type never used counts its days since from the first contract.
    let subs = [Subscription {
        start: d(2024, 3, 1),
        end: None,
        mrr: 10.0,
        quantity: None,
        add_on: false,
        discount: 0.0,
        billing_period_months: 1,
    }];
    let usage = [u(d(2024, 3, 20), 0, 1, 1, 0.0)];
    let inp = AccountInputs {
        subscriptions: &subs,
        usage: &usage,
        ..AccountInputs::default()
    };
    compute_account(
        &cat,
        &config(),
        d(2024, 3, 31),
        &inp,
        &mut row,
        &mut KpiScratch::new(),
    )
    .unwrap();
    assert_eq!(row[cat.index_of("events_login__days_since").unwrap()], 11.0);
    assert_eq!(
        row[cat.index_of("events_report__days_since").unwrap()],
        30.0
    );
    assert_eq!(row[cat.index_of("events_report__share").unwrap()], 0.0);
}

#[test]
fn data_start_makes_past_windows_missing_not_zero() {
    let cat = catalogue();
    let f = fixture();
    let cfg = KpiConfig {
        data_start: Some(d(2024, 3, 1)),
        ..config()
    };
    let mut row = vec![0.0; cat.len()];
    let sig = compute_account(
        &cat,
        &cfg,
        d(2024, 3, 31),
        &inputs(&f),
        &mut row,
        &mut KpiScratch::new(),
    )
    .unwrap();
    assert!(row[Builtin::KeyEventsChangePct.index()].is_nan());
    assert!(row[Builtin::InteractionsChangePct.index()].is_nan());
    assert!(row[cat.index_of("events_login__change_pct").unwrap()].is_nan());
    assert_eq!(sig.momentum, None);
}

#[test]
fn batch_equals_single_and_input_order_does_not_matter() {
    let cat = catalogue();
    let f = fixture();
    let mut g = fixture();
    g.usage.reverse();
    g.interactions.reverse();
    g.pulses.reverse();
    g.subs.reverse();
    g.custom.reverse();
    g.signals.reverse();
    let batch = compute_kpis(&cat, &config(), d(2024, 3, 31), &[inputs(&f), inputs(&g)]).unwrap();
    let a = batch.matrix.row(0);
    let b = batch.matrix.row(1);
    for k in 0..cat.len() {
        assert!(
            a[k] == b[k] || (a[k].is_nan() && b[k].is_nan()),
            "{}: {} vs {}",
            cat.kpis()[k].name,
            a[k],
            b[k]
        );
    }
    assert_eq!(batch.signals[0], batch.signals[1]);
    let mut row = vec![0.0; cat.len()];
    compute_account(
        &cat,
        &config(),
        d(2024, 3, 31),
        &inputs(&f),
        &mut row,
        &mut KpiScratch::new(),
    )
    .unwrap();
    assert_eq!(
        row.iter().filter(|x| x.is_nan()).count(),
        a.iter().filter(|x| x.is_nan()).count()
    );
}

#[test]
fn scorecard_event_count_measure() {
    let f = fixture();
    // login events in the 30 days up to 2024-03-31: 4 + 2 + 3 + 5 (03-03 is within 30 days)
    assert_eq!(event_count(&f.usage, 0, d(2024, 3, 31), 30), 14);
    assert_eq!(event_count(&f.usage, 0, d(2024, 3, 31), 1), 4);
}

#[test]
fn bad_config_is_rejected() {
    let cat = catalogue();
    let mut row = vec![0.0; cat.len()];
    let cfg = KpiConfig {
        window_days: 0,
        ..KpiConfig::default()
    };
    let err = compute_account(
        &cat,
        &cfg,
        d(2024, 3, 31),
        &AccountInputs::default(),
        &mut row,
        &mut KpiScratch::new(),
    );
    assert!(matches!(
        err,
        Err(ScoringError::InvalidConfig {
            field: "window_days",
            ..
        })
    ));
    let mut short = vec![0.0; 3];
    let err = compute_account(
        &cat,
        &config(),
        d(2024, 3, 31),
        &AccountInputs::default(),
        &mut short,
        &mut KpiScratch::new(),
    );
    assert!(matches!(
        err,
        Err(ScoringError::LengthMismatch { field: "row", .. })
    ));
}
