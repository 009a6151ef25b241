//! Static checks of a parsed CEL expression: size, depth, known functions and variables,
//! a boolean result, and the estimated cost of its comprehensions; then the rewrite that
//! lets the interpreter count comprehension steps (see [`TICK`]).

use cel::IdedExpr;
use cel::common::ast::{CallExpr, EntryExpr, Expr, LiteralValue, operators};

use super::{MAX_COST, MAX_DEPTH, MAX_NODES, UNKNOWN_RANGE};

/// The function the rewrite wraps around every comprehension step. `@` cannot start an
/// identifier in CEL source, so no expression can call it.
pub const TICK: &str = "@vitals_step";

/// Functions a rule may call: the CEL standard library as the `cel` crate provides it
/// (operators are syntax and always allowed; `has`, `all`, `exists`, `exists_one`,
/// `map` and `filter` are macros, expanded by the parser).
pub const FUNCTIONS: [&str; 25] = [
    "size",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "type",
    "dyn",
    "timestamp",
    "duration",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "getFullYear",
    "getMonth",
    "getDayOfYear",
    "getDayOfMonth",
    "getDate",
    "getDayOfWeek",
    "getHours",
    "getMinutes",
    "getSeconds",
    "getMilliseconds",
];

/// Type names that CEL resolves as identifiers (`type(x) == string`).
const TYPE_NAMES: [&str; 12] = [
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "timestamp",
    "duration",
];

/// Variables every expression sees (see the CEL environment in profiles.proto).
pub const BUILTIN_VARIABLES: [&str; 5] = [
    "account_id",
    "display_name",
    "status",
    "create_time",
    "attributes",
];

/// What the checks measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Measures {
    /// AST nodes, after macro expansion.
    pub nodes: usize,
    /// Depth of the AST.
    pub depth: usize,
    /// Estimated comprehension steps of one evaluation.
    pub cost: u64,
}

/// Why an expression was refused (the caller adds the field).
pub type Refusal = String;

/// Checks `expr`; `profile` tells whether the `profile` variable is bound (segments).
pub fn check(expr: &IdedExpr, profile: bool) -> Result<Measures, Refusal> {
    let mut w = Walker {
        profile,
        scope: Vec::new(),
        m: Measures::default(),
    };
    w.walk(expr, 1, 1)?;
    if w.m.cost > MAX_COST {
        return Err(format!(
            "its comprehensions would take an estimated {} steps, more than {MAX_COST} (a list literal counts its items, any other range {UNKNOWN_RANGE})",
            w.m.cost
        ));
    }
    match kind(expr) {
        Kind::Bool | Kind::Unknown => Ok(w.m),
        Kind::Not(what) => Err(format!("must be a bool expression, not {what}")),
    }
}

struct Walker<'e> {
    profile: bool,
    scope: Vec<&'e str>,
    m: Measures,
}

impl<'e> Walker<'e> {
    /// Walks `e` at `depth`, inside comprehensions that run `mult` times in all.
    fn walk(&mut self, e: &'e IdedExpr, depth: usize, mult: u64) -> Result<(), Refusal> {
        self.m.nodes += 1;
        self.m.depth = self.m.depth.max(depth);
        if self.m.nodes > MAX_NODES {
            return Err(format!("more than {MAX_NODES} expression nodes"));
        }
        if depth > MAX_DEPTH as usize {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        let d = depth + 1;
        match &e.expr {
            Expr::Unspecified => return Err("invalid cel".into()),
            Expr::Literal(_) => {}
            Expr::Ident(name) => self.ident(name)?,
            Expr::Select(s) => self.walk(&s.operand, d, mult)?,
            Expr::Call(c) => {
                if !is_operator(&c.func_name) && !FUNCTIONS.contains(&c.func_name.as_str()) {
                    return Err(format!("unknown function {:?}", c.func_name));
                }
                if let Some(t) = &c.target {
                    self.walk(t, d, mult)?;
                }
                for a in &c.args {
                    self.walk(a, d, mult)?;
                }
            }
            Expr::List(l) => {
                for x in &l.elements {
                    self.walk(x, d, mult)?;
                }
            }
            Expr::Map(m) => {
                for entry in &m.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(me) => {
                            self.walk(&me.key, d, mult)?;
                            self.walk(&me.value, d, mult)?;
                        }
                        EntryExpr::StructField(f) => self.walk(&f.value, d, mult)?,
                    }
                }
            }
            Expr::Struct(s) => {
                return Err(format!(
                    "message construction ({}{{...}}) is not supported",
                    s.type_name
                ));
            }
            Expr::Comprehension(c) => {
                self.walk(&c.iter_range, d, mult)?;
                self.walk(&c.accu_init, d, mult)?;
                let inner = mult.saturating_mul(range_size(&c.iter_range));
                self.m.cost = self.m.cost.saturating_add(inner);
                let before = self.scope.len();
                self.scope.push(&c.iter_var);
                self.scope.push(&c.accu_var);
                self.walk(&c.loop_cond, d, inner)?;
                self.walk(&c.loop_step, d, inner)?;
                self.walk(&c.result, d, inner)?;
                self.scope.truncate(before);
            }
        }
        Ok(())
    }

    fn ident(&self, name: &str) -> Result<(), Refusal> {
        if self.scope.contains(&name)
            || BUILTIN_VARIABLES.contains(&name)
            || TYPE_NAMES.contains(&name)
            || (self.profile && name == "profile")
        {
            return Ok(());
        }
        if name == "profile" {
            return Err(
                "unknown variable \"profile\" (it is bound in scorecard segments only)".into(),
            );
        }
        if is_attribute_name(name) {
            // Any other name is read as an account attribute (accounts without it do
            // not match).
            return Ok(());
        }
        Err(format!("unknown variable {name:?}"))
    }
}

/// The syntax of attribute names (ingestion accepts nothing else): `[A-Za-z_][A-Za-z0-9_]*`,
/// 1..128 bytes.
pub fn is_attribute_name(name: &str) -> bool {
    let mut c = name.bytes();
    name.len() <= 128
        && c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == b'_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == b'_')
}

fn is_operator(name: &str) -> bool {
    name.starts_with('_')
        || name.starts_with('@')
        || name == operators::LOGICAL_NOT
        || name == operators::NEGATE
}

/// Iterations of a comprehension over `range`: the items of a literal, else the most an
/// account's attributes map can hold.
fn range_size(range: &IdedExpr) -> u64 {
    match &range.expr {
        Expr::List(l) => l.elements.len() as u64,
        Expr::Map(m) => m.entries.len() as u64,
        _ => UNKNOWN_RANGE,
    }
}

/// What an expression is known to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Not(&'static str),
    Unknown,
}

fn kind(e: &IdedExpr) -> Kind {
    match &e.expr {
        Expr::Literal(l) => match l {
            LiteralValue::Boolean(_) => Kind::Bool,
            LiteralValue::Int(_) => Kind::Not("an int"),
            LiteralValue::UInt(_) => Kind::Not("a uint"),
            LiteralValue::Double(_) => Kind::Not("a double"),
            LiteralValue::String(_) => Kind::Not("a string"),
            LiteralValue::Bytes(_) => Kind::Not("bytes"),
            LiteralValue::Null => Kind::Not("null"),
        },
        Expr::List(_) => Kind::Not("a list"),
        Expr::Map(_) | Expr::Struct(_) => Kind::Not("a map"),
        Expr::Select(s) if s.test => Kind::Bool,
        Expr::Ident(_) | Expr::Select(_) | Expr::Unspecified => Kind::Unknown,
        Expr::Comprehension(c) => match &c.result.expr {
            Expr::Ident(n) if *n == c.accu_var => kind(&c.accu_init),
            _ => kind(&c.result),
        },
        Expr::Call(c) => call_kind(c),
    }
}

fn call_kind(c: &CallExpr) -> Kind {
    match c.func_name.as_str() {
        operators::LOGICAL_AND
        | operators::LOGICAL_OR
        | operators::LOGICAL_NOT
        | operators::EQUALS
        | operators::NOT_EQUALS
        | operators::LESS
        | operators::LESS_EQUALS
        | operators::GREATER
        | operators::GREATER_EQUALS
        | operators::IN
        | operators::NOT_STRICTLY_FALSE
        | "startsWith"
        | "endsWith"
        | "contains"
        | "matches"
        | "bool" => Kind::Bool,
        operators::ADD
        | operators::SUBSTRACT
        | operators::MULTIPLY
        | operators::DIVIDE
        | operators::MODULO
        | operators::NEGATE => Kind::Not("an arithmetic result"),
        operators::CONDITIONAL => match c.args.as_slice() {
            [_, a, b] => match (kind(a), kind(b)) {
                (Kind::Not(w), Kind::Not(_)) => Kind::Not(w),
                (Kind::Bool, Kind::Bool) => Kind::Bool,
                _ => Kind::Unknown,
            },
            _ => Kind::Unknown,
        },
        "size" | "int" | "getFullYear" | "getMonth" | "getDayOfYear" | "getDayOfMonth"
        | "getDate" | "getDayOfWeek" | "getHours" | "getMinutes" | "getSeconds"
        | "getMilliseconds" => Kind::Not("an int"),
        "uint" => Kind::Not("a uint"),
        "double" => Kind::Not("a double"),
        "string" => Kind::Not("a string"),
        "bytes" => Kind::Not("bytes"),
        "timestamp" => Kind::Not("a timestamp"),
        "duration" => Kind::Not("a duration"),
        "type" => Kind::Not("a type"),
        _ => Kind::Unknown,
    }
}

/// Wraps every comprehension step in a call to [`TICK`], so that evaluation counts steps
/// and stops when its budget is spent. Where the step is wrapped keeps the `cel`
/// crate's fast paths: a `map` / `filter` step (`@result + [x]`, optionally guarded)
/// has its item (and guard) wrapped, any other comprehension its loop condition, which
/// is checked before every step and whose error ends the loop at once.
pub fn instrument(e: &mut IdedExpr) {
    match &mut e.expr {
        Expr::Unspecified | Expr::Literal(_) | Expr::Ident(_) => {}
        Expr::Select(s) => instrument(&mut s.operand),
        Expr::Call(c) => {
            if let Some(t) = &mut c.target {
                instrument(t);
            }
            c.args.iter_mut().for_each(instrument);
        }
        Expr::List(l) => l.elements.iter_mut().for_each(instrument),
        Expr::Map(m) => {
            for entry in &mut m.entries {
                match &mut entry.expr {
                    EntryExpr::MapEntry(me) => {
                        instrument(&mut me.key);
                        instrument(&mut me.value);
                    }
                    EntryExpr::StructField(f) => instrument(&mut f.value),
                }
            }
        }
        Expr::Struct(s) => {
            for entry in &mut s.entries {
                if let EntryExpr::StructField(f) = &mut entry.expr {
                    instrument(&mut f.value);
                }
            }
        }
        Expr::Comprehension(c) => {
            instrument(&mut c.iter_range);
            instrument(&mut c.accu_init);
            instrument(&mut c.loop_cond);
            instrument(&mut c.loop_step);
            instrument(&mut c.result);
            let accu = c.accu_var.clone();
            if matches!(c.loop_cond.expr, Expr::Literal(_)) {
                if !wrap_append_step(&mut c.loop_step, &accu) {
                    wrap(&mut c.loop_step);
                }
            } else {
                wrap(&mut c.loop_cond);
            }
        }
    }
}

/// Wraps the items (and guard) of a `map` / `filter` step; false when `step` has another
/// shape.
fn wrap_append_step(step: &mut IdedExpr, accu: &str) -> bool {
    let is_accu = |e: &IdedExpr| matches!(&e.expr, Expr::Ident(n) if n == accu);
    let Expr::Call(call) = &mut step.expr else {
        return false;
    };
    if call.target.is_some() {
        return false;
    }
    if call.func_name == operators::ADD {
        if let [lhs, rhs] = call.args.as_mut_slice()
            && is_accu(lhs)
            && let Expr::List(items) = &mut rhs.expr
        {
            items.elements.iter_mut().for_each(wrap);
            return !items.elements.is_empty();
        }
        return false;
    }
    if call.func_name == operators::CONDITIONAL
        && let [guard, then, otherwise] = call.args.as_mut_slice()
        && is_accu(otherwise)
        && wrap_append_step(then, accu)
    {
        wrap(guard);
        return true;
    }
    false
}

fn wrap(e: &mut IdedExpr) {
    let inner = std::mem::take(e);
    *e = IdedExpr {
        id: inner.id,
        expr: Expr::Call(CallExpr {
            func_name: TICK.to_string(),
            target: None,
            args: vec![inner],
        }),
    };
}
