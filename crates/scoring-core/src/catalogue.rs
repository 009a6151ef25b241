//! The KPI catalogue: every KPI's stable name, category, direction and one-line doc.
//!
//! The catalogue is built once per tenant configuration from a [`CatalogueSpec`]: the
//! fixed built-in KPIs first (their indices never change, see [`Builtin`]), then one KPI
//! per key event type, one per custom metric and one per custom score field. KPI values
//! live in a [`crate::KpiMatrix`] whose columns follow this order.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::ScoringError;

/// The families of criteria a profile weights against each other.
///
/// `ScoreField` is special: each custom score field is a component of the profile score
/// on its own, with its own weight, rather than a member of a category (Skalin's
/// "custom score fields with weights").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// Product usage: events, active users, active days, breadth, time spent.
    Usage,
    /// Customer conversations: interactions, contacts reached, sentiment, replies.
    Conversations,
    /// The CSM's own assessment of the account (1..5).
    Pulse,
    /// Contract data: MRR, add-ons, tenure, renewal, discount.
    Contract,
    /// Custom metrics sent by the customer (ROI, credits consumed, ...).
    Custom,
    /// Custom score fields (1..5), each weighted on its own in the profile score.
    ScoreField,
}

impl Category {
    /// The five categories that hold KPIs and carry a category weight (all but
    /// [`Category::ScoreField`]), in the order used by [`crate::CategoryWeights`] and
    /// [`crate::CategoryScores`].
    pub const WEIGHTED: [Category; 5] = [
        Category::Usage,
        Category::Conversations,
        Category::Pulse,
        Category::Contract,
        Category::Custom,
    ];

    /// Position in [`Category::WEIGHTED`], `None` for score fields.
    pub fn index(self) -> Option<usize> {
        match self {
            Category::Usage => Some(0),
            Category::Conversations => Some(1),
            Category::Pulse => Some(2),
            Category::Contract => Some(3),
            Category::Custom => Some(4),
            Category::ScoreField => None,
        }
    }

    /// Stable snake_case name, as used in the API and the docs.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Usage => "usage",
            Category::Conversations => "conversations",
            Category::Pulse => "pulse",
            Category::Contract => "contract",
            Category::Custom => "custom",
            Category::ScoreField => "score_field",
        }
    }
}

/// Which way is healthy for a KPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// A larger value is healthier (e.g. active users).
    HigherIsBetter,
    /// A smaller value is healthier (e.g. days since last activity).
    LowerIsBetter,
}

impl Direction {
    /// Stable name used in the docs and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::HigherIsBetter => "higher",
            Direction::LowerIsBetter => "lower",
        }
    }
}

/// How a KPI value becomes a 0..10 KPI score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScoreMode {
    /// 10 x the direction-adjusted mid-rank percentile among the peers (docs/scoring.md §2).
    Comparative,
    /// Absolute linear mapping of `[min, max]` onto 0..10, clamped: custom score fields
    /// are already an assessment on 1..5, so (v - 1) / 4 x 10 (docs/scoring.md §6).
    Absolute {
        /// Value that maps to 0.
        min: f64,
        /// Value that maps to 10.
        max: f64,
    },
}

/// One KPI of the catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct KpiDef {
    /// Stable snake_case name (the API and stored snapshots refer to KPIs by name).
    pub name: Cow<'static, str>,
    /// The family it belongs to.
    pub category: Category,
    /// Which way is healthy.
    pub direction: Direction,
    /// How its value becomes a KPI score.
    pub mode: ScoreMode,
    /// Whether it takes part in the account's own trend (momentum, docs/scoring.md §4).
    pub trend: bool,
    /// One-line description.
    pub doc: Cow<'static, str>,
}

macro_rules! builtins {
    ($( $variant:ident => ($name:literal, $cat:ident, $dir:ident, $trend:literal, $doc:literal) ),+ $(,)?) => {
        /// The built-in KPIs. The discriminant is the KPI's column in every
        /// [`crate::KpiMatrix`]: built-ins come first and in this order.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(usize)]
        pub enum Builtin {
            $(
                #[doc = $doc]
                $variant,
            )+
        }

        impl Builtin {
            /// Every built-in, in column order.
            pub const ALL: &'static [Builtin] = &[$(Builtin::$variant),+];
        }

        const BUILTIN_DEFS: &[KpiDef] = &[$(
            KpiDef {
                name: Cow::Borrowed($name),
                category: Category::$cat,
                direction: Direction::$dir,
                mode: ScoreMode::Comparative,
                trend: $trend,
                doc: Cow::Borrowed($doc),
            }
        ),+];
    };
}

builtins! {
    // usage
    KeyEvents => ("key_events", Usage, HigherIsBetter, true,
        "Key events in the window."),
    AllEvents => ("all_events", Usage, HigherIsBetter, false,
        "Events of any type in the window."),
    KeyEventsPerSeat => ("key_events_per_seat", Usage, HigherIsBetter, false,
        "Key events in the window per seat (seats attribute, else subscribed quantity)."),
    KeyEventsPerActiveUser => ("key_events_per_active_user", Usage, HigherIsBetter, false,
        "Key events in the window per peak daily active user."),
    EventsPerActiveDay => ("events_per_active_day", Usage, HigherIsBetter, false,
        "Key events per active day in the window (depth of use)."),
    KeyEventsLast7d => ("key_events_last_7d", Usage, HigherIsBetter, false,
        "Key events in the last 7 days."),
    RecentActivityRatio => ("recent_activity_ratio", Usage, HigherIsBetter, false,
        "Key events in the last 7 days relative to the window's weekly average (1 = steady)."),
    ActiveDays => ("active_days", Usage, HigherIsBetter, true,
        "Days in the window with at least one key event."),
    ActiveWeeks => ("active_weeks", Usage, HigherIsBetter, false,
        "Weeks (7-day blocks back from T) in the window with at least one key event."),
    AvgDailyActiveUsers => ("avg_daily_active_users", Usage, HigherIsBetter, true,
        "Mean over the window's days of the daily active users (key events)."),
    PeakDailyActiveUsers => ("peak_daily_active_users", Usage, HigherIsBetter, false,
        "Largest daily active users count in the window (key events)."),
    ActiveUserRatio => ("active_user_ratio", Usage, HigherIsBetter, false,
        "Peak daily active users / seats (proportion of active users)."),
    AvgDauPerSeat => ("avg_dau_per_seat", Usage, HigherIsBetter, false,
        "Mean daily active users / seats."),
    DaysSinceLastActivity => ("days_since_last_activity", Usage, LowerIsBetter, false,
        "Days from the last key event in the roll-ups to T (else from the first contract, else creation)."),
    MeanGapBetweenActiveDays => ("mean_gap_between_active_days", Usage, LowerIsBetter, false,
        "Mean days between consecutive active days in the window (window length if fewer than 2)."),
    MaxInactiveStreak => ("max_inactive_streak", Usage, LowerIsBetter, false,
        "Longest run of days without key events in the window."),
    TimeSpent => ("time_spent", Usage, HigherIsBetter, true,
        "Sum of key event values in the window (e.g. session durations)."),
    TimeSpentPerActiveUser => ("time_spent_per_active_user", Usage, HigherIsBetter, false,
        "Time spent in the window per peak daily active user."),
    Breadth => ("breadth", Usage, HigherIsBetter, true,
        "Distinct key event types used in the window / number of key event types."),
    KeyEventsChangePct => ("key_events_change_pct", Usage, HigherIsBetter, false,
        "Percent change of key events vs the previous window."),
    ActiveDaysChangePct => ("active_days_change_pct", Usage, HigherIsBetter, false,
        "Percent change of active days vs the previous window."),
    ActiveUsersChangePct => ("active_users_change_pct", Usage, HigherIsBetter, false,
        "Percent change of mean daily active users vs the previous window."),
    TimeSpentChangePct => ("time_spent_change_pct", Usage, HigherIsBetter, false,
        "Percent change of time spent vs the previous window."),
    BreadthChange => ("breadth_change", Usage, HigherIsBetter, false,
        "Breadth now minus breadth in the previous window."),
    WeeklyEventsSlope => ("weekly_events_slope", Usage, HigherIsBetter, false,
        "Least-squares slope of weekly key events across the window, relative to their mean."),
    // conversations
    Interactions => ("interactions", Conversations, HigherIsBetter, false,
        "Interactions (any channel, either direction) in the window."),
    InboundInteractions => ("inbound_interactions", Conversations, HigherIsBetter, false,
        "Interactions started by the customer in the window."),
    Meetings => ("meetings", Conversations, HigherIsBetter, false,
        "Meetings and calls in the window."),
    Tickets => ("tickets", Conversations, LowerIsBetter, false,
        "Support tickets in the window."),
    DaysSinceLastContact => ("days_since_last_contact", Conversations, LowerIsBetter, false,
        "Days from the last interaction of any kind to T."),
    DaysSinceLastInbound => ("days_since_last_inbound", Conversations, LowerIsBetter, false,
        "Days from the last interaction started by the customer to T."),
    ContactsReached => ("contacts_reached", Conversations, HigherIsBetter, false,
        "Distinct contacts involved in interactions in the window."),
    ContactsReachedShare => ("contacts_reached_share", Conversations, HigherIsBetter, false,
        "Contacts reached in the window / known contacts of the account."),
    DecisionMakersInvolved => ("decision_makers_involved", Conversations, HigherIsBetter, false,
        "Distinct decision makers involved in interactions in the window."),
    ChampionsInvolved => ("champions_involved", Conversations, HigherIsBetter, false,
        "Distinct champions involved in interactions in the window."),
    MeanSentiment => ("mean_sentiment", Conversations, HigherIsBetter, false,
        "Mean sentiment (-1..1) of the window's interactions that have one."),
    NegativeInteractionShare => ("negative_interaction_share", Conversations, LowerIsBetter, false,
        "Share of the window's interactions with a negative sentiment (< 0)."),
    ResponseRate => ("response_rate", Conversations, HigherIsBetter, false,
        "Share of the window's outbound interactions with a known outcome that got a reply."),
    InteractionsChangePct => ("interactions_change_pct", Conversations, HigherIsBetter, false,
        "Percent change of interactions vs the previous window."),
    SentimentChange => ("sentiment_change", Conversations, HigherIsBetter, false,
        "Mean sentiment now minus mean sentiment in the previous window."),
    // pulse
    PulseLatest => ("pulse_latest", Pulse, HigherIsBetter, false,
        "Latest CSM pulse (1..5) at or before T."),
    PulseAgeDays => ("pulse_age_days", Pulse, LowerIsBetter, false,
        "Days since the latest CSM pulse."),
    PulseMean90d => ("pulse_mean_90d", Pulse, HigherIsBetter, false,
        "Mean CSM pulse over the 90 days up to T."),
    PulseChange => ("pulse_change", Pulse, HigherIsBetter, false,
        "Latest CSM pulse minus the one before it."),
    // contract
    Mrr => ("mrr", Contract, HigherIsBetter, false,
        "MRR of the subscriptions active at T."),
    MrrChange90dPct => ("mrr_change_90d_pct", Contract, HigherIsBetter, false,
        "Percent change of MRR vs 90 days before T (missing if the first contract is younger)."),
    AddOns => ("add_ons", Contract, HigherIsBetter, false,
        "Add-on subscriptions active at T."),
    AddOnMrrShare => ("add_on_mrr_share", Contract, HigherIsBetter, false,
        "Share of MRR at T coming from add-ons."),
    TenureDays => ("tenure_days", Contract, HigherIsBetter, false,
        "Days since the first subscription started (or the account was created)."),
    DaysToRenewal => ("days_to_renewal", Contract, HigherIsBetter, false,
        "Days from T to the earliest end of an active subscription (remaining duration)."),
    Discount => ("discount", Contract, LowerIsBetter, false,
        "MRR-weighted mean discount (fraction) of the subscriptions active at T."),
    Quantity => ("quantity", Contract, HigherIsBetter, false,
        "Total subscribed quantity (licences, units) at T."),
    ActiveSubscriptions => ("active_subscriptions", Contract, HigherIsBetter, false,
        "Subscriptions active at T."),
    BillingPeriodMonths => ("billing_period_months", Contract, HigherIsBetter, false,
        "Longest billing period (months) among the subscriptions active at T (commitment)."),
    Renewals => ("renewals", Contract, HigherIsBetter, false,
        "Subscriptions started at or before T (length of the contract history)."),
}

impl Builtin {
    /// Column of this KPI in a [`crate::KpiMatrix`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Its definition.
    pub fn def(self) -> &'static KpiDef {
        &BUILTIN_DEFS[self as usize]
    }
}

/// Number of built-in KPIs (the dynamic ones come after them).
pub const BUILTIN_COUNT: usize = BUILTIN_DEFS.len();

/// The per key event type KPIs that come after the `events_<type>` counts, one family
/// after the other, each in key event type order.
///
/// Their names put `__` between the type and the family: a slug never holds `__`, so no
/// event type, built-in, custom metric or score field can ever take one of these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventDetail {
    /// `events_<type>__share`: the type's share of the window's key events (missing when
    /// the window has none).
    Share,
    /// `events_<type>__days_since`: days from the type's last event before or on T to T (else
    /// from the first contract, else from the account's creation).
    DaysSince,
    /// `events_<type>__change_pct`: percent change of the type's events vs the previous
    /// window.
    ChangePct,
}

impl EventDetail {
    /// Every family, in column order.
    pub const ALL: [EventDetail; 3] = [
        EventDetail::Share,
        EventDetail::DaysSince,
        EventDetail::ChangePct,
    ];

    fn def(self, slug: &str, name: &str) -> KpiDef {
        let (kpi, direction, doc) = match self {
            EventDetail::Share => (
                format!("events_{slug}__share"),
                Direction::HigherIsBetter,
                format!("Share of the window's key events that are of type `{name}`."),
            ),
            EventDetail::DaysSince => (
                format!("events_{slug}__days_since"),
                Direction::LowerIsBetter,
                format!(
                    "Days from the last event of type `{name}` to T (else from the first \
                     contract, else creation)."
                ),
            ),
            EventDetail::ChangePct => (
                format!("events_{slug}__change_pct"),
                Direction::HigherIsBetter,
                format!("Percent change of `{name}` events vs the previous window."),
            ),
        };
        KpiDef {
            name: Cow::Owned(kpi),
            category: Category::Usage,
            direction,
            mode: ScoreMode::Comparative,
            trend: false,
            doc: Cow::Owned(doc),
        }
    }
}

/// A custom metric the tenant sends (ROI, credits consumed, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct CustomMetricSpec {
    /// Its name as sent; the KPI is named `custom_<slug>`.
    pub name: String,
    /// Which way is healthy (most custom metrics are "more is better").
    pub direction: Direction,
}

/// What the tenant's data needs beyond the built-ins.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CatalogueSpec {
    /// Every event type seen, by id: `event_types[id]` is the name of event type `id`
    /// (the id used in [`crate::DailyUsage::event_type`]).
    pub event_types: Vec<String>,
    /// The key event types (ids into `event_types`); `None` = every event type is key.
    pub key_event_types: Option<Vec<u32>>,
    /// Custom metrics, by id (the id used in [`crate::CustomMetricValue::metric`]).
    pub custom_metrics: Vec<CustomMetricSpec>,
    /// Custom score fields, by id (the id used in [`crate::ScoreFieldValue::field`]).
    pub score_fields: Vec<String>,
}

/// The full KPI list of a tenant: built-ins, then per key event type, custom metric and
/// custom score field.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalogue {
    kpis: Vec<KpiDef>,
    /// `key_index[event_type_id]` = position among the key event types, or `u32::MAX`.
    key_index: Vec<u32>,
    n_key: usize,
    first_custom: usize,
    n_custom: usize,
    first_field: usize,
    n_fields: usize,
}

/// Lower-case snake_case form of a free-form name: runs of anything but ASCII letters
/// and digits become one `_`.
pub fn slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

impl Catalogue {
    /// Builds the catalogue; fails if two KPIs would share a name (e.g. two custom
    /// metrics whose names slug to the same thing) or a key event type id is unknown.
    pub fn new(spec: &CatalogueSpec) -> Result<Self, ScoringError> {
        let mut kpis: Vec<KpiDef> = BUILTIN_DEFS.to_vec();
        let mut key_index = vec![u32::MAX; spec.event_types.len()];
        let keys: Vec<u32> = match &spec.key_event_types {
            Some(k) => k.clone(),
            None => (0..spec.event_types.len() as u32).collect(),
        };
        let mut n_key = 0usize;
        let mut key_names: Vec<(String, &String)> = Vec::with_capacity(keys.len());
        for &id in &keys {
            let slot =
                key_index
                    .get_mut(id as usize)
                    .ok_or_else(|| ScoringError::InvalidConfig {
                        field: "key_event_types",
                        reason: format!("event type id {id} is not in event_types"),
                    })?;
            if *slot != u32::MAX {
                continue;
            }
            *slot = n_key as u32;
            n_key += 1;
            let name = &spec.event_types[id as usize];
            let key_slug = nonempty_slug(name, "event_types")?;
            kpis.push(KpiDef {
                name: Cow::Owned(format!("events_{key_slug}")),
                category: Category::Usage,
                direction: Direction::HigherIsBetter,
                mode: ScoreMode::Comparative,
                trend: false,
                doc: Cow::Owned(format!("Events of key type `{name}` in the window.")),
            });
            key_names.push((key_slug, name));
        }
        // The per-type detail KPIs, each family in key event type order (see
        // `event_detail_kpi`): share of the window's key events, days since the type was
        // last used, percent change vs the previous window.
        for detail in EventDetail::ALL {
            for (s, name) in &key_names {
                kpis.push(detail.def(s, name));
            }
        }
        let first_custom = kpis.len();
        for m in &spec.custom_metrics {
            kpis.push(KpiDef {
                name: Cow::Owned(format!(
                    "custom_{}",
                    nonempty_slug(&m.name, "custom_metrics")?
                )),
                category: Category::Custom,
                direction: m.direction,
                mode: ScoreMode::Comparative,
                trend: false,
                doc: Cow::Owned(format!(
                    "Latest value of custom metric `{}` at or before T.",
                    m.name
                )),
            });
        }
        let first_field = kpis.len();
        for f in &spec.score_fields {
            kpis.push(KpiDef {
                name: Cow::Owned(format!("score_field_{}", nonempty_slug(f, "score_fields")?)),
                category: Category::ScoreField,
                direction: Direction::HigherIsBetter,
                mode: ScoreMode::Absolute { min: 1.0, max: 5.0 },
                trend: false,
                doc: Cow::Owned(format!(
                    "Custom score field `{f}` (1..5), scored (v - 1) / 4 x 10."
                )),
            });
        }
        let mut names: Vec<&str> = kpis.iter().map(|k| k.name.as_ref()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(ScoringError::DuplicateKpi(w[0].to_string()));
        }
        Ok(Self {
            kpis,
            key_index,
            n_key,
            first_custom,
            n_custom: spec.custom_metrics.len(),
            first_field,
            n_fields: spec.score_fields.len(),
        })
    }

    /// Only the built-in KPIs (no event types, custom metrics or score fields).
    pub fn builtin_only() -> Self {
        Self {
            kpis: BUILTIN_DEFS.to_vec(),
            key_index: Vec::new(),
            n_key: 0,
            first_custom: BUILTIN_COUNT,
            n_custom: 0,
            first_field: BUILTIN_COUNT,
            n_fields: 0,
        }
    }

    /// Every KPI in column order.
    pub fn kpis(&self) -> &[KpiDef] {
        &self.kpis
    }

    /// Number of KPIs (columns of the KPI matrix).
    pub fn len(&self) -> usize {
        self.kpis.len()
    }

    /// Always false: the built-ins are always there.
    pub fn is_empty(&self) -> bool {
        self.kpis.is_empty()
    }

    /// Column of the KPI with this name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.kpis.iter().position(|k| k.name == name)
    }

    /// Number of key event types.
    pub fn key_event_count(&self) -> usize {
        self.n_key
    }

    /// Position of event type `id` among the key event types, `None` if it is not key.
    #[inline]
    pub fn key_position(&self, event_type: u32) -> Option<usize> {
        match self.key_index.get(event_type as usize) {
            Some(&p) if p != u32::MAX => Some(p as usize),
            _ => None,
        }
    }

    /// Column of the `events_<type>` KPI of the `pos`-th key event type.
    pub fn event_kpi(&self, pos: usize) -> Option<usize> {
        (pos < self.n_key).then_some(BUILTIN_COUNT + pos)
    }

    /// Column of the `detail` KPI (share, days since, change) of the `pos`-th key event
    /// type.
    pub fn event_detail_kpi(&self, detail: EventDetail, pos: usize) -> Option<usize> {
        let family = match detail {
            EventDetail::Share => 1,
            EventDetail::DaysSince => 2,
            EventDetail::ChangePct => 3,
        };
        (pos < self.n_key).then_some(BUILTIN_COUNT + family * self.n_key + pos)
    }

    /// Column of the KPI of custom metric `id`.
    pub fn custom_metric_kpi(&self, id: u32) -> Option<usize> {
        ((id as usize) < self.n_custom).then_some(self.first_custom + id as usize)
    }

    /// Column of the KPI of custom score field `id`.
    pub fn score_field_kpi(&self, id: u32) -> Option<usize> {
        ((id as usize) < self.n_fields).then_some(self.first_field + id as usize)
    }

    /// The catalogue as a Markdown table (name, category, direction, doc), as published
    /// in docs/scoring.md.
    pub fn markdown_table(&self) -> String {
        let mut s =
            String::from("| # | name | category | direction | doc |\n|---|---|---|---|---|\n");
        for (i, k) in self.kpis.iter().enumerate() {
            let trend = if k.trend { " (trend)" } else { "" };
            let _ = writeln!(
                s,
                "| {} | `{}` | {} | {} | {}{} |",
                i + 1,
                k.name,
                k.category.as_str(),
                k.direction.as_str(),
                k.doc,
                trend
            );
        }
        s
    }
}

fn nonempty_slug(name: &str, field: &'static str) -> Result<String, ScoringError> {
    let s = slug(name);
    if s.is_empty() {
        return Err(ScoringError::InvalidConfig {
            field,
            reason: format!("name {name:?} has no letters or digits"),
        });
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_least_forty_builtins_in_every_family() {
        const { assert!(BUILTIN_COUNT >= 40) };
        for c in [
            Category::Usage,
            Category::Conversations,
            Category::Pulse,
            Category::Contract,
        ] {
            assert!(
                BUILTIN_DEFS.iter().filter(|k| k.category == c).count() >= 2,
                "{c:?}"
            );
        }
        for (i, b) in Builtin::ALL.iter().enumerate() {
            assert_eq!(b.index(), i);
        }
    }

    #[test]
    fn names_are_snake_case_and_unique() {
        let spec = CatalogueSpec {
            event_types: vec!["Log In".into(), "report.export".into(), "noise".into()],
            key_event_types: Some(vec![0, 1]),
            custom_metrics: vec![CustomMetricSpec {
                name: "ROI %".into(),
                direction: Direction::HigherIsBetter,
            }],
            score_fields: vec!["Exec sponsor".into()],
        };
        let c = Catalogue::new(&spec).unwrap();
        // 2 key types x (count, share, days since, change) + 1 custom metric + 1 field.
        assert_eq!(c.len(), BUILTIN_COUNT + 10);
        for k in c.kpis() {
            assert!(
                k.name
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_'),
                "{}",
                k.name
            );
        }
        assert_eq!(c.index_of("events_log_in"), Some(BUILTIN_COUNT));
        assert_eq!(c.index_of("events_report_export"), Some(BUILTIN_COUNT + 1));
        let detail = [
            ("events_log_in__share", EventDetail::Share, 0),
            ("events_report_export__share", EventDetail::Share, 1),
            ("events_log_in__days_since", EventDetail::DaysSince, 0),
            (
                "events_report_export__days_since",
                EventDetail::DaysSince,
                1,
            ),
            ("events_log_in__change_pct", EventDetail::ChangePct, 0),
            (
                "events_report_export__change_pct",
                EventDetail::ChangePct,
                1,
            ),
        ];
        for (i, (name, family, pos)) in detail.into_iter().enumerate() {
            assert_eq!(c.index_of(name), Some(BUILTIN_COUNT + 2 + i), "{name}");
            assert_eq!(c.event_detail_kpi(family, pos), Some(BUILTIN_COUNT + 2 + i));
            let def = &c.kpis()[BUILTIN_COUNT + 2 + i];
            assert_eq!(def.category, Category::Usage);
            let lower = family == EventDetail::DaysSince;
            assert_eq!(def.direction == Direction::LowerIsBetter, lower, "{name}");
        }
        assert_eq!(c.event_detail_kpi(EventDetail::Share, 2), None);
        assert_eq!(c.index_of("custom_roi"), Some(BUILTIN_COUNT + 8));
        assert_eq!(
            c.index_of("score_field_exec_sponsor"),
            Some(BUILTIN_COUNT + 9)
        );
        assert_eq!(c.key_position(2), None);
        assert_eq!(c.key_position(1), Some(1));
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let spec = CatalogueSpec {
            custom_metrics: vec![
                CustomMetricSpec {
                    name: "ROI".into(),
                    direction: Direction::HigherIsBetter,
                },
                CustomMetricSpec {
                    name: "roi".into(),
                    direction: Direction::HigherIsBetter,
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            Catalogue::new(&spec),
            Err(ScoringError::DuplicateKpi("custom_roi".into()))
        );
        let bad = CatalogueSpec {
            key_event_types: Some(vec![3]),
            ..Default::default()
        };
        assert!(matches!(
            Catalogue::new(&bad),
            Err(ScoringError::InvalidConfig { .. })
        ));
    }

    #[test]
    fn event_types_named_like_other_kpis_do_not_collide_with_the_detail_kpis() {
        // "last activity" gives `events_last_activity`; its days-since KPI must not be the
        // built-in `days_since_last_activity`, and "x share" must not meet x's share.
        let spec = CatalogueSpec {
            event_types: vec![
                "last activity".into(),
                "x".into(),
                "x share".into(),
                "x days since".into(),
            ],
            ..Default::default()
        };
        let c = Catalogue::new(&spec).unwrap();
        assert_eq!(c.len(), BUILTIN_COUNT + 16);
        assert_eq!(c.index_of("events_x_share"), Some(BUILTIN_COUNT + 2));
        assert_eq!(c.index_of("events_x__share"), Some(BUILTIN_COUNT + 5));
        assert_eq!(
            c.index_of("events_last_activity__days_since"),
            Some(BUILTIN_COUNT + 8)
        );
    }

    #[test]
    fn slug_examples() {
        assert_eq!(slug("  Credits -- consumed!! "), "credits_consumed");
        assert_eq!(slug("a.b.C"), "a_b_c");
        assert_eq!(slug("***"), "");
    }
}
