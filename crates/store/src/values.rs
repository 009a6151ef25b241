//! The values the store keeps as text, as enums: each has `as_str` (the stored text) and
//! `FromStr` (the stored text back; anything else is refused with [`UnknownValue`]).
//! The stored texts never change, so databases written by earlier versions read alike.
//! Use these instead of string literals when writing or matching a stored value.

use std::fmt;
use std::str::FromStr;

/// A stored text that is not one of its column's values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownValue {
    /// What was parsed (e.g. "band").
    pub what: &'static str,
    /// The text found.
    pub value: String,
}

macro_rules! stored_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The stored text.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(UnknownValue { what: $what, value: s.to_string() }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

stored_enum!(
    /// `score_snapshots.band` / `score_latest.band` and `global_band` (empty text: none).
    Band, "band" {
        /// Below the yellow threshold.
        Red => "red",
        /// Between the thresholds.
        Yellow => "yellow",
        /// At or above the green threshold.
        Green => "green",
    }
);

stored_enum!(
    /// `accounts.status`.
    AccountStatus, "account status" {
        /// A paying customer.
        Active => "active",
        /// On trial.
        Trial => "trial",
        /// Gone.
        Churned => "churned",
        /// Created implicitly by data naming an unknown account id.
        Unassigned => "unassigned",
    }
);

stored_enum!(
    /// `contacts.role`.
    ContactRole, "contact role" {
        /// A user of the product.
        User => "user",
        /// Signs or decides.
        DecisionMaker => "decision_maker",
        /// Advocates internally.
        Champion => "champion",
    }
);

stored_enum!(
    /// `interactions.channel`.
    Channel, "channel" {
        /// Email.
        Email => "email",
        /// Phone call.
        Call => "call",
        /// Meeting.
        Meeting => "meeting",
        /// Support ticket.
        Ticket => "ticket",
        /// Chat.
        Chat => "chat",
    }
);

stored_enum!(
    /// `interactions.direction`.
    InteractionDirection, "interaction direction" {
        /// From the customer.
        Inbound => "inbound",
        /// To the customer.
        Outbound => "outbound",
    }
);

stored_enum!(
    /// `custom_metric_definitions.direction`.
    MetricDirection, "metric direction" {
        /// More is healthier.
        HigherIsBetter => "higher_is_better",
        /// Less is healthier.
        LowerIsBetter => "lower_is_better",
    }
);

stored_enum!(
    /// The impact of a KPI in a profile (`health_profiles.kpis`).
    Impact, "impact" {
        /// Weighs little.
        Low => "low",
        /// The default.
        Medium => "medium",
        /// Weighs most.
        High => "high",
    }
);

stored_enum!(
    /// `outcomes.kind`.
    OutcomeKind, "outcome kind" {
        /// The account churned.
        Churned => "churned",
        /// The account renewed.
        Renewed => "renewed",
        /// The account went inactive.
        Inactive => "inactive",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: FromStr<Err = UnknownValue> + Copy + PartialEq + fmt::Debug>(
        all: &[T],
        text: impl Fn(T) -> &'static str,
    ) {
        for &v in all {
            assert_eq!(text(v).parse::<T>().unwrap(), v);
        }
        assert!("no such value".parse::<T>().is_err());
    }

    #[test]
    fn stored_texts_round_trip_and_do_not_change() {
        round_trip(Band::ALL, Band::as_str);
        round_trip(AccountStatus::ALL, AccountStatus::as_str);
        round_trip(ContactRole::ALL, ContactRole::as_str);
        round_trip(Channel::ALL, Channel::as_str);
        round_trip(InteractionDirection::ALL, InteractionDirection::as_str);
        round_trip(MetricDirection::ALL, MetricDirection::as_str);
        round_trip(Impact::ALL, Impact::as_str);
        round_trip(OutcomeKind::ALL, OutcomeKind::as_str);
        // The texts of existing databases.
        let texts: Vec<&str> = [
            Band::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
            AccountStatus::ALL.iter().map(|v| v.as_str()).collect(),
            OutcomeKind::ALL.iter().map(|v| v.as_str()).collect(),
        ]
        .concat();
        assert_eq!(
            texts,
            [
                "red",
                "yellow",
                "green",
                "active",
                "trial",
                "churned",
                "unassigned",
                "churned",
                "renewed",
                "inactive"
            ]
        );
        assert_eq!(
            "purple".parse::<Band>().unwrap_err().to_string(),
            "unknown band \"purple\""
        );
        // The store's own SQL names this text.
        assert_eq!(MetricDirection::LowerIsBetter.as_str(), "lower_is_better");
        // scoring-core's bands are stored by their text.
        for b in [
            vitals_scoring_core::Band::Red,
            vitals_scoring_core::Band::Yellow,
            vitals_scoring_core::Band::Green,
        ] {
            assert_eq!(b.as_str().parse::<Band>().unwrap().as_str(), b.as_str());
        }
    }
}
