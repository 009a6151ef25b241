//! CEL expressions over accounts: assignment rules, bulk-assignment filters and scorecard
//! segments (see the CEL environment in profiles.proto and docs/profiles.md).
//!
//! Every expression is checked when it is compiled (see docs/reliability.md, "CEL rules:
//! limits and budgets"): at most [`MAX_EXPR_BYTES`] bytes; a pre-scan of its tokens bounds
//! the depth of the tree before the (recursive) parser runs ([`MAX_DEPTH`]); at most
//! [`MAX_NODES`] nodes; only the functions of [`check::FUNCTIONS`] and known variables;
//! a result that can be a bool; an estimated cost of at most [`MAX_COST`] comprehension
//! steps. Evaluation runs on a dedicated pool ([`exec`]), never on the async workers,
//! with a budget of [`MAX_STEPS`] steps per evaluation and [`BATCH_TIMEOUT`] per batch.

mod check;
pub mod exec;
mod scan;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use crate::ScorecardError;
use cel::objects::{Key, Value};
use cel::{Context, Env, ExecutionError, IdedExpr, Program};
use chrono::{FixedOffset, Utc};
use vitals_store::profiles::{AccountRecord, AttrValue};

pub use check::{BUILTIN_VARIABLES, FUNCTIONS, is_attribute_name};
pub use exec::{Meter, Stop};

/// Longest accepted expression, in bytes.
pub const MAX_EXPR_BYTES: usize = 4096;

/// Deepest accepted expression: the pre-scan's bound on the depth of the tree (every
/// operator, member access, call, index and bracket of a chain counts one level; `&&` /
/// `||` chains are balanced), and the depth of the parsed tree.
pub const MAX_DEPTH: u32 = 32;

/// Most nodes in an expression's tree (after the macros are expanded).
pub const MAX_NODES: usize = 1_000;

/// Most comprehension steps one evaluation may take, estimated when the expression is
/// compiled (past it: INVALID_ARGUMENT) and counted while it runs (past it: the
/// evaluation stops, see [`Stop::Steps`]).
pub const MAX_STEPS: u64 = 1_000;

/// The static limit on the estimated steps: the same budget as at run time.
pub const MAX_COST: u64 = MAX_STEPS;

/// Items the cost estimate assumes for a comprehension over anything but a list or map
/// literal: the most attributes an account can hold.
pub const UNKNOWN_RANGE: u64 = 200;

/// Longest a batch of evaluations (one expression, or a rule set, over the accounts of
/// one request or run) may take.
pub const BATCH_TIMEOUT: Duration = Duration::from_secs(30);

/// The standard CEL environment, built once: building it per evaluation would dominate
/// the cost of a rule.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// Names bound by the environment itself; an attribute with one of these names is only
/// reachable through `attributes`.
const RESERVED: [&str; 6] = [
    "account_id",
    "display_name",
    "status",
    "create_time",
    "attributes",
    "profile",
];

/// A compiled CEL expression.
#[derive(Clone)]
pub struct Rule {
    /// The parsed expression with its comprehension steps counted (see
    /// [`check::instrument`]).
    expr: Arc<IdedExpr>,
    source: Arc<str>,
    /// Whether `profile` is bound (scorecard segments).
    segment: bool,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Rule").field(&self.source).finish()
    }
}

/// Why one evaluation gave no bool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalError {
    /// Its budget ran out, or the batch was abandoned.
    Stopped(Stop),
    /// It read an attribute the account does not have: no match, by design.
    Missing,
    /// Anything else (a type error, a non-bool result): no match, and reported for
    /// stored rules.
    Failed(String),
}

impl Rule {
    /// Compiles an assignment rule or a bulk filter (the variables of the CEL environment
    /// but `profile`); errors are INVALID_ARGUMENT on `field`.
    pub fn compile(field: &str, source: &str) -> Result<Self, ScorecardError> {
        Self::build(field, source, false)
    }

    /// Compiles `source` when it is not empty.
    pub fn compile_optional(field: &str, source: &str) -> Result<Option<Self>, ScorecardError> {
        if source.is_empty() {
            Ok(None)
        } else {
            Self::compile(field, source).map(Some)
        }
    }

    /// Compiles a scorecard segment (which also sees `profile`) when it is not empty.
    pub fn compile_segment_optional(
        field: &str,
        source: &str,
    ) -> Result<Option<Self>, ScorecardError> {
        if source.is_empty() {
            Ok(None)
        } else {
            Self::build(field, source, true).map(Some)
        }
    }

    /// Compiles on a thread of its own with [`exec::STACK_BYTES`] of stack: the `cel`
    /// parser is recursive and, in a debug build, takes megabytes of stack for an
    /// expression at the depth limit. The caller waits for it (the limits bound the work:
    /// see docs/reliability.md for the measured figure).
    fn build(field: &str, source: &str, segment: bool) -> Result<Self, ScorecardError> {
        if source.len() > MAX_EXPR_BYTES {
            return Err(ScorecardError::invalid(
                field,
                format!("longer than {MAX_EXPR_BYTES} bytes"),
            ));
        }
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("vitals-cel-compile".into())
                .stack_size(exec::STACK_BYTES)
                .spawn_scoped(scope, || Self::build_here(field, source, segment))
                .map_err(|e| ScorecardError::Internal(format!("cel compile thread: {e}")))?
                .join()
                .map_err(|_| ScorecardError::Internal("cel compile panicked".into()))?
        })
    }

    fn build_here(field: &str, source: &str, segment: bool) -> Result<Self, ScorecardError> {
        if source.len() > MAX_EXPR_BYTES {
            return Err(ScorecardError::invalid(
                field,
                format!("longer than {MAX_EXPR_BYTES} bytes"),
            ));
        }
        if source.trim().is_empty() {
            return Err(ScorecardError::invalid(field, "must not be empty"));
        }
        let scanned = scan::scan(source);
        if scanned.depth > MAX_DEPTH {
            return Err(ScorecardError::invalid(
                field,
                format!(
                    "nested or chained too deep: about {} levels of operators, calls and brackets, more than {MAX_DEPTH}",
                    scanned.depth
                ),
            ));
        }
        let program = Program::compile(source).map_err(|errs| {
            let msg = errs
                .errors
                .first()
                .map(|e| {
                    format!(
                        "invalid cel at line {}, column {}: {}",
                        e.pos.0,
                        e.pos.1,
                        e.msg.to_lowercase()
                    )
                })
                .unwrap_or_else(|| "invalid cel".to_string());
            ScorecardError::invalid(field, msg)
        })?;
        check::check(program.expression(), segment)
            .map_err(|m| ScorecardError::invalid(field, m))?;
        let mut expr = program.expression().clone();
        check::instrument(&mut expr);
        Ok(Self {
            expr: Arc::new(expr),
            source: source.into(),
            segment,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The variables `account` shows this expression (`profile` for segments).
    pub fn vars(&self, account: &AccountRecord) -> AccountVars {
        if self.segment {
            let profile = account
                .profile_id
                .as_ref()
                .map(|p| format!("profiles/{p}"))
                .unwrap_or_default();
            AccountVars::new(account, Some(&profile))
        } else {
            AccountVars::new(account, None)
        }
    }

    /// Evaluates the expression in `ctx` (from [`AccountVars::context`] with the same
    /// `meter`), on the CEL pool: see [`exec::run`].
    pub fn eval(&self, ctx: &Context<'_, '_>, meter: &Meter) -> Result<bool, EvalError> {
        meter.begin().map_err(EvalError::Stopped)?;
        let out = ctx.resolve(&self.expr);
        // A step error can be absorbed (`false && error` is false): the meter decides.
        if let Some(stop) = meter.stopped() {
            return Err(EvalError::Stopped(stop));
        }
        match out {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(EvalError::Failed(format!(
                "gave {}, not a bool",
                other.type_of()
            ))),
            Err(ExecutionError::NoSuchKey(_) | ExecutionError::UndeclaredReference(_)) => {
                Err(EvalError::Missing)
            }
            Err(e) => Err(EvalError::Failed(e.to_string())),
        }
    }
}

/// The error a request gets when evaluating its expression on `field` stopped.
pub fn stop_error(field: &str, stop: Stop, account: &str) -> ScorecardError {
    match stop {
        Stop::Steps => ScorecardError::ResourceExhausted(format!(
            "{field}: took more than {MAX_STEPS} comprehension steps on account {account:?}"
        )),
        Stop::Deadline => ScorecardError::DeadlineExceeded(format!(
            "{field}: evaluating it over the accounts took more than {} s",
            BATCH_TIMEOUT.as_secs()
        )),
        Stop::Cancelled => ScorecardError::DeadlineExceeded(format!(
            "{field}: evaluation abandoned (the caller went away)"
        )),
    }
}

/// The accounts of `accounts` for which `rule`, given in a request on `field` (a
/// preview's segment, a bulk filter), is true. An evaluation error is no match; a spent
/// budget fails the request (RESOURCE_EXHAUSTED for the steps of one evaluation,
/// DEADLINE_EXCEEDED for the batch).
pub async fn select_for_request(
    field: &str,
    rule: Rule,
    accounts: Vec<AccountRecord>,
) -> Result<Vec<AccountRecord>, ScorecardError> {
    let field = field.to_string();
    exec::run(move |meter| {
        let mut out = Vec::new();
        for a in accounts {
            match rule.eval(&rule.vars(&a).context(meter), meter) {
                Ok(true) => out.push(a),
                Ok(false) | Err(EvalError::Missing | EvalError::Failed(_)) => {}
                Err(EvalError::Stopped(s)) => return Err(stop_error(&field, s, &a.id)),
            }
        }
        Ok(out)
    })
    .await?
}

/// Failures of stored expressions during one run, by owner (a profile or scorecard),
/// reported once at its end.
#[derive(Debug, Default)]
pub struct Failures {
    by_owner: BTreeMap<String, (u64, String)>,
}

impl Failures {
    /// Records a failure of `owner`'s expression.
    pub fn record(&mut self, owner: &str, error: &str) {
        let e = self
            .by_owner
            .entry(owner.to_string())
            .or_insert_with(|| (0, error.to_string()));
        e.0 += 1;
    }

    /// Owners whose expression failed, with the number of failures.
    pub fn counts(&self) -> impl Iterator<Item = (&str, u64)> {
        self.by_owner.iter().map(|(k, v)| (k.as_str(), v.0))
    }

    /// Logs one warning per owner (`kind` is `profile` or `scorecard`).
    pub fn report(&self, kind: &str) {
        for (owner, (n, first)) in &self.by_owner {
            tracing::warn!(
                kind,
                owner = %owner,
                failures = n,
                first_error = %first,
                "stored cel expression failed on some accounts; counted as no match"
            );
        }
    }
}

/// Evaluates a stored expression (saved earlier, maybe by an older version): a failure
/// or a spent step budget is no match, recorded in `failures` under `owner`; only the
/// end of the batch (deadline, caller gone) is an error.
pub fn eval_stored(
    rule: &Rule,
    ctx: &Context<'_, '_>,
    meter: &Meter,
    owner: &str,
    failures: &mut Failures,
) -> Result<bool, Stop> {
    match rule.eval(ctx, meter) {
        Ok(b) => Ok(b),
        Err(EvalError::Missing) => Ok(false),
        Err(EvalError::Failed(e)) => {
            failures.record(owner, &e);
            Ok(false)
        }
        Err(EvalError::Stopped(Stop::Steps)) => {
            failures.record(
                owner,
                &format!("took more than {MAX_STEPS} comprehension steps"),
            );
            Ok(false)
        }
        Err(EvalError::Stopped(s)) => Err(s),
    }
}

/// The accounts of `accounts` in a stored scorecard segment (see [`eval_stored`]);
/// failures are logged under `owner`.
pub async fn select_stored(
    owner: &str,
    rule: Rule,
    accounts: Vec<AccountRecord>,
) -> Result<Vec<AccountRecord>, ScorecardError> {
    let owner = owner.to_string();
    exec::run(move |meter| {
        let mut failures = Failures::default();
        let mut out = Vec::new();
        for a in accounts {
            let vars = rule.vars(&a);
            match eval_stored(&rule, &vars.context(meter), meter, &owner, &mut failures) {
                Ok(true) => out.push(a),
                Ok(false) => {}
                Err(s) => return Err(stop_error(&owner, s, &a.id)),
            }
        }
        failures.report("scorecard");
        Ok(out)
    })
    .await?
}

/// The CEL variables of one account, built once and reused for every rule.
#[derive(Debug, Clone)]
pub struct AccountVars {
    vars: Vec<(String, Value)>,
}

fn attr_value(v: &AttrValue) -> Value {
    match v {
        AttrValue::String(s) => Value::String(Arc::new(s.clone())),
        AttrValue::Number(n) => Value::Float(*n),
        AttrValue::Bool(b) => Value::Bool(*b),
        AttrValue::Timestamp(t) => Value::Timestamp(t.with_timezone(&utc_offset())),
    }
}

fn utc_offset() -> FixedOffset {
    // Zero is always a valid offset; the fallback only satisfies the type.
    FixedOffset::east_opt(0).unwrap_or_else(|| Utc.fix())
}

use chrono::Offset;

impl AccountVars {
    /// The variables of `account`; `profile` (the resource name of its profile) is bound
    /// when given, for scorecard segments.
    pub fn new(account: &AccountRecord, profile: Option<&str>) -> Self {
        let mut vars = Vec::with_capacity(account.attributes.len() + 6);
        let mut map: HashMap<Key, Value> = HashMap::with_capacity(account.attributes.len());
        for (k, v) in &account.attributes {
            let v = attr_value(v);
            if !RESERVED.contains(&k.as_str()) {
                vars.push((k.clone(), v.clone()));
            }
            map.insert(Key::String(Arc::new(k.clone())), v);
        }
        vars.push((
            "account_id".into(),
            Value::String(Arc::new(account.id.clone())),
        ));
        vars.push((
            "display_name".into(),
            Value::String(Arc::new(account.name.clone())),
        ));
        vars.push((
            "status".into(),
            Value::String(Arc::new(account.status.clone())),
        ));
        vars.push((
            "create_time".into(),
            Value::Timestamp(account.created_at.with_timezone(&utc_offset())),
        ));
        vars.push(("attributes".into(), Value::Map(map.into())));
        if let Some(p) = profile {
            vars.push(("profile".into(), Value::String(Arc::new(p.to_string()))));
        }
        Self { vars }
    }

    /// A CEL context binding these variables and counting steps on `meter` (build it
    /// once per account, then evaluate every rule in it).
    pub fn context(&self, meter: &Meter) -> Context<'_, '_> {
        let mut ctx = Context::with_env(ENV.clone());
        for (k, v) in &self.vars {
            ctx.add_variable_from_value(k.clone(), v.clone());
        }
        let m = meter.clone();
        // The name starts with `@`, which no environment function does: this cannot
        // conflict.
        let _ = ctx.add_function(
            check::TICK,
            move |v: Value| -> Result<Value, ExecutionError> {
                m.tick()
                    .map_err(|_| ExecutionError::function_error(check::TICK, "budget spent"))?;
                Ok(v)
            },
        );
        ctx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn account(attrs: &[(&str, AttrValue)]) -> AccountRecord {
        let now = Utc::now();
        AccountRecord {
            id: "a1".into(),
            name: "Acme".into(),
            status: "active".into(),
            created_at: now,
            updated_at: now,
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
            profile_id: None,
            pinned: false,
        }
    }

    /// Evaluates on a thread with the CEL pool's stack, as the service does.
    fn m(rule: &Rule, a: &AccountRecord) -> Result<bool, EvalError> {
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .stack_size(exec::STACK_BYTES)
                .spawn_scoped(s, || {
                    let meter = Meter::standard();
                    rule.eval(&rule.vars(a).context(&meter), &meter)
                })
                .unwrap()
                .join()
                .unwrap()
        })
    }

    #[test]
    fn rules_see_attributes_both_ways() {
        let a = account(&[
            ("plan", AttrValue::String("premium".into())),
            ("seats", AttrValue::Number(60.0)),
        ]);
        let r = |s: &str| m(&Rule::compile("r", s).unwrap(), &a) == Ok(true);
        assert!(r(r#"plan == "premium" && seats >= 50.0"#));
        assert!(r("seats >= 50"));
        assert!(r(r#"attributes.plan == "premium""#));
        assert!(r("has(attributes.seats)"));
        assert!(!r("has(attributes.region)"));
        assert!(!r(r#"region == "eu""#), "missing attribute is no match");
        assert!(r(r#"account_id == "a1" && status == "active""#));
        assert!(!r("seats"), "non-boolean is no match");
        assert!(r(r#"["premium", "pro"].exists(p, plan == p)"#));
        assert!(r("attributes.all(k, k.size() > 0)"));
        assert!(r("[1, 2, 3].map(x, x * 2).filter(x, x > 2).size() == 2"));
        assert!(r("[1, 2, 3].exists_one(x, x == 2)"));
        assert_eq!(
            m(&Rule::compile("r", "region == \"eu\"").unwrap(), &a),
            Err(EvalError::Missing)
        );
        assert!(matches!(
            m(&Rule::compile("r", "plan > 3").unwrap(), &a),
            Err(EvalError::Failed(_))
        ));
    }

    #[test]
    fn compile_errors_give_position() {
        let e = Rule::compile("health_profile.assignment_rule", "plan == ")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("health_profile.assignment_rule: "), "{e}");
        assert!(e.contains("line 1, column"), "{e}");
    }

    fn refused(source: &str) -> String {
        match Rule::compile("f", source) {
            Ok(_) => panic!("accepted: {source:.80}"),
            Err(e) => {
                assert!(matches!(e, ScorecardError::InvalidArgument { .. }), "{e:?}");
                e.to_string()
            }
        }
    }

    /// The issue's input: 1,500 terms, 3,003 bytes, which overflowed the stack.
    fn chain(n: usize) -> String {
        format!("{} > 0", vec!["1"; n].join("+"))
    }

    #[test]
    fn long_operator_chains_are_refused_before_parsing() {
        let issue = chain(1500);
        assert_eq!(issue.len(), 3003);
        let e = refused(&issue);
        assert!(e.starts_with("f: nested or chained too deep"), "{e}");
        // Worse inputs under 4,096 bytes: every shape of long chain or deep nesting.
        let worse = [
            chain(2045),
            format!("{} > 0", vec!["a"; 2040].join("*")),
            format!("x{} == 1", ".a".repeat(2040)),
            format!("x{} == 1", "[0]".repeat(1360)),
            format!("{}true{}", "(".repeat(2000), ")".repeat(2000)),
            format!("{}1{}", "[".repeat(2000), "]".repeat(2000)),
            format!("{}1{}", "size(".repeat(680), ")".repeat(680)),
            format!("{} true", "true ? true :".repeat(300)),
            "a ? b : c || ".repeat(300) + "d",
            format!("{}true", "!".repeat(4090)),
            format!("{}1 > 0", "-".repeat(4090)),
            "a<".repeat(2040) + "b",
            "{1:".repeat(1000) + "1" + &"}".repeat(1000),
            "[0].all(x,".repeat(300) + "true" + &")".repeat(300),
        ];
        for w in &worse {
            assert!(w.len() <= MAX_EXPR_BYTES, "{}", w.len());
            refused(w);
        }
    }

    /// Every shape at the depth limit compiles and evaluates (debug build, the hungriest)
    /// on a thread with a quarter of the stack the CEL threads get: the limits make an
    /// overflow impossible rather than unlikely. (Measured: the worst shape, nested
    /// brackets, needs 4 MiB in a debug build; chains 2 MiB.)
    #[test]
    fn expressions_at_the_limits_fit_a_quarter_of_the_stack() {
        let deepest_under = |make: &dyn Fn(usize) -> String| -> String {
            let mut best = None;
            for n in 1..400 {
                let s = make(n);
                if s.len() > MAX_EXPR_BYTES || scan::scan(&s).depth > MAX_DEPTH {
                    break;
                }
                best = Some(s);
            }
            best.expect("some size fits")
        };
        let shapes: Vec<Box<dyn Fn(usize) -> String>> = vec![
            Box::new(|n| format!("{} > 0", vec!["1"; n].join("+"))),
            Box::new(|n| format!("x{} == 1", ".a".repeat(n))),
            Box::new(|n| format!("attributes{} == 1", "[\"a\"]".repeat(n))),
            Box::new(|n| format!("{}true{}", "(".repeat(n), ")".repeat(n))),
            Box::new(|n| format!("{}[1]{} == [1]", "[".repeat(n), "][0]".repeat(n))),
            Box::new(|n| format!("{}\"a\"{} == 1", "size(".repeat(n), ")".repeat(n))),
            Box::new(|n| format!("{}true", "false ? false : ".repeat(n))),
            Box::new(|n| "false ? false : false || ".repeat(n) + "true"),
            Box::new(|n| format!("{}true{}", "[1].all(x,".repeat(n), ")".repeat(n))),
            Box::new(|n| format!("{}true{}", "[1].map(x,".repeat(n), ")".repeat(n) + " == []")),
            Box::new(|n| format!("{}1{} > 0", "(1 + ".repeat(n), ")".repeat(n))),
            Box::new(|n| vec!["plan == \"a\""; n * 10].join(" || ")),
            Box::new(|n| format!("{}1{} == {{}}", "{1: ".repeat(n), "}".repeat(n))),
            Box::new(|n| format!("{}1{} > 0", "size([(".repeat(n), ")])".repeat(n))),
            Box::new(|n| {
                format!(
                    "{}true{}",
                    "[1].exists(x, x > 0 && (".repeat(n),
                    "))".repeat(n)
                )
            }),
        ];
        let sources: Vec<String> = shapes.iter().map(|f| deepest_under(f.as_ref())).collect();
        let a = account(&[("plan", AttrValue::String("a".into()))]);
        std::thread::Builder::new()
            .stack_size(exec::STACK_BYTES / 4)
            .spawn(move || {
                for s in &sources {
                    // Refused by a later check or compiled and run: never an overflow.
                    if let Ok(rule) = Rule::build_here("f", s, false) {
                        let _ = m(&rule, &a);
                    }
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn non_boolean_rules_are_refused() {
        for (src, what) in [
            ("1 + 2", "an arithmetic result"),
            ("42", "an int"),
            ("\"premium\"", "a string"),
            ("[true]", "a list"),
            ("size(plan)", "an int"),
            ("seats > 1 ? 1 : 2", "an int"),
            ("[1, 2].map(x, x > 1)", "a list"),
        ] {
            let e = refused(src);
            assert_eq!(
                e,
                format!("f: must be a bool expression, not {what}"),
                "{src}"
            );
        }
        // A bare attribute may be a bool attribute: accepted, checked when it runs.
        Rule::compile("f", "vip").unwrap();
        Rule::compile("f", "seats > 1 ? vip : false").unwrap();
    }

    #[test]
    fn unknown_functions_and_variables_are_refused() {
        assert_eq!(refused("foo(x)"), "f: unknown function \"foo\"");
        assert_eq!(
            refused("plan.lower() == \"a\""),
            "f: unknown function \"lower\""
        );
        assert_eq!(refused("[1].all(x)"), "f: unknown function \"all\"");
        assert!(refused("profile == \"profiles/a\"").contains("scorecard segments only"));
        Rule::compile_segment_optional("s", "profile == \"profiles/a\"")
            .unwrap()
            .unwrap();
        assert!(refused("google.protobuf.Duration{seconds: 1} == 1").contains("not supported"));
        for f in FUNCTIONS {
            // Every allowed function is known to the environment: called globally or on
            // some value, it fails on its arguments, not as an undeclared reference.
            let known = ["", "\"a\".", "timestamp(\"2026-01-01T00:00:00Z\")."]
                .iter()
                .any(|target| {
                    let src = format!("{target}{f}()");
                    let rule = Rule {
                        expr: Arc::new(Program::compile(&src).unwrap().expression().clone()),
                        source: src.into(),
                        segment: false,
                    };
                    !matches!(m(&rule, &account(&[])), Err(EvalError::Missing))
                });
            assert!(known, "{f}");
        }
    }

    /// The issue's input: four nested comprehensions over literal lists (about 210
    /// bytes), which kept the server busy for 38 s.
    #[test]
    fn nested_comprehensions_are_refused_by_their_estimated_cost() {
        let l = format!("[{}]", ["0"; 10].join(","));
        let issue = format!("{l}.all(a, {l}.all(b, {l}.all(c, {l}.all(d, a + b + c + d == 0))))");
        assert!(issue.len() < 250, "{}", issue.len());
        let e = refused(&issue);
        assert!(e.contains("estimated 11110 steps"), "{e}");
        // Within the budget: fine.
        Rule::compile("f", &format!("{l}.all(a, {l}.all(b, a == b || true))")).unwrap();
        // Unknown ranges count as the most attributes an account can hold.
        refused("attributes.all(k, attributes.all(j, k != j))");
    }

    #[test]
    fn the_step_budget_stops_a_run_away_evaluation() {
        let a = account(&[]);
        // Within the static estimate (a range that is not a literal counts 200) but
        // 1,201 steps when it runs.
        let over = |body: &str| {
            let zeros = vec!["0"; 400].join(",");
            Rule::compile("f", &format!("[[{zeros}]].exists(l, (l + l + l){body})")).unwrap()
        };
        for body in [
            ".all(x, x == 0)",
            ".map(x, x).size() > 0",
            ".filter(x, x == 0).size() > 0",
        ] {
            assert_eq!(
                m(&over(body), &a),
                Err(EvalError::Stopped(Stop::Steps)),
                "{body}"
            );
        }
        // A deadline or a cancellation stops it too, and the next evaluation at once.
        let small = Rule::compile("f", "[1, 2].all(x, x > 0)").unwrap();
        let meter = Meter::new(MAX_STEPS, Duration::ZERO);
        let vars = small.vars(&a);
        assert_eq!(
            small.eval(&vars.context(&meter), &meter),
            Err(EvalError::Stopped(Stop::Deadline))
        );
        let meter = Meter::standard();
        assert_eq!(small.eval(&vars.context(&meter), &meter), Ok(true));
        meter.cancel();
        assert_eq!(
            small.eval(&vars.context(&meter), &meter),
            Err(EvalError::Stopped(Stop::Cancelled))
        );
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// Pieces of CEL, glued at random: operators, brackets, literals, names, macros.
        fn piece() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("1".to_string()),
                Just("plan".to_string()),
                Just("seats".to_string()),
                Just("attributes".to_string()),
                Just("\"a\"".to_string()),
                Just("2.5".to_string()),
                Just("true".to_string()),
                Just("null".to_string()),
                Just(" + ".to_string()),
                Just(" - ".to_string()),
                Just(" * ".to_string()),
                Just(" / ".to_string()),
                Just(" % ".to_string()),
                Just(" == ".to_string()),
                Just(" < ".to_string()),
                Just(" && ".to_string()),
                Just(" || ".to_string()),
                Just("!".to_string()),
                Just(" ? ".to_string()),
                Just(" : ".to_string()),
                Just(" in ".to_string()),
                Just("(".to_string()),
                Just(")".to_string()),
                Just("[".to_string()),
                Just("]".to_string()),
                Just("{".to_string()),
                Just("}".to_string()),
                Just(",".to_string()),
                Just(".".to_string()),
                Just(".all(x, ".to_string()),
                Just(".exists(x, ".to_string()),
                Just(".map(x, ".to_string()),
                Just(".filter(x, ".to_string()),
                Just("size(".to_string()),
                Just("has(".to_string()),
                Just("x".to_string()),
                Just("'".to_string()),
                Just("\\".to_string()),
                Just("//".to_string()),
                Just("\n".to_string()),
                "[a-z]{1,3}".prop_map(|s| s),
                any::<char>().prop_map(|c| c.to_string()),
            ]
        }

        fn expression() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::collection::vec(piece(), 0..60).prop_map(|v| v.concat()),
                // Long runs of one piece: chains and nesting.
                (piece(), 1usize..2100).prop_map(|(p, n)| p.repeat(n)),
                // A valid rule, mutated.
                (0usize..40, any::<char>()).prop_map(|(i, c)| {
                    let mut s = r#"plan == "premium" && [1, 2].exists(x, x < seats)"#.to_string();
                    let i = (0..=i.min(s.len()))
                        .rev()
                        .find(|i| s.is_char_boundary(*i))
                        .unwrap_or(0);
                    s.insert(i, c);
                    s
                }),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

            /// Compiling and running anything never panics nor overflows, and every
            /// refusal is INVALID_ARGUMENT on the field, lowercase, with no period.
            #[test]
            fn the_front_end_never_panics(src in expression()) {
                let a = account(&[
                    ("plan", AttrValue::String("premium".into())),
                    ("seats", AttrValue::Number(3.0)),
                ]);
                match Rule::compile("scorecard.segment", &src) {
                    Ok(rule) => {
                        let _ = m(&rule, &a);
                    }
                    Err(e) => {
                        prop_assert!(matches!(e, ScorecardError::InvalidArgument { .. }), "{:?}", e);
                        let message = e.to_string();
                        prop_assert!(message.starts_with("scorecard.segment: "), "{}", message);
                        prop_assert!(!message.ends_with('.'), "{}", message);
                    }
                }
            }
        }
    }
}
