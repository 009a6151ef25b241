//! CEL expressions over accounts: assignment rules, bulk-assignment filters and scorecard
//! segments (see the CEL environment in profiles.proto and docs/profiles.md).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use cel::objects::{Key, Value};
use cel::{Context, Env, Program};
use chrono::{FixedOffset, Utc};
use vitals_server::ApiError;
use vitals_store::profiles::{AccountRecord, AttrValue};

/// Longest accepted expression, in bytes.
pub const MAX_EXPR_BYTES: usize = 4096;

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
    program: Arc<Program>,
    source: Arc<str>,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Rule").field(&self.source).finish()
    }
}

impl Rule {
    /// Compiles `source`; errors are INVALID_ARGUMENT on `field` with the line and column.
    pub fn compile(field: &str, source: &str) -> Result<Self, ApiError> {
        if source.len() > MAX_EXPR_BYTES {
            return Err(ApiError::invalid(
                field,
                format!("longer than {MAX_EXPR_BYTES} bytes"),
            ));
        }
        if source.trim().is_empty() {
            return Err(ApiError::invalid(field, "must not be empty"));
        }
        match Program::compile(source) {
            Ok(program) => Ok(Self {
                program: Arc::new(program),
                source: source.into(),
            }),
            Err(errs) => {
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
                Err(ApiError::invalid(field, msg))
            }
        }
    }

    /// Compiles `source` when it is not empty.
    pub fn compile_optional(field: &str, source: &str) -> Result<Option<Self>, ApiError> {
        if source.is_empty() {
            Ok(None)
        } else {
            Self::compile(field, source).map(Some)
        }
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// True when the expression evaluates to `true` for `account`; an evaluation error
    /// or a non-boolean result is no match.
    pub fn matches(&self, ctx: &Context<'_, '_>) -> bool {
        matches!(self.program.execute(ctx), Ok(Value::Bool(true)))
    }
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

    /// A CEL context binding these variables (build it once per account, then evaluate
    /// every rule against it).
    pub fn context(&self) -> Context<'_, '_> {
        let mut ctx = Context::with_env(ENV.clone());
        for (k, v) in &self.vars {
            ctx.add_variable_from_value(k.clone(), v.clone());
        }
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

    #[test]
    fn rules_see_attributes_both_ways() {
        let a = account(&[
            ("plan", AttrValue::String("premium".into())),
            ("seats", AttrValue::Number(60.0)),
        ]);
        let vars = AccountVars::new(&a, None);
        let ctx = vars.context();
        let r = |s: &str| Rule::compile("r", s).unwrap().matches(&ctx);
        assert!(r(r#"plan == "premium" && seats >= 50.0"#));
        assert!(r("seats >= 50"));
        assert!(r(r#"attributes.plan == "premium""#));
        assert!(r("has(attributes.seats)"));
        assert!(!r("has(attributes.region)"));
        assert!(!r(r#"region == "eu""#), "missing attribute is no match");
        assert!(r(r#"account_id == "a1" && status == "active""#));
        assert!(!r("seats"), "non-boolean is no match");
    }

    #[test]
    fn compile_errors_give_position() {
        let e = Rule::compile("health_profile.assignment_rule", "plan == ")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("health_profile.assignment_rule: "), "{e}");
        assert!(e.contains("line 1, column"), "{e}");
    }
}
