//! Synthetic populations for the benchmarks and the peak-memory example (deterministic:
//! a fixed-seed SplitMix64, no external RNG crate).

#![allow(dead_code)]

use chrono::{Days, NaiveDate};
use vitals_scoring_core::*;

/// SplitMix64: small, fast, deterministic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn f(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// 8 event types (as in the socialnet sample), all key, 4 custom metrics, 3 score fields:
/// 55 built-ins + 8 x 4 per key event type (count, share, days since, change) + 4 + 3 =
/// 94 KPIs (70 before the per-type detail KPIs of 2026-12-04).
pub fn catalogue() -> Catalogue {
    catalogue_with_keys(None)
}

/// The same with only these event types key: `Some(vec![0, 1])` gives 55 + 2 x 4 + 4 + 3 =
/// 70 KPIs, the shape of the scoring target.
pub fn catalogue_with_keys(key_event_types: Option<Vec<u32>>) -> Catalogue {
    let names = [
        "like",
        "newfriend",
        "post",
        "adview",
        "dislike",
        "unfriend",
        "message",
        "reply",
    ];
    Catalogue::new(&CatalogueSpec {
        event_types: names.iter().map(|s| s.to_string()).collect(),
        key_event_types,
        custom_metrics: ["roi", "credits", "leads", "nps"]
            .iter()
            .map(|s| CustomMetricSpec {
                name: s.to_string(),
                direction: Direction::HigherIsBetter,
            })
            .collect(),
        score_fields: vec!["sponsor".into(), "adoption".into(), "fit".into()],
    })
    .expect("valid catalogue")
}

/// A KPI matrix shaped like real KPIs: counts (many ties at small values), ratios,
/// ~8 % missing, score fields in 1..5.
pub fn matrix(n: usize, cat: &Catalogue, seed: u64) -> KpiMatrix {
    let k = cat.len();
    let mut rng = Rng::new(seed);
    let mut values = Vec::with_capacity(n * k);
    for _ in 0..n {
        let activity = rng.f();
        for def in cat.kpis() {
            let v = if rng.f() < 0.08 {
                f64::NAN
            } else {
                match def.mode {
                    ScoreMode::Absolute { .. } => (1 + rng.below(5)) as f64,
                    ScoreMode::Comparative => {
                        let base = activity * 50.0 + rng.f() * 50.0;
                        if rng.f() < 0.5 { base.round() } else { base }
                    }
                }
            };
            values.push(v);
        }
    }
    KpiMatrix::from_row_major(n, k, values).expect("sizes match")
}

/// 10 profiles with different category weights and learned-looking KPI weights.
pub fn profiles(cat: &Catalogue, seed: u64) -> Vec<ProfileConfig> {
    let mut rng = Rng::new(seed);
    (0..10)
        .map(|_| ProfileConfig {
            category_weights: CategoryWeights {
                usage: 1.0 + rng.f() * 3.0,
                conversations: rng.f() * 2.0,
                pulse: rng.f() * 2.0,
                contract: rng.f() * 2.0,
                custom: rng.f(),
            },
            kpi_weights: Some(
                cat.kpis()
                    .iter()
                    .map(|_| if rng.f() < 0.1 { 0.0 } else { rng.f() })
                    .collect(),
            ),
            min_population: 10,
            trend_weight: 1.0,
        })
        .collect()
}

pub fn signals(n: usize, seed: u64) -> Vec<AccountSignals> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| AccountSignals {
            momentum: (rng.f() < 0.8).then(|| rng.f() * 2.0 - 1.0),
            webhook: (rng.f() < 0.2).then(|| webhook_points((1 + rng.below(5)) as f64)),
        })
        .collect()
}

/// What scoring a synthetic population of `n` accounts needs besides the catalogue and
/// the profiles: the KPI matrix (seed 42), account i in profile i mod 10, and the signals
/// (seed 3).
pub struct Scored {
    pub matrix: KpiMatrix,
    pub profile_of: Vec<u32>,
    pub signals: Vec<AccountSignals>,
}

impl Scored {
    pub fn new(n: usize, cat: &Catalogue) -> Self {
        Self {
            matrix: matrix(n, cat, 42),
            profile_of: (0..n as u32).map(|i| i % 10).collect(),
            signals: signals(n, 3),
        }
    }

    pub fn input<'a>(
        &'a self,
        cat: &'a Catalogue,
        profiles: &'a [ProfileConfig],
    ) -> PopulationInput<'a> {
        PopulationInput {
            kpis: cat.kpis(),
            matrix: &self.matrix,
            profile_of: &self.profile_of,
            profiles,
            signals: Some(&self.signals),
        }
    }
}

/// Flat storage of every account's inputs; [`Population::inputs`] slices it per account.
pub struct Population {
    pub usage: Vec<DailyUsage>,
    pub interactions: Vec<Interaction>,
    pub pulses: Vec<Pulse>,
    pub subs: Vec<Subscription>,
    pub custom: Vec<CustomMetricValue>,
    pub fields: Vec<ScoreFieldValue>,
    pub signals: Vec<WebhookSignal>,
    /// Per account: end offsets into each vector.
    pub ends: Vec<[usize; 7]>,
    pub attrs: Vec<AccountAttributes>,
}

pub const AS_OF: (i32, u32, u32) = (2024, 3, 31);

pub fn as_of() -> NaiveDate {
    NaiveDate::from_ymd_opt(AS_OF.0, AS_OF.1, AS_OF.2).expect("valid date")
}

/// `n` accounts with `days` days of roll-ups each (8 event types; an account is active
/// on a day with its own probability, and uses each type on half of its active days).
pub fn population(n: usize, days: u64, seed: u64) -> Population {
    let t = as_of();
    let mut rng = Rng::new(seed);
    let mut p = Population {
        usage: Vec::with_capacity(n * days as usize * 2),
        interactions: Vec::new(),
        pulses: Vec::new(),
        subs: Vec::new(),
        custom: Vec::new(),
        fields: Vec::new(),
        signals: Vec::new(),
        ends: Vec::with_capacity(n),
        attrs: Vec::with_capacity(n),
    };
    let day = |back: u64| t.checked_sub_days(Days::new(back)).expect("date in range");
    for _ in 0..n {
        let p_active = 0.1 + 0.8 * rng.f();
        for back in 0..days {
            if rng.f() >= p_active {
                continue;
            }
            for et in 0..8u32 {
                if rng.f() < 0.5 {
                    p.usage.push(DailyUsage {
                        day: day(back),
                        event_type: et,
                        count: 1 + rng.below(20) as u32,
                        distinct_users: 1 + rng.below(5) as u32,
                        value_sum: rng.f() * 600.0,
                    });
                }
            }
        }
        for _ in 0..rng.below(12) {
            p.interactions.push(Interaction {
                at: day(rng.below(days)),
                channel: [
                    Channel::Email,
                    Channel::Call,
                    Channel::Meeting,
                    Channel::Ticket,
                    Channel::Chat,
                ][rng.below(5) as usize],
                direction: if rng.f() < 0.5 {
                    InteractionDirection::Inbound
                } else {
                    InteractionDirection::Outbound
                },
                replied: (rng.f() < 0.5).then(|| rng.f() < 0.6),
                contact: Some(rng.below(8) as u32),
                contact_role: Some(
                    [
                        ContactRole::User,
                        ContactRole::DecisionMaker,
                        ContactRole::Champion,
                    ][rng.below(3) as usize],
                ),
                sentiment: (rng.f() < 0.7).then(|| rng.f() * 2.0 - 1.0),
            });
        }
        for _ in 0..rng.below(4) {
            p.pulses.push(Pulse {
                at: day(rng.below(days)),
                value: (1 + rng.below(5)) as f64,
            });
        }
        let start = day(30 + rng.below(700));
        p.subs.push(Subscription {
            start,
            end: Some(
                t.checked_add_days(Days::new(1 + rng.below(300)))
                    .expect("date in range"),
            ),
            mrr: 50.0 + rng.f() * 1000.0,
            quantity: Some((1 + rng.below(50)) as f64),
            add_on: false,
            discount: if rng.f() < 0.3 { 0.1 } else { 0.0 },
            billing_period_months: [1, 12][rng.below(2) as usize],
        });
        if rng.f() < 0.3 {
            p.subs.push(Subscription {
                start: day(rng.below(200)),
                end: None,
                mrr: 20.0 + rng.f() * 100.0,
                quantity: None,
                add_on: true,
                discount: 0.0,
                billing_period_months: 1,
            });
        }
        for m in 0..4u32 {
            p.custom.push(CustomMetricValue {
                metric: m,
                at: day(rng.below(days)),
                value: rng.f() * 100.0,
            });
        }
        p.fields.push(ScoreFieldValue {
            field: rng.below(3) as u32,
            value: (1 + rng.below(5)) as f64,
        });
        if rng.f() < 0.2 {
            p.signals.push(WebhookSignal {
                signal: 0,
                at: day(rng.below(28)),
                value: (1 + rng.below(5)) as f64,
            });
        }
        p.ends.push([
            p.usage.len(),
            p.interactions.len(),
            p.pulses.len(),
            p.subs.len(),
            p.custom.len(),
            p.fields.len(),
            p.signals.len(),
        ]);
        p.attrs.push(AccountAttributes {
            seats: (rng.f() < 0.7).then(|| (1 + rng.below(100)) as f64),
            created_at: Some(start),
            contacts: Some(8),
        });
    }
    p
}

impl Population {
    pub fn inputs(&self) -> Vec<AccountInputs<'_>> {
        let mut prev = [0usize; 7];
        self.ends
            .iter()
            .zip(&self.attrs)
            .map(|(e, a)| {
                let r = |j: usize| prev[j]..e[j];
                let inp = AccountInputs {
                    usage: &self.usage[r(0)],
                    interactions: &self.interactions[r(1)],
                    pulses: &self.pulses[r(2)],
                    subscriptions: &self.subs[r(3)],
                    custom_metrics: &self.custom[r(4)],
                    score_fields: &self.fields[r(5)],
                    webhook_signals: &self.signals[r(6)],
                    attributes: *a,
                };
                prev = *e;
                inp
            })
            .collect()
    }
}
