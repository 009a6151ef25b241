//! Plain per-account inputs of the KPI computation, shaped so the store can fill them
//! straight from its tables (daily roll-ups, never raw events).
//!
//! Days are `chrono::NaiveDate` in UTC: the store turns timestamps into UTC days. Names
//! (event types, custom metrics, score fields, webhook signals) are interned to `u32`
//! ids by the caller so the hot loops never compare strings; the ids index the
//! [`crate::CatalogueSpec`] lists.

use chrono::NaiveDate;

/// One daily roll-up row: (account, day, event type) -> count, distinct users, value sum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DailyUsage {
    /// UTC day.
    pub day: NaiveDate,
    /// Event type id (index into [`crate::CatalogueSpec::event_types`]).
    pub event_type: u32,
    /// Number of events.
    pub count: u32,
    /// Distinct users who produced them that day.
    pub distinct_users: u32,
    /// Sum of the events' values (e.g. durations); 0 when events carry no value.
    pub value_sum: f64,
}

/// Interaction channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// E-mail.
    Email,
    /// Phone or video call.
    Call,
    /// Meeting.
    Meeting,
    /// Support ticket.
    Ticket,
    /// Chat.
    Chat,
}

/// Who started an interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InteractionDirection {
    /// From the customer to the team.
    Inbound,
    /// From the team to the customer.
    Outbound,
}

/// Role of a customer contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContactRole {
    /// Ordinary user.
    User,
    /// Signs or approves the contract.
    DecisionMaker,
    /// Internal advocate of the product.
    Champion,
}

/// One conversation with the customer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interaction {
    /// UTC day.
    pub at: NaiveDate,
    /// Channel.
    pub channel: Channel,
    /// Who started it.
    pub direction: InteractionDirection,
    /// Whether an outbound interaction got a reply (`None` = unknown / not applicable).
    pub replied: Option<bool>,
    /// Contact id (interned by the caller), if known.
    pub contact: Option<u32>,
    /// The contact's role, if known.
    pub contact_role: Option<ContactRole>,
    /// Sentiment in -1..1, if known.
    pub sentiment: Option<f64>,
}

/// One CSM pulse.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pulse {
    /// UTC day.
    pub at: NaiveDate,
    /// The CSM's assessment, 1..5.
    pub value: f64,
}

/// One subscription (contract line).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Subscription {
    /// First day covered.
    pub start: NaiveDate,
    /// First day no longer covered (exclusive); `None` = open-ended.
    pub end: Option<NaiveDate>,
    /// Monthly recurring revenue.
    pub mrr: f64,
    /// Licences / units, if the product sells any.
    pub quantity: Option<f64>,
    /// Whether this line is an add-on to the main product.
    pub add_on: bool,
    /// Discount as a fraction (0.2 = 20 %).
    pub discount: f64,
    /// Billing period in months.
    pub billing_period_months: u16,
}

/// One value of a custom metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CustomMetricValue {
    /// Metric id (index into [`crate::CatalogueSpec::custom_metrics`]).
    pub metric: u32,
    /// UTC day.
    pub at: NaiveDate,
    /// Value.
    pub value: f64,
}

/// Current value of a custom score field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreFieldValue {
    /// Field id (index into [`crate::CatalogueSpec::score_fields`]).
    pub field: u32,
    /// Value 1..5.
    pub value: f64,
}

/// One webhook signal (an already interpreted value 1..5).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WebhookSignal {
    /// Signal name id (interned by the caller; only used to keep the latest per name).
    pub signal: u32,
    /// UTC day.
    pub at: NaiveDate,
    /// Value 1..5.
    pub value: f64,
}

/// Account attributes the KPIs need.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AccountAttributes {
    /// Seats (licensed users); falls back to the subscribed quantity when `None`.
    pub seats: Option<f64>,
    /// When the account was created.
    pub created_at: Option<NaiveDate>,
    /// Number of known contacts (for `contacts_reached_share`).
    pub contacts: Option<u32>,
}

/// Everything known about one account, borrowed from the caller's buffers. Slices need
/// not be sorted; data after T is ignored.
#[derive(Debug, Clone, Copy, Default)]
pub struct AccountInputs<'a> {
    /// Daily usage roll-ups (should cover `(history_windows + 1) x window` days before T).
    pub usage: &'a [DailyUsage],
    /// Interactions (at least the two windows before T, plus the last one ever).
    pub interactions: &'a [Interaction],
    /// CSM pulses.
    pub pulses: &'a [Pulse],
    /// Subscriptions.
    pub subscriptions: &'a [Subscription],
    /// Custom metric values.
    pub custom_metrics: &'a [CustomMetricValue],
    /// Custom score field values.
    pub score_fields: &'a [ScoreFieldValue],
    /// Webhook signals.
    pub webhook_signals: &'a [WebhookSignal],
    /// Attributes.
    pub attributes: AccountAttributes,
}
