//! Assignment of accounts to health profiles: rules in priority order (first match
//! wins), the default profile for the rest, pins that rules leave alone.
//!
//! Other services call [`assign_accounts`] after upserting accounts; the profiles service
//! also runs [`assign_pending`] and [`reassign`] on a schedule, so accounts get a profile
//! even when nobody calls it.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use vitals_server::ApiError;
use vitals_store::Db;
use vitals_store::Store;
use vitals_store::profiles::{
    self as sp, AccountRecord, AssignmentSource, AssignmentWrite, ProfileRecord,
};
use vitals_store::values::AccountStatus;

use crate::error::{ProfilesError, Result};
use crate::rules::{self, AccountVars, Failures, Meter, Rule, Stop};

/// The stored status of a churned account.
const CHURNED: &str = AccountStatus::Churned.as_str();

pub use vitals_scorecard::defaults::{DEFAULT_PROFILE_ID, default_profile, ensure_default_profile};

/// Serialises assignment writers inside one process (RPCs and the schedules), so two runs
/// never interleave their reads and writes. Writes also never touch pinned accounts
/// unless pinning, which keeps runs in other processes from undoing a pin.
static ASSIGN_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The compiled rules of every profile, in evaluation order.
#[derive(Debug, Clone)]
pub struct RuleSet {
    ordered: Vec<(String, Rule)>,
    default_id: String,
}

impl RuleSet {
    /// Compiles the rules of `profiles` (given in evaluation order). A stored rule that no
    /// longer compiles (it was checked when saved) is skipped with a warning.
    pub fn new(profiles: &[ProfileRecord]) -> Result<Self> {
        let default_id = profiles
            .iter()
            .find(|p| p.is_default)
            .map(|p| p.id.clone())
            .ok_or(ProfilesError::NoDefaultProfile)?;
        let mut ordered = Vec::new();
        for p in profiles
            .iter()
            .filter(|p| !p.is_default && !p.rule.is_empty())
        {
            match Rule::compile("assignment_rule", &p.rule) {
                Ok(r) => ordered.push((p.id.clone(), r)),
                Err(e) => tracing::warn!(profile = %p.id, error = %e, "stored rule skipped"),
            }
        }
        Ok(Self {
            ordered,
            default_id,
        })
    }

    /// The profile `account` belongs to by the rules, and why (on the CEL pool, under
    /// `meter`). A rule that fails on the account (a type error, its step budget spent)
    /// does not match it and is recorded in `failures`; only the end of the batch
    /// (deadline, caller gone) stops the decision.
    pub fn decide(
        &self,
        account: &AccountRecord,
        meter: &Meter,
        failures: &mut Failures,
    ) -> Result<(String, AssignmentSource), Stop> {
        let vars = AccountVars::new(account, None);
        let ctx = vars.context(meter);
        for (id, rule) in &self.ordered {
            if rules::eval_stored(rule, &ctx, meter, id, failures)? {
                return Ok((id.clone(), AssignmentSource::Rule));
            }
        }
        Ok((self.default_id.clone(), AssignmentSource::Default))
    }

    /// The default profile's id.
    pub fn default_id(&self) -> &str {
        &self.default_id
    }
}

/// An account moving between profiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The account.
    pub account_id: String,
    /// Its previous profile id, if any.
    pub from: Option<String>,
    /// Its new profile id.
    pub to: String,
}

/// What an assignment run did (or would do, for a dry run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Accounts whose rules were evaluated.
    pub evaluated: usize,
    /// Accounts whose profile changed (or would change).
    pub moved: usize,
    /// Pinned accounts left alone.
    pub pinned: usize,
    /// The moves, by account id, at most the requested number.
    pub moves: Vec<Move>,
    /// True when more moves happened than are listed.
    pub truncated: bool,
}

/// Which accounts an assignment run looks at.
#[derive(Debug, Clone)]
pub enum Scope {
    /// Every unpinned account that is not churned, plus churned ones with no profile yet.
    All,
    /// These accounts (unknown ids are ignored; pinned ones are left alone).
    Ids(Vec<String>),
    /// Unpinned accounts with no profile, or changed since the rules last saw them.
    Pending,
}

/// Options of [`reassign`].
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Accounts to evaluate.
    pub scope: Scope,
    /// Compute and report without writing.
    pub dry_run: bool,
    /// Moves to list in the report.
    pub max_moves: usize,
}

/// Evaluates the rules for the accounts in `options.scope` and moves those whose profile
/// changes, in one transaction.
pub async fn reassign(store: &Store, options: RunOptions) -> Result<Report> {
    let _guard = ASSIGN_LOCK.lock().await;
    ensure_default_profile(store).await?;
    let profiles = sp::load_profiles(store).await?;
    let rules = Arc::new(RuleSet::new(&profiles)?);
    let accounts = match &options.scope {
        Scope::Ids(ids) => sp::load_accounts_by_id(store, ids).await?,
        Scope::All | Scope::Pending => sp::load_accounts(store).await?,
    };
    let assignments = sp::load_assignments(store).await?;
    let mut report = Report::default();
    let mut candidates = Vec::with_capacity(accounts.len());
    for a in accounts {
        if a.pinned {
            report.pinned += 1;
            continue;
        }
        let row = assignments.get(&a.id);
        let take = match &options.scope {
            Scope::All | Scope::Ids(_) => a.status != CHURNED || a.profile_id.is_none(),
            Scope::Pending => {
                a.profile_id.is_none()
                    || row.is_none_or(|r| {
                        a.updated_at > r.evaluated_at
                            || Some(&r.profile_id) != a.profile_id.as_ref()
                    })
            }
        };
        if take {
            candidates.push(a);
        }
    }
    report.evaluated = candidates.len();
    let decisions = decide_all(rules, candidates).await?;
    let mut writes = Vec::new();
    let mut seen = Vec::new();
    for (a, to, source) in decisions {
        let moved = a.profile_id.as_deref() != Some(to.as_str());
        let row = assignments.get(&a.id);
        if moved {
            report.moved += 1;
            if report.moves.len() < options.max_moves {
                report.moves.push(Move {
                    account_id: a.id.clone(),
                    from: a.profile_id.clone(),
                    to: to.clone(),
                });
            } else {
                report.truncated = true;
            }
        }
        if moved || row.is_none_or(|r| r.source != source.as_str() || r.profile_id != to) {
            writes.push(AssignmentWrite {
                account_id: a.id,
                profile_id: to,
                source,
                moved: moved || row.is_none(),
                evaluated_at: a.updated_at,
            });
        } else if row.is_some_and(|r| r.evaluated_at < a.updated_at) {
            seen.push((a.id, a.updated_at));
        }
    }
    if !options.dry_run {
        let txn = store.begin_write().await?;
        let now = Utc::now();
        sp::write_assignments(&txn, &writes, now).await?;
        sp::touch_evaluated(&txn, &seen).await?;
        txn.commit().await?;
        if report.moved > 0 {
            tracing::info!(
                evaluated = report.evaluated,
                moved = report.moved,
                "accounts reassigned"
            );
        }
    }
    Ok(report)
}

/// Runs the rules on the CEL pool (CEL over a large portfolio is CPU work) under its
/// budget; rules that failed on some accounts are logged once, by profile.
async fn decide_all(
    rule_set: Arc<RuleSet>,
    accounts: Vec<AccountRecord>,
) -> Result<Vec<(AccountRecord, String, AssignmentSource)>> {
    let decided = rules::exec::run(move |meter| {
        let mut failures = Failures::default();
        let mut out = Vec::with_capacity(accounts.len());
        for a in accounts {
            match rule_set.decide(&a, meter, &mut failures) {
                Ok((to, source)) => out.push((a, to, source)),
                Err(stop) => return Err(rules::stop_error("assignment_rule", stop, &a.id)),
            }
        }
        failures.report("profile");
        Ok(out)
    })
    .await??;
    Ok(decided)
}

/// Assigns these accounts by the rules (pinned ones stay where they are): what the
/// ingestion service calls after upserting accounts. Unknown ids are ignored.
pub async fn assign_accounts(store: &Store, ids: &[String]) -> Result<Report> {
    reassign(
        store,
        RunOptions {
            scope: Scope::Ids(ids.to_vec()),
            dry_run: false,
            max_moves: 0,
        },
    )
    .await
}

/// What the all-in-one passes to the ingestion service (`AccountsHook` there): assigns
/// the accounts of each committed UpsertAccounts batch by the rules, logging (not
/// returning) errors; the pending pass retries whatever it missed.
#[allow(clippy::type_complexity)]
pub fn accounts_hook(
    store: Store,
) -> Arc<
    dyn Fn(Vec<String>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send
        + Sync,
> {
    Arc::new(move |ids: Vec<String>| {
        let store = store.clone();
        Box::pin(async move {
            if let Err(e) = assign_accounts(&store, &ids).await {
                tracing::warn!(error = %e, accounts = ids.len(), "assignment after upsert failed; the pending pass retries");
            }
        })
    })
}

/// Assigns every unpinned account that has no profile yet or changed since the rules
/// last looked at it (what the frequent schedule runs).
pub async fn assign_pending(store: &Store) -> Result<Report> {
    reassign(
        store,
        RunOptions {
            scope: Scope::Pending,
            dry_run: false,
            max_moves: 0,
        },
    )
    .await
}

/// Accounts chosen by id or by a CEL filter.
#[derive(Debug, Clone)]
pub enum Selector {
    /// These ids; every one must exist.
    Ids(Vec<String>),
    /// Accounts for which the filter is true.
    Filter(Rule),
}

async fn select(conn: &impl Db, selector: Selector, ids_field: &str) -> Result<Vec<AccountRecord>> {
    match selector {
        Selector::Ids(ids) => {
            let found = sp::load_accounts_by_id(conn, &ids).await?;
            let known: std::collections::HashSet<&str> =
                found.iter().map(|a| a.id.as_str()).collect();
            if let Some((i, missing)) = ids
                .iter()
                .enumerate()
                .find(|(_, id)| !known.contains(id.as_str()))
            {
                return Err(
                    ApiError::NotFound(format!("{ids_field}[{i}]: account {missing:?}")).into(),
                );
            }
            Ok(found)
        }
        Selector::Filter(rule) => {
            let all = sp::load_accounts(conn).await?;
            Ok(rules::select_for_request("filter", rule, all).await?)
        }
    }
}

/// Pins the selected accounts to `profile_id`; returns (assigned, moved).
pub async fn pin_accounts(
    store: &Store,
    profile_id: &str,
    selector: Selector,
) -> Result<(usize, usize)> {
    let _guard = ASSIGN_LOCK.lock().await;
    let txn = store.begin_write().await?;
    if sp::get_profile(&txn, profile_id).await?.is_none() {
        return Err(ApiError::NotFound(format!("profile \"profiles/{profile_id}\"")).into());
    }
    let accounts = select(&txn, selector, "account_ids").await?;
    let assignments = sp::load_assignments(&txn).await?;
    let mut moved = 0;
    let writes: Vec<AssignmentWrite> = accounts
        .iter()
        .map(|a| {
            let changed = a.profile_id.as_deref() != Some(profile_id);
            moved += usize::from(changed);
            AssignmentWrite {
                account_id: a.id.clone(),
                profile_id: profile_id.to_string(),
                source: AssignmentSource::Pinned,
                moved: changed || !assignments.contains_key(&a.id),
                evaluated_at: a.updated_at,
            }
        })
        .collect();
    sp::write_assignments(&txn, &writes, Utc::now()).await?;
    txn.commit().await?;
    Ok((accounts.len(), moved))
}

/// Unpins the selected accounts and reassigns them by the rules at once; returns
/// (unpinned, moved).
pub async fn unpin_accounts(store: &Store, selector: Selector) -> Result<(usize, usize)> {
    let _guard = ASSIGN_LOCK.lock().await;
    ensure_default_profile(store).await?;
    let txn = store.begin_write().await?;
    let rules = Arc::new(RuleSet::new(&sp::load_profiles(&txn).await?)?);
    let accounts: Vec<AccountRecord> = select(&txn, selector, "account_ids")
        .await?
        .into_iter()
        .filter(|a| a.pinned)
        .collect();
    let ids: Vec<String> = accounts.iter().map(|a| a.id.clone()).collect();
    sp::unpin(&txn, &ids).await?;
    let (n, moved) = reassign_in(&txn, rules, accounts).await?;
    txn.commit().await?;
    Ok((n, moved))
}

/// Decides and writes the assignment of `accounts` (already unpinned) inside `conn`;
/// returns (evaluated, moved).
async fn reassign_in(
    conn: &impl Db,
    rules: Arc<RuleSet>,
    accounts: Vec<AccountRecord>,
) -> Result<(usize, usize)> {
    let n = accounts.len();
    let decisions = decide_all(rules, accounts).await?;
    let mut moved = 0;
    let writes: Vec<AssignmentWrite> = decisions
        .into_iter()
        .map(|(a, to, source)| {
            let changed = a.profile_id.as_deref() != Some(to.as_str());
            moved += usize::from(changed);
            AssignmentWrite {
                account_id: a.id,
                profile_id: to,
                source,
                moved: true,
                evaluated_at: a.updated_at,
            }
        })
        .collect();
    sp::write_assignments(conn, &writes, Utc::now()).await?;
    Ok((n, moved))
}

/// Deletes a profile and reassigns its members (pins removed) by the remaining rules, in
/// one transaction; returns the number of members reassigned.
pub async fn delete_profile(store: &Store, id: &str) -> Result<usize> {
    let _guard = ASSIGN_LOCK.lock().await;
    let txn = store.begin_write().await?;
    let Some(profile) = sp::get_profile(&txn, id).await? else {
        return Err(ApiError::NotFound(format!("profile \"profiles/{id}\"")).into());
    };
    if profile.is_default {
        return Err(ApiError::FailedPrecondition(format!(
            "profiles/{id} is the default profile and cannot be deleted (make another profile the default first)"
        ))
        .into());
    }
    sp::delete_profile(&txn, id).await?;
    let rules = Arc::new(RuleSet::new(&sp::load_profiles(&txn).await?)?);
    let members: Vec<AccountRecord> = sp::load_accounts(&txn)
        .await?
        .into_iter()
        .filter(|a| a.profile_id.as_deref() == Some(id))
        .map(|mut a| {
            a.pinned = false;
            a
        })
        .collect();
    let ids: Vec<String> = members.iter().map(|a| a.id.clone()).collect();
    sp::unpin(&txn, &ids).await?;
    let (n, _) = reassign_in(&txn, rules, members).await?;
    txn.commit().await?;
    Ok(n)
}

/// Membership counts per profile id: (scored members, pinned members), plus the scored
/// accounts with no profile. Scored = not churned.
pub fn population(accounts: &[AccountRecord]) -> (HashMap<String, (usize, usize)>, usize) {
    let mut per: HashMap<String, (usize, usize)> = HashMap::new();
    let mut unassigned = 0;
    for a in accounts.iter().filter(|a| a.status != CHURNED) {
        match &a.profile_id {
            Some(p) => {
                let e = per.entry(p.clone()).or_default();
                e.0 += 1;
                e.1 += usize::from(a.pinned);
            }
            None => unassigned += 1,
        }
    }
    (per, unassigned)
}
