//! From the store's history to KPI features: scoring-core computes every KPI of every
//! account as of a date (from the daily roll-ups and the other inputs) and ranks them
//! within each health profile; the learner's features are those peer percentiles and the
//! KPIs' log-scaled values (learn-core's [`FeatureLayout`]).
//!
//! No leakage: for an observation date `d`, KPIs are computed as of the day before `d`
//! (scoring-core's window `(T - W, T]` with `T = d - 1`, and it ignores anything dated
//! after `T`), so the features only see what happened strictly before `d`. The peers of
//! an account at `d` are the accounts active at `d` (created, not churned).

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{Days, Months, NaiveDate};
use vitals_learn_core::{
    Direction as LearnDirection, FeatureLayout, FeatureTransform, KpiSpec, Outcome, OutcomeKind,
};
use vitals_scoring_core::{
    AccountAttributes, AccountInputs, Catalogue, CatalogueSpec, Category, CategoryWeights, Channel,
    ContactRole, CustomMetricValue, DailyUsage, Direction, Interaction, InteractionDirection,
    KpiBatch, KpiConfig, PopulationInput, PopulationScores, ProfileConfig, Pulse, ScoreOptions,
    Subscription, WebhookSignal, WeightsMode, compute_kpis, score_population,
};
use vitals_store::inputs::decode;
use vitals_store::learner::History;

use crate::error::LearnerError;

/// A KPI percentile that is missing (the KPI does not apply to the account) is fed to the
/// model as the median peer, so it neither raises nor lowers the risk.
pub const MISSING_PERCENTILE: f64 = 0.5;

/// An account as the learner sees it.
#[derive(Debug, Clone)]
pub struct Account {
    /// The customer's id.
    pub id: String,
    /// Index into [`Population::profiles`].
    pub profile: usize,
    /// First day with data (creation, first roll-up or first contract, whichever first).
    pub start: NaiveDate,
    /// Outcomes, oldest first.
    pub outcomes: Vec<Outcome>,
}

impl Account {
    /// Whether the account is a customer at `d`: started before it and not churned at it
    /// (its last outcome at or before `d` is not a churn).
    pub fn active_at(&self, d: NaiveDate) -> bool {
        self.start < d
            && self
                .outcomes
                .iter()
                .filter(|o| o.at <= d)
                .max_by_key(|o| o.at)
                .is_none_or(|o| o.kind != OutcomeKind::Churned)
    }
}

/// A health profile as the learner sees it.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Its id; `None` for the accounts no profile holds (compared with each other).
    pub id: Option<String>,
    /// How scoring-core scores its members (uniform KPI weights; its own category
    /// weights).
    pub config: ProfileConfig,
    /// How the scoring service chooses its category weights (its `weights_mode`).
    pub weights_mode: WeightsMode,
}

#[derive(Debug, Default, Clone)]
struct OwnedInputs {
    usage: Vec<DailyUsage>,
    interactions: Vec<Interaction>,
    pulses: Vec<Pulse>,
    subscriptions: Vec<Subscription>,
    custom_metrics: Vec<CustomMetricValue>,
    webhook_signals: Vec<WebhookSignal>,
    attributes: AccountAttributes,
}

impl OwnedInputs {
    /// Sorts every dated input by date, so that [`OwnedInputs::view_at`] can cut prefixes.
    fn sort(&mut self) {
        self.usage.sort_by_key(|u| u.day);
        self.interactions.sort_by_key(|x| x.at);
        self.pulses.sort_by_key(|p| p.at);
        self.subscriptions.sort_by_key(|s| s.start);
        self.custom_metrics.sort_by_key(|m| m.at);
        self.webhook_signals.sort_by_key(|w| w.at);
    }

    /// The inputs as they were on file at the end of day `t`: nothing dated after `t`.
    /// Scoring-core already ignores most later data, but not everything: e.g. it extends
    /// the renewal date through subscriptions booked in advance, and a subscription row
    /// starting after `t` was not booked at `t` in a history (it would leak the renewal).
    fn view_at(&self, t: NaiveDate) -> AccountInputs<'_> {
        AccountInputs {
            usage: &self.usage[..self.usage.partition_point(|u| u.day <= t)],
            interactions: &self.interactions[..self.interactions.partition_point(|x| x.at <= t)],
            pulses: &self.pulses[..self.pulses.partition_point(|p| p.at <= t)],
            subscriptions: &self.subscriptions
                [..self.subscriptions.partition_point(|s| s.start <= t)],
            custom_metrics: &self.custom_metrics
                [..self.custom_metrics.partition_point(|m| m.at <= t)],
            score_fields: &[],
            webhook_signals: &self.webhook_signals
                [..self.webhook_signals.partition_point(|w| w.at <= t)],
            attributes: self.attributes,
        }
    }
}

/// Every account's inputs, ready for KPI computation at any date.
#[derive(Debug)]
pub struct Population {
    /// The KPI catalogue (built-ins, key event types, custom metrics; custom score fields
    /// are left out: only their current value is stored, which would leak the future
    /// into past observations).
    pub catalogue: Catalogue,
    /// The accounts, by id order.
    pub accounts: Vec<Account>,
    /// Account index by id.
    pub index: HashMap<String, usize>,
    /// The profiles; the last one holds the accounts without a (known) profile.
    pub profiles: Vec<Profile>,
    inputs: Vec<OwnedInputs>,
    kpi_config: KpiConfig,
    /// Earliest day of data.
    pub data_start: Option<NaiveDate>,
}

/// Days after a subscription's end within which a new one counts as its renewal (the
/// same grace as `vitals load`'s churn rule).
pub const RENEWAL_GRACE_DAYS: u64 = 7;

/// One renewal date of an account: the end of a billing period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewal {
    /// Start of the subscription (or billing period) that ends there: on file from then.
    pub period_start: NaiveDate,
    /// The renewal date (the period's exclusive end).
    pub at: NaiveDate,
    /// Whether what happened there is on file: a next subscription starts within
    /// [`RENEWAL_GRACE_DAYS`], or an open-ended subscription runs past it. When not (and
    /// no churn is recorded), the account may have churned unrecorded.
    pub renewed_on_file: bool,
}

/// KPIs and peer percentiles of the active accounts at one observation date.
#[derive(Debug)]
pub struct Snapshot {
    /// Population index of each row.
    pub rows: Vec<usize>,
    /// Row of each population index present.
    pub row_of: HashMap<usize, usize>,
    /// Profile index of each row.
    pub profile_of: Vec<u32>,
    /// KPI values and signals.
    pub batch: KpiBatch,
    /// Scores with uniform KPI weights (percentiles, category scores, health score).
    pub scores: PopulationScores,
}

fn category_weights(json: &serde_json::Value) -> CategoryWeights {
    let get = |k: &str| {
        json.get(k)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0)
    };
    let w = CategoryWeights {
        usage: get("usage"),
        conversations: get("conversations"),
        pulse: get("pulse"),
        contract: get("contract"),
        custom: get("custom_metrics"),
    };
    if w.as_array().iter().all(|v| !(v.is_finite() && *v > 0.0)) {
        CategoryWeights::default()
    } else {
        w
    }
}

/// The KPI catalogue's spec: every event type (sorted, as the store lists them), the key
/// ones (`None`: every type is key), the custom metrics (sorted, deduplicated) with their
/// declared directions; the store's one spec assembly, with no score fields.
pub fn catalogue_spec(
    event_types: &[String],
    key_event_types: Option<&HashSet<String>>,
    metric_names: &[&str],
    lower_is_better: &HashSet<String>,
) -> CatalogueSpec {
    decode::catalogue_spec(
        event_types,
        key_event_types,
        metric_names,
        lower_is_better,
        Vec::new(),
    )
}

/// The interactions of `history` into `inputs`, their contacts interned per account with
/// their roles (for the conversation KPIs); returns the number of contacts per account.
fn add_interactions<'h>(
    history: &'h History,
    index: &HashMap<String, usize>,
    inputs: &mut [OwnedInputs],
    seen: &mut impl FnMut(NaiveDate),
) -> HashMap<&'h str, u32> {
    // Contacts: interned per account, with their roles, for the conversation KPIs.
    let mut contact_ids: HashMap<(&str, &str), (u32, Option<ContactRole>)> = HashMap::new();
    let mut contacts_per_account: HashMap<&str, u32> = HashMap::new();
    for c in &history.contacts {
        let n = contacts_per_account
            .entry(c.account_id.as_str())
            .or_default();
        let role = decode::role(&c.role);
        contact_ids.insert((c.account_id.as_str(), c.id.as_str()), (*n, role));
        *n += 1;
    }
    for x in &history.interactions {
        let Some(&i) = index.get(&x.account_id) else {
            continue;
        };
        let channel = decode::channel(&x.channel).unwrap_or(Channel::Chat);
        let direction = decode::direction(&x.direction);
        let contact = x
            .contact_id
            .as_deref()
            .and_then(|c| contact_ids.get(&(x.account_id.as_str(), c)).copied());
        let at = x.occurred_at.date_naive();
        seen(at);
        inputs[i].interactions.push(Interaction {
            at,
            channel,
            direction,
            replied: (direction == InteractionDirection::Outbound).then_some(x.replied),
            contact: contact.map(|(id, _)| id),
            contact_role: contact.and_then(|(_, r)| r),
            sentiment: x.sentiment,
        });
    }
    contacts_per_account
}

/// The catalogue of `history` (its event types, key types and custom metrics) and the
/// id of each custom metric name (sorted, deduplicated).
fn history_catalogue(history: &History) -> Result<(Catalogue, HashMap<&str, u32>), LearnerError> {
    let mut metric_names: Vec<&str> = history
        .custom_metrics
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    metric_names.sort_unstable();
    metric_names.dedup();
    let metric_id: HashMap<&str, u32> = metric_names
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, i as u32))
        .collect();
    let spec = catalogue_spec(
        &history.event_types,
        history.key_event_types.as_ref(),
        &metric_names,
        &history.lower_is_better_metrics,
    );
    let catalogue = Catalogue::new(&spec).map_err(|e| LearnerError::Internal(e.to_string()))?;
    Ok((catalogue, metric_id))
}

/// The stored profiles, then the unassigned one (last), and the index of each stored id.
fn history_profiles(history: &History) -> (Vec<Profile>, HashMap<&str, usize>) {
    let mut profiles: Vec<Profile> = history
        .profiles
        .iter()
        .map(|p| Profile {
            id: Some(p.id.clone()),
            config: ProfileConfig {
                category_weights: category_weights(&p.weights),
                min_population: usize::try_from(p.min_population.max(1)).unwrap_or(1),
                ..ProfileConfig::default()
            },
            weights_mode: WeightsMode::from_name(&p.weights_mode),
        })
        .collect();
    profiles.push(Profile {
        id: None,
        config: ProfileConfig::default(),
        weights_mode: WeightsMode::Manual,
    });
    let profile_index: HashMap<&str, usize> = history
        .profiles
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.as_str(), i))
        .collect();
    (profiles, profile_index)
}

/// The daily usage of `history` into `inputs`; an account starts no later than its first
/// usage day.
fn add_usage(
    history: &History,
    index: &HashMap<String, usize>,
    inputs: &mut [OwnedInputs],
    starts: &mut [NaiveDate],
    seen: &mut impl FnMut(NaiveDate),
) {
    let type_id: HashMap<&str, u32> = history
        .event_types
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i as u32))
        .collect();
    for u in &history.usage {
        let (Some(&i), Some(&t)) = (index.get(&u.account_id), type_id.get(u.event_type.as_str()))
        else {
            continue;
        };
        starts[i] = starts[i].min(u.day);
        seen(u.day);
        inputs[i].usage.push(DailyUsage {
            day: u.day,
            event_type: t,
            count: decode::clamp_u32(u.count),
            distinct_users: decode::clamp_u32(u.distinct_users),
            value_sum: u.value_sum,
        });
    }
    // The store's read: per account, its event type ids to ours.
    let remap: Vec<Option<u32>> = history
        .usage_event_types
        .iter()
        .map(|n| type_id.get(n.as_str()).copied())
        .collect();
    for (id, rows) in &history.usage_by_account {
        let Some(&i) = index.get(id) else {
            continue;
        };
        for u in rows {
            let Some(t) = remap.get(u.event_type as usize).copied().flatten() else {
                continue;
            };
            starts[i] = starts[i].min(u.day);
            seen(u.day);
            inputs[i].usage.push(DailyUsage {
                event_type: t,
                ..*u
            });
        }
    }
}

/// The subscriptions of `history` into `inputs`; an account starts no later than its
/// first subscription.
fn add_subscriptions(
    history: &History,
    index: &HashMap<String, usize>,
    inputs: &mut [OwnedInputs],
    starts: &mut [NaiveDate],
    seen: &mut impl FnMut(NaiveDate),
) {
    for s in &history.subscriptions {
        let Some(&i) = index.get(&s.account_id) else {
            continue;
        };
        let start = s.starts_at.date_naive();
        starts[i] = starts[i].min(start);
        seen(start);
        inputs[i].subscriptions.push(Subscription {
            start,
            end: s.ends_at.map(|e| e.date_naive()),
            mrr: s.mrr,
            quantity: s.quantity,
            add_on: s.is_addon,
            discount: s.discount,
            billing_period_months: u16::try_from(s.bill_period_months.max(0)).unwrap_or(u16::MAX),
        });
    }
}

/// The pulses, custom metric values (ids from `metric_id`) and webhook signals (ids in
/// order of first appearance) of `history` into `inputs`.
fn add_measures(
    history: &History,
    index: &HashMap<String, usize>,
    metric_id: &HashMap<&str, u32>,
    inputs: &mut [OwnedInputs],
) {
    for p in &history.pulses {
        if let Some(&i) = index.get(&p.account_id) {
            inputs[i].pulses.push(Pulse {
                at: p.at.date_naive(),
                value: f64::from(p.value),
            });
        }
    }
    for m in &history.custom_metrics {
        if let (Some(&i), Some(&id)) = (index.get(&m.account_id), metric_id.get(m.name.as_str())) {
            inputs[i].custom_metrics.push(CustomMetricValue {
                metric: id,
                at: m.at.date_naive(),
                value: m.value,
            });
        }
    }
    let mut signal_ids: HashMap<&str, u32> = HashMap::new();
    for w in &history.webhook_signals {
        let next = signal_ids.len() as u32;
        let id = *signal_ids.entry(w.name.as_str()).or_insert(next);
        if let Some(&i) = index.get(&w.account_id) {
            inputs[i].webhook_signals.push(WebhookSignal {
                signal: id,
                at: w.at.date_naive(),
                value: f64::from(w.value),
            });
        }
    }
}

/// How the accounts of a history are put together once their inputs are read.
struct AccountParts<'h> {
    starts: Vec<NaiveDate>,
    contacts_per_account: HashMap<&'h str, u32>,
    profile_index: HashMap<&'h str, usize>,
    unassigned: usize,
}

/// The accounts of `history` with their outcomes (sorted by date), and the attributes of
/// their inputs.
fn history_accounts(
    history: &History,
    outcomes: &HashMap<String, Vec<Outcome>>,
    parts: &AccountParts<'_>,
    inputs: &mut [OwnedInputs],
) -> Vec<Account> {
    let mut accounts = Vec::with_capacity(history.accounts.len());
    for (i, a) in history.accounts.iter().enumerate() {
        inputs[i].attributes = AccountAttributes {
            seats: decode::seats(&a.attributes),
            created_at: Some(parts.starts[i]),
            contacts: parts.contacts_per_account.get(a.id.as_str()).copied(),
        };
        let mut outs = outcomes.get(&a.id).cloned().unwrap_or_default();
        outs.sort_by_key(|o| o.at);
        accounts.push(Account {
            id: a.id.clone(),
            profile: a
                .profile_id
                .as_deref()
                .and_then(|p| parts.profile_index.get(p).copied())
                .unwrap_or(parts.unassigned),
            start: parts.starts[i],
            outcomes: outs,
        });
    }
    accounts
}

impl Population {
    /// The column of each KPI of the catalogue in a [`Snapshot`], by KPI name.
    pub fn kpi_columns(&self) -> HashMap<&str, usize> {
        self.catalogue
            .kpis()
            .iter()
            .enumerate()
            .map(|(i, k)| (k.name.as_ref(), i))
            .collect()
    }

    /// Turns the stored history and outcomes into per-account inputs.
    pub fn build(
        history: &History,
        outcomes: &HashMap<String, Vec<Outcome>>,
    ) -> Result<Self, LearnerError> {
        let (catalogue, metric_id) = history_catalogue(history)?;
        let (profiles, profile_index) = history_profiles(history);
        let unassigned = profiles.len() - 1;
        let index: HashMap<String, usize> = history
            .accounts
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.clone(), i))
            .collect();
        let mut inputs = vec![OwnedInputs::default(); history.accounts.len()];
        let mut starts: Vec<NaiveDate> = history
            .accounts
            .iter()
            .map(|a| a.created_at.date_naive())
            .collect();
        let mut data_start: Option<NaiveDate> = None;
        let mut seen = |d: NaiveDate| {
            data_start = Some(data_start.map_or(d, |s| s.min(d)));
        };
        add_usage(history, &index, &mut inputs, &mut starts, &mut seen);
        let contacts_per_account = add_interactions(history, &index, &mut inputs, &mut seen);
        add_subscriptions(history, &index, &mut inputs, &mut starts, &mut seen);
        add_measures(history, &index, &metric_id, &mut inputs);
        for inp in &mut inputs {
            inp.sort();
        }
        let parts = AccountParts {
            starts,
            contacts_per_account,
            profile_index,
            unassigned,
        };
        let accounts = history_accounts(history, outcomes, &parts, &mut inputs);
        Ok(Self {
            catalogue,
            accounts,
            index,
            profiles,
            inputs,
            kpi_config: KpiConfig {
                data_start,
                ..KpiConfig::default()
            },
            data_start,
        })
    }

    /// Account `i`'s renewal dates up to `until` (oldest first, one per date): the end of
    /// each of its subscriptions (add-ons left out) and, for an open-ended one, the end of
    /// each of its billing periods. Empty when it has no subscription with a schedule.
    pub fn renewals(&self, i: usize, until: NaiveDate) -> Vec<Renewal> {
        let subs: Vec<&Subscription> = self.inputs[i]
            .subscriptions
            .iter()
            .filter(|s| !s.add_on)
            .collect();
        let renewed_by_next = |at: NaiveDate| {
            let grace = at.checked_add_days(Days::new(RENEWAL_GRACE_DAYS));
            subs.iter()
                .any(|s| s.start >= at && grace.is_none_or(|g| s.start <= g))
        };
        let mut out = Vec::new();
        for s in &subs {
            match s.end {
                Some(at) if at > s.start && at <= until => out.push(Renewal {
                    period_start: s.start,
                    at,
                    renewed_on_file: renewed_by_next(at),
                }),
                Some(_) => {}
                None if s.billing_period_months > 0 => {
                    let months = u32::from(s.billing_period_months);
                    let mut period_start = s.start;
                    for k in 1u32.. {
                        let Some(at) = s.start.checked_add_months(Months::new(k * months)) else {
                            break;
                        };
                        if at > until {
                            break;
                        }
                        out.push(Renewal {
                            period_start,
                            at,
                            renewed_on_file: true,
                        });
                        period_start = at;
                    }
                }
                None => {}
            }
        }
        out.sort_by_key(|r| (r.at, std::cmp::Reverse(r.renewed_on_file)));
        out.dedup_by_key(|r| r.at);
        out
    }

    /// KPI window in days.
    pub fn window_days(&self) -> u32 {
        self.kpi_config.window_days
    }

    /// Category of each KPI column, as used by the weights (score fields never occur).
    pub fn kpi_category(&self, k: usize) -> Category {
        self.catalogue.kpis()[k].category
    }

    /// KPIs and uniform-weight scores at observation date `d` of the accounts active at
    /// `d` plus `extra` (population indices, e.g. accounts asked for explicitly).
    pub fn snapshot(&self, d: NaiveDate, extra: &[usize]) -> Result<Snapshot, LearnerError> {
        let mut rows: Vec<usize> = (0..self.accounts.len())
            .filter(|&i| self.accounts[i].active_at(d))
            .collect();
        for &e in extra {
            if !rows.contains(&e) {
                rows.push(e);
            }
        }
        let row_of: HashMap<usize, usize> = rows.iter().enumerate().map(|(r, &i)| (i, r)).collect();
        let profile_of: Vec<u32> = rows
            .iter()
            .map(|&i| self.accounts[i].profile as u32)
            .collect();
        let as_of = d
            .checked_sub_days(Days::new(1))
            .ok_or_else(|| LearnerError::Internal(format!("no day before {d}")))?;
        let views: Vec<AccountInputs<'_>> = rows
            .iter()
            .map(|&i| self.inputs[i].view_at(as_of))
            .collect();
        let batch = compute_kpis(&self.catalogue, &self.kpi_config, as_of, &views)
            .map_err(|e| LearnerError::Internal(e.to_string()))?;
        let configs: Vec<ProfileConfig> = self.profiles.iter().map(|p| p.config.clone()).collect();
        let scores = self.score(&batch, &profile_of, &configs)?;
        Ok(Snapshot {
            rows,
            row_of,
            profile_of,
            batch,
            scores,
        })
    }

    fn score(
        &self,
        batch: &KpiBatch,
        profile_of: &[u32],
        configs: &[ProfileConfig],
    ) -> Result<PopulationScores, LearnerError> {
        score_population(
            &PopulationInput {
                kpis: self.catalogue.kpis(),
                matrix: &batch.matrix,
                profile_of,
                profiles: configs,
                signals: Some(&batch.signals),
            },
            &ScoreOptions::default(),
        )
        .map_err(|e| LearnerError::Internal(e.to_string()))
    }

    /// Health scores of a snapshot's rows with the given KPI weights (catalogue order,
    /// within-category) applied in every profile, and with the category weights the
    /// scoring service would use given the `suggested` ones (each profile's weights mode:
    /// [`CategoryWeights::chosen`]); each profile's own without a suggestion.
    pub fn rescore(
        &self,
        snap: &Rescorable,
        kpi_weights: &[f64],
        suggested: Option<&CategoryWeights>,
    ) -> Result<Vec<f64>, LearnerError> {
        let configs: Vec<ProfileConfig> = self
            .profiles
            .iter()
            .map(|p| ProfileConfig {
                kpi_weights: Some(kpi_weights.to_vec()),
                // The accounts no profile holds have no weights of their own: scoring gives
                // them the suggestion.
                category_weights: match suggested {
                    Some(s) => CategoryWeights::chosen(
                        p.weights_mode,
                        p.id.is_some().then_some(&p.config.category_weights),
                        Some(s),
                    ),
                    None => p.config.category_weights,
                },
                ..p.config.clone()
            })
            .collect();
        let scores = self.score(&snap.batch, &snap.profile_of, &configs)?;
        Ok(scores.results().map(|s| s.score.unwrap_or(5.0)).collect())
    }

    /// Learn-core KPI specs in catalogue order, with each KPI's declared direction (the
    /// percentiles are already direction-adjusted; the log values are turned with it).
    pub fn kpi_specs(&self) -> Vec<KpiSpec> {
        kpi_specs(&self.catalogue)
    }

    /// KPI `k` of snapshot row `r` in the form `t`: its percentile (missing = 0.5) or its
    /// healthy-direction log value (missing = NaN, which the model's standardisation
    /// replaces by the training mean).
    pub fn feature_value(&self, snap: &Snapshot, r: usize, k: usize, t: FeatureTransform) -> f64 {
        t.value(
            Some(snap.scores.percentile(r, k).unwrap_or(MISSING_PERCENTILE)),
            snap.batch.matrix.get(r, k),
            learn_direction(self.catalogue.kpis()[k].direction),
        )
    }

    /// The feature row of snapshot row `r`: the KPI columns of `layout` (see
    /// [`Population::feature_value`]), then the five category scores (missing = 5), then
    /// the health score (missing = 5).
    pub fn feature_row(&self, snap: &Snapshot, r: usize, layout: &FeatureLayout) -> Vec<f64> {
        let k = self.catalogue.len();
        let mut v = Vec::with_capacity(layout.n_columns(k) + 6);
        v.extend(
            layout
                .columns(k)
                .into_iter()
                .map(|(c, t)| self.feature_value(snap, r, c, t)),
        );
        let s = snap.scores.account(r);
        v.extend(s.categories.iter().map(|c| c.unwrap_or(5.0)));
        v.push(s.score.unwrap_or(5.0));
        v
    }
}

/// Learn-core KPI specs of a catalogue, in its order (see [`Population::kpi_specs`]).
pub fn kpi_specs(catalogue: &Catalogue) -> Vec<KpiSpec> {
    catalogue
        .kpis()
        .iter()
        .map(|k| KpiSpec {
            name: k.name.to_string(),
            category: k.category.as_str().to_owned(),
            direction: learn_direction(k.direction),
            prior_weight: 1.0,
        })
        .collect()
}

/// Scoring-core's direction as learn-core's.
pub fn learn_direction(d: Direction) -> LearnDirection {
    match d {
        Direction::HigherIsBetter => LearnDirection::HigherIsBetter,
        Direction::LowerIsBetter => LearnDirection::HigherIsWorse,
    }
}

/// Observation dates every `step` days, ending exactly at `last`, from the first date at
/// least one KPI window after `data_start`.
pub fn observation_dates(
    data_start: NaiveDate,
    window_days: u32,
    last: NaiveDate,
    step: u32,
) -> Vec<NaiveDate> {
    let Some(first_allowed) = data_start.checked_add_days(Days::new(u64::from(window_days))) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut d = last;
    while d >= first_allowed {
        out.push(d);
        match d.checked_sub_days(Days::new(u64::from(step.max(1)))) {
            Some(p) => d = p,
            None => break,
        }
    }
    out.reverse();
    out
}

/// What rescoring a snapshot with other KPI weights needs ([`Population::rescore`]): its
/// rows and KPIs, without the uniform-weight scores (percentiles, category scores and
/// drivers: a third or more of its memory), which only the training set's rows read.
#[derive(Debug)]
pub struct Rescorable {
    /// Row of each population index present.
    pub row_of: HashMap<usize, usize>,
    /// Profile index of each row.
    pub profile_of: Vec<u32>,
    /// KPI values and signals.
    pub batch: KpiBatch,
}

impl From<Snapshot> for Rescorable {
    fn from(s: Snapshot) -> Self {
        Self {
            row_of: s.row_of,
            profile_of: s.profile_of,
            batch: s.batch,
        }
    }
}

/// Rescorable snapshots per date, kept once the training set is built.
pub type Snapshots = BTreeMap<NaiveDate, Rescorable>;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use vitals_learn_core::LOG_SUFFIX;
    use vitals_store::entity::{account, usage_daily};

    /// `YYYY-MM-DD` (shared with the other modules' tests).
    pub(crate) fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    /// Midnight UTC of `d`.
    pub(crate) fn at(d: NaiveDate) -> DateTime<Utc> {
        d.and_hms_opt(0, 0, 0).expect("time").and_utc()
    }

    /// An active account without attributes or profile, created at midnight of `since`.
    pub(crate) fn active_account(id: &str, since: NaiveDate) -> account::Model {
        account::Model {
            id: id.to_owned(),
            name: id.to_owned(),
            attributes: serde_json::json!({}),
            profile_id: None,
            pinned: false,
            status: "active".into(),
            created_at: at(since),
            updated_at: at(since),
        }
    }

    fn history(usage: &[(&str, &str, i64)]) -> History {
        let start = day("2025-01-01");
        History {
            accounts: ["a", "b"]
                .iter()
                .map(|id| active_account(id, start))
                .collect(),
            usage: usage
                .iter()
                .map(|(a, d, n)| usage_daily::Model {
                    account_id: (*a).to_owned(),
                    day: day(d),
                    event_type: "login".into(),
                    count: *n,
                    distinct_users: 1,
                    value_sum: 0.0,
                })
                .collect(),
            event_types: vec!["login".into()],
            ..History::default()
        }
    }

    /// The log values, like the percentiles, come from the data before the observation
    /// date only: usage on the date itself or later changes neither.
    #[test]
    fn log_values_use_only_data_before_the_observation_date() {
        let past = [
            ("a", "2025-01-20", 9),
            ("b", "2025-01-20", 1),
            ("a", "2025-02-09", 90),
        ];
        let d = day("2025-02-10");
        let layout = FeatureLayout::default();
        let row_of = |h: &History, account: &str| {
            let pop = Population::build(h, &HashMap::new()).expect("population");
            let snap = pop.snapshot(d, &[]).expect("snapshot");
            let r = snap.row_of[&pop.index[account]];
            let names = layout.names(&pop.kpi_specs());
            (names, pop.feature_row(&snap, r, &layout))
        };
        let (names, before) = row_of(&history(&past), "a");
        let mut with_future = past.to_vec();
        with_future.extend([("a", "2025-02-10", 5000), ("b", "2025-02-11", 7000)]);
        let (_, after) = row_of(&history(&with_future), "a");
        assert_eq!(before.len(), after.len());
        for (j, (x, y)) in before.iter().zip(&after).enumerate() {
            assert!(
                x == y || (x.is_nan() && y.is_nan()),
                "{}: {x} before, {y} with later usage",
                names[j]
            );
        }
        // The log value is log1p of what happened before the date: 9 + 90 events.
        let j = names
            .iter()
            .position(|n| *n == format!("all_events{LOG_SUFFIX}"))
            .expect("all_events:log column");
        assert!((before[j] - 100f64.ln()).abs() < 1e-9, "{}", before[j]);
    }
}
