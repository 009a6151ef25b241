//! Bearer-token authentication with roles, as a tower layer keyed on the gRPC path.
//!
//! Clients send `authorization: Bearer <token>`. The server knows tokens only by their
//! SHA-256 hash (from `VITALS_TOKENS_FILE`, plus the all-in-one's first-start token), each
//! with a role. Roles are ordered: `read` < `ingest` < `admin`; a role may call what it
//! needs and everything a lower role may call (so `admin` calls everything). Health and
//! reflection need no token. The per-RPC table is [`RPC_ROLES`] (docs/api.md, the proto
//! comments and docs/security.md say the same); an RPC missing from it needs `admin`, so
//! a new RPC is closed until someone decides its role.
//!
//! A missing, malformed or unknown token gets UNAUTHENTICATED; a known token whose role is
//! too low gets PERMISSION_DENIED. The presented token is hashed and compared with every
//! configured hash in constant time, without an early exit.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use tonic::Status;
use tonic::body::Body;

use crate::config::{AuthMode, ServerConfig};

/// Length in bytes of a token hash (SHA-256).
pub const HASH_LEN: usize = 32;

/// Prefix of the tokens Vitals generates, so secret scanners can recognise them.
pub const TOKEN_PREFIX: &str = "vitals_";

/// What a token may do. Ordered: each role includes the rights of the roles below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Read scores, profiles, accounts, models.
    Read,
    /// Write data (ingestion writes, outcomes), plus everything `read` may do.
    Ingest,
    /// Everything: profiles, scorecards, assignment, computing scores, training.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::Read, Role::Ingest, Role::Admin];

    /// The name used in the tokens file and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Ingest => "ingest",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may call an RPC that needs `required`.
    pub fn allows(self, required: Role) -> bool {
        self >= required
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Role::Read),
            "ingest" => Ok(Role::Ingest),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?} (expected ingest, read or admin)"
            )),
        }
    }
}

/// The role each Vitals RPC needs, by gRPC path. Kept equal to the services' descriptors
/// by a test: adding an RPC to a .proto without adding it here fails the build's tests.
pub const RPC_ROLES: &[(&str, Role)] = &[
    // Ingestion: writes need ingest, reads need read.
    (
        "/vitals.ingestion.v1.IngestionService/UpsertAccounts",
        Role::Ingest,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/GetAccount",
        Role::Read,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/ListAccounts",
        Role::Read,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/UpsertContacts",
        Role::Ingest,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/IngestEvents",
        Role::Ingest,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/IngestEvent",
        Role::Ingest,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/RecordInteractions",
        Role::Ingest,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/RecordPulses",
        Role::Ingest,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/UpsertSubscriptions",
        Role::Ingest,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/UpsertEventTypes",
        Role::Ingest,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/ListEventTypes",
        Role::Read,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/UpsertCustomMetricDefinitions",
        Role::Ingest,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/RecordCustomMetrics",
        Role::Ingest,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/SetCustomScoreFields",
        Role::Ingest,
    ),
    (
        "/vitals.ingestion.v1.IngestionService/RecordWebhookSignals",
        Role::Ingest,
    ),
    // Profiles: every write (including assignment) needs admin.
    (
        "/vitals.profiles.v1.ProfilesService/CreateHealthProfile",
        Role::Admin,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/GetHealthProfile",
        Role::Read,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/ListHealthProfiles",
        Role::Read,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/UpdateHealthProfile",
        Role::Admin,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/DeleteHealthProfile",
        Role::Admin,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/CreateProfileCrossProduct",
        Role::Admin,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/AssignAccounts",
        Role::Admin,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/UnpinAccounts",
        Role::Admin,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/ReassignAccounts",
        Role::Admin,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/GetAccountProfile",
        Role::Read,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/GetPopulationReport",
        Role::Read,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/CreateScorecard",
        Role::Admin,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/GetScorecard",
        Role::Read,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/ListScorecards",
        Role::Read,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/UpdateScorecard",
        Role::Admin,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/DeleteScorecard",
        Role::Admin,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/ReorderScorecards",
        Role::Admin,
    ),
    (
        "/vitals.profiles.v1.ProfilesService/PreviewScorecard",
        Role::Read,
    ),
    // Scoring: computing needs admin, everything else read.
    (
        "/vitals.scoring.v1.ScoringService/ComputeScores",
        Role::Admin,
    ),
    ("/vitals.scoring.v1.ScoringService/GetScore", Role::Read),
    ("/vitals.scoring.v1.ScoringService/ListScores", Role::Read),
    (
        "/vitals.scoring.v1.ScoringService/GetScoreHistory",
        Role::Read,
    ),
    (
        "/vitals.scoring.v1.ScoringService/GetDistribution",
        Role::Read,
    ),
    ("/vitals.scoring.v1.ScoringService/ExplainScore", Role::Read),
    ("/vitals.scoring.v1.ScoringService/WatchScores", Role::Read),
    ("/vitals.scoring.v1.ScoringService/ListKpis", Role::Read),
    // Learner: outcomes are data (ingest), training is admin, the rest read.
    (
        "/vitals.learner.v1.LearnerService/RecordOutcomes",
        Role::Ingest,
    ),
    ("/vitals.learner.v1.LearnerService/ListOutcomes", Role::Read),
    ("/vitals.learner.v1.LearnerService/Train", Role::Admin),
    ("/vitals.learner.v1.LearnerService/GetWeights", Role::Read),
    ("/vitals.learner.v1.LearnerService/GetModel", Role::Read),
    ("/vitals.learner.v1.LearnerService/ListModels", Role::Read),
    ("/vitals.learner.v1.LearnerService/Evaluate", Role::Read),
    ("/vitals.learner.v1.LearnerService/PredictChurn", Role::Read),
];

/// gRPC services anyone may call: probes and tooling must work without a token.
pub const PUBLIC_SERVICES: &[&str] = &[
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// What a call to a gRPC path needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No token (health, reflection).
    Public,
    /// A token whose role allows this one.
    Needs(Role),
}

/// The access rule of the gRPC `path` (`/package.Service/Method`). Unknown paths need
/// `admin`: fail closed.
pub fn required_access(path: &str) -> Access {
    let service = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .map(|(service, _)| service);
    if service.is_some_and(|s| PUBLIC_SERVICES.contains(&s)) {
        return Access::Public;
    }
    RPC_ROLES
        .iter()
        .find(|(p, _)| *p == path)
        .map_or(Access::Needs(Role::Admin), |(_, role)| Access::Needs(*role))
}

/// Errors of the authentication setup (all are configuration errors, exit code 64).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The tokens file cannot be read.
    #[error("cannot read the tokens file {path} (VITALS_TOKENS_FILE): {reason}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// A line of the tokens file is malformed.
    #[error("{source_name} line {line}: {reason}")]
    Parse {
        /// The file (or other source) being parsed.
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Auth is on and no token is configured, so nothing could ever be called.
    #[error(
        "authentication is on but no token is configured: set VITALS_TOKENS_FILE (lines \
         `<role> <sha256 hex of the token>`, see docs/security.md) or turn auth off with \
         VITALS_AUTH=off / --auth off for local use"
    )]
    NoTokens,
    /// The operating system gave no randomness for a new token.
    #[error("cannot generate a token: {0}")]
    Random(String),
}

/// One accepted token: its role and the SHA-256 of the token. The token itself is never
/// kept.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenEntry {
    /// What the token may do.
    pub role: Role,
    /// SHA-256 of the token's UTF-8 bytes.
    pub hash: [u8; HASH_LEN],
    /// A name for logs (the optional third field of a tokens-file line, else `line N`).
    pub label: String,
}

impl fmt::Debug for TokenEntry {
    // Only a prefix of the hash: enough to tell entries apart in a log, not to brute-force.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEntry")
            .field("role", &self.role)
            .field("hash", &format!("{}…", &hex::encode(&self.hash[..4])))
            .field("label", &self.label)
            .finish()
    }
}

impl TokenEntry {
    /// The entry accepting `token` with `role`.
    pub fn for_token(role: Role, token: &str, label: impl Into<String>) -> Self {
        Self {
            role,
            hash: hash_token(token),
            label: label.into(),
        }
    }
}

/// SHA-256 of a token, as stored (same as `printf '%s' "$token" | sha256sum`).
pub fn hash_token(token: &str) -> [u8; HASH_LEN] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new random token: [`TOKEN_PREFIX`] and 256 random bits in hex.
pub fn generate_token() -> Result<String, AuthError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
}

/// Parses a tokens file: one `<role> <sha256 hex> [label]` per line; blank lines and
/// lines starting with `#` are ignored. `source_name` names the file in errors.
pub fn parse_tokens(text: &str, source_name: &str) -> Result<Vec<TokenEntry>, AuthError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |reason: String| AuthError::Parse {
            source_name: source_name.to_string(),
            line: i + 1,
            reason,
        };
        let mut fields = line.split_whitespace();
        let (Some(role), Some(hash)) = (fields.next(), fields.next()) else {
            return Err(err(
                "expected `<role> <sha256 hex of the token> [label]`".into()
            ));
        };
        let role: Role = role.parse().map_err(err)?;
        if hash.len() != 2 * HASH_LEN {
            // Almost always a token pasted in clear instead of its hash; do not echo it.
            return Err(err(format!(
                "the hash must be 64 hex digits (SHA-256), got {} characters; store \
                 `printf '%s' \"$token\" | sha256sum`, not the token",
                hash.len()
            )));
        }
        let mut bytes = [0u8; HASH_LEN];
        hex::decode_to_slice(hash, &mut bytes)
            .map_err(|_| err("the hash must be 64 hex digits (SHA-256)".into()))?;
        let label: Vec<&str> = fields.collect();
        let label = if label.is_empty() {
            format!("{source_name} line {}", i + 1)
        } else {
            label.join(" ")
        };
        if let Some(prev) = out.iter().find(|e: &&TokenEntry| e.hash == bytes) {
            return Err(err(format!(
                "the same hash is already listed ({}); a token has one role",
                prev.label
            )));
        }
        out.push(TokenEntry {
            role,
            hash: bytes,
            label,
        });
    }
    Ok(out)
}

/// Reads and parses the tokens file at `path`.
pub fn load_tokens_file(path: &Path) -> Result<Vec<TokenEntry>, AuthError> {
    let text = std::fs::read_to_string(path).map_err(|e| AuthError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    parse_tokens(&text, &path.display().to_string())
}

/// Label of the first-start admin token in logs.
pub const FIRST_START_LABEL: &str = "first-start admin token";

/// The all-in-one's first-start admin token. When auth is on and no tokens file is
/// configured, accepts the admin token whose hash the database keeps (table
/// `auth_tokens`, see docs/security.md), creating it first when there is none: the new
/// token is returned (for the caller to hand over once: [`write_token_file`]) and only
/// its SHA-256 is stored. Does nothing
/// (and returns `None`) when auth is off or tokens are configured (a tokens file, or
/// `extra_tokens` set by an embedder): configured tokens then replace the stored one.
pub async fn first_start_admin_token(
    config: &mut ServerConfig,
    store: &vitals_store::Store,
) -> Result<Option<String>, crate::RunError> {
    use vitals_store::auth::{FIRST_START_ADMIN, StoredToken, insert_token_if_absent, list_tokens};
    if config.auth == AuthMode::Off
        || config.tokens_file.is_some()
        || !config.extra_tokens.is_empty()
    {
        return Ok(None);
    }
    let mut created = None;
    let mut stored = list_tokens(store).await?;
    if stored.is_empty() {
        let token = generate_token().map_err(|e| crate::RunError::Config(e.to_string()))?;
        let row = StoredToken {
            name: FIRST_START_ADMIN.to_string(),
            role: Role::Admin.as_str().to_string(),
            token_sha256: hex::encode(hash_token(&token)),
            created_at: chrono::Utc::now(),
        };
        // Another replica may have won the race on a fresh database: then its token is
        // the one, and this process shows none.
        if insert_token_if_absent(store, &row).await? {
            created = Some(token);
        }
        stored = list_tokens(store).await?;
    }
    for row in stored {
        let lines = format!("{} {} {FIRST_START_LABEL}", row.role, row.token_sha256);
        let parsed = parse_tokens(&lines, "database table auth_tokens")
            .map_err(|e| crate::RunError::Config(e.to_string()))?;
        config.extra_tokens.extend(parsed);
    }
    Ok(created)
}

/// Where the all-in-one writes a new first-start admin token unless told otherwise
/// (`VITALS_ADMIN_TOKEN_FILE`): next to a SQLite database file, `<file>.admin-token`;
/// for any other database, `vitals-admin-token` in the working directory.
pub fn default_token_file(database_url: &str) -> PathBuf {
    let file = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .map(|rest| rest.split('?').next().unwrap_or(rest))
        .filter(|f| {
            !f.is_empty() && !f.contains(":memory:") && !database_url.contains("mode=memory")
        });
    match file {
        Some(f) => PathBuf::from(format!("{f}.admin-token")),
        None => PathBuf::from("vitals-admin-token"),
    }
}

/// Writes `token` (and a newline) to `path`, readable and writable by its owner only
/// (mode 0600 on Unix), replacing the file at once (written aside, then renamed).
pub fn write_token_file(path: &Path, token: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut aside = path.as_os_str().to_owned();
    aside.push(".new");
    let aside = PathBuf::from(aside);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let mut f = options.open(&aside)?;
        // A file left from before keeps its mode through `open`: set it.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        writeln!(f, "{token}")?;
        f.sync_all()?;
    }
    #[cfg(not(unix))]
    {
        let mut f = options.open(&aside)?;
        writeln!(f, "{token}")?;
        f.sync_all()?;
    }
    std::fs::rename(&aside, path)
}

/// The text the all-in-one prints on a terminal when it creates the first-start admin
/// token (written to `path`); the token itself is not in it.
pub fn first_start_message(path: &Path) -> String {
    let shown = path.display();
    format!(
        "\n\
         Vitals created an admin token and wrote it to {shown}\n\
         (readable by you only; the database keeps only its SHA-256, table auth_tokens).\n\
         Use it with:\n\
         \n    export VITALS_TOKEN=$(cat {shown})\n\n\
         Clients send it as `authorization: Bearer $VITALS_TOKEN` (vitals load reads\n\
         VITALS_TOKEN). To use your own tokens instead, set VITALS_TOKENS_FILE\n\
         (docs/security.md).\n"
    )
}

/// Who is calling, once the token is accepted; put in the request's extensions so a
/// handler can read it (`request.extensions().get::<Principal>()`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The token's role.
    pub role: Role,
    /// The token's label.
    pub label: String,
}

/// The set of accepted tokens and the check of one call.
#[derive(Clone, Debug)]
pub struct Authenticator {
    tokens: Vec<TokenEntry>,
}

impl Authenticator {
    /// An authenticator accepting `tokens`; an empty set is refused ([`AuthError::NoTokens`]).
    pub fn new(tokens: Vec<TokenEntry>) -> Result<Self, AuthError> {
        if tokens.is_empty() {
            return Err(AuthError::NoTokens);
        }
        Ok(Self { tokens })
    }

    /// The authenticator `config` asks for: `None` when auth is off, else the tokens of
    /// `tokens_file` plus `extra_tokens` (at least one).
    pub fn from_config(config: &ServerConfig) -> Result<Option<Self>, AuthError> {
        if config.auth == AuthMode::Off {
            return Ok(None);
        }
        let mut tokens = match &config.tokens_file {
            Some(path) => load_tokens_file(path)?,
            None => Vec::new(),
        };
        tokens.extend(config.extra_tokens.iter().cloned());
        Self::new(tokens).map(Some)
    }

    /// How many tokens are accepted, per role (read, ingest, admin).
    pub fn counts(&self) -> [usize; 3] {
        let mut c = [0; 3];
        for t in &self.tokens {
            c[t.role as usize] += 1;
        }
        c
    }

    /// The entry whose hash matches `token`, compared in constant time with every entry.
    fn lookup(&self, token: &str) -> Option<&TokenEntry> {
        let hash = hash_token(token);
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        for (i, entry) in self.tokens.iter().enumerate() {
            let eq = entry.hash.ct_eq(&hash);
            // No early exit and no data-dependent branch: every entry is compared.
            index = u32::conditional_select(&index, &(i as u32), eq);
            found |= eq;
        }
        if bool::from(found) {
            self.tokens.get(index as usize)
        } else {
            None
        }
    }

    /// Decides a call to `path` with `headers`: `Ok(None)` for a public path,
    /// `Ok(Some(principal))` for an allowed call, or the status to answer with.
    pub fn check(
        &self,
        path: &str,
        headers: &http::HeaderMap,
    ) -> Result<Option<Principal>, Status> {
        let Access::Needs(required) = required_access(path) else {
            return Ok(None);
        };
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(Status::unauthenticated(
                "missing bearer token: send the metadata `authorization: Bearer <token>`",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Status::unauthenticated(
                    "malformed authorization metadata: expected `Bearer <token>`",
                )
            })?;
        let Some(entry) = self.lookup(token) else {
            return Err(Status::unauthenticated("invalid bearer token"));
        };
        let role = entry.role;
        if !role.allows(required) {
            let rpc = path.strip_prefix('/').unwrap_or(path);
            return Err(Status::permission_denied(format!(
                "role {role} may not call {rpc} (it needs {required})"
            )));
        }
        Ok(Some(Principal {
            role,
            label: entry.label.clone(),
        }))
    }
}

/// The tower layer checking every call with an [`Authenticator`].
#[derive(Clone, Debug)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    /// A layer checking calls with `auth`.
    pub fn new(auth: Authenticator) -> Self {
        Self {
            auth: Arc::new(auth),
        }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// The service made by [`AuthLayer`]: answers refused calls itself, passes the others on
/// with a [`Principal`] in their extensions.
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = futures::future::Either<
        S::Future,
        futures::future::Ready<Result<http::Response<Body>, S::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        match self.auth.check(req.uri().path(), req.headers()) {
            Ok(principal) => {
                if let Some(p) = principal {
                    tracing::debug!(role = %p.role, token = %p.label, "authenticated");
                    req.extensions_mut().insert(p);
                }
                futures::future::Either::Left(self.inner.call(req))
            }
            Err(status) => {
                tracing::info!(
                    rpc = req.uri().path(),
                    code = ?status.code(),
                    reason = status.message(),
                    "call refused"
                );
                futures::future::Either::Right(futures::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        if let Some(a) = auth {
            h.insert(http::header::AUTHORIZATION, a.parse().unwrap());
        }
        h
    }

    fn authenticator() -> Authenticator {
        Authenticator::new(vec![
            TokenEntry::for_token(Role::Read, "r", "r"),
            TokenEntry::for_token(Role::Ingest, "i", "i"),
            TokenEntry::for_token(Role::Admin, "a", "a"),
        ])
        .unwrap()
    }

    #[test]
    fn hash_matches_sha256sum() {
        // printf '%s' example-read-token | sha256sum (deploy/k8s/base/secrets/tokens.example)
        assert_eq!(
            hex::encode(hash_token("example-read-token")),
            "142d880975fd8d63254c0465c338edbae6b8eeb3ebefbe0a5cd3c2ec897ddf05"
        );
    }

    #[test]
    fn parses_the_deploy_example_file() {
        let text = include_str!("../../../deploy/k8s/base/secrets/tokens.example");
        let tokens = parse_tokens(text, "tokens.example").unwrap();
        assert_eq!(tokens.len(), 3);
        let a = Authenticator::new(tokens).unwrap();
        let p = a
            .check(
                "/vitals.scoring.v1.ScoringService/ComputeScores",
                &headers(Some("Bearer example-admin-token")),
            )
            .unwrap()
            .unwrap();
        assert_eq!(p.role, Role::Admin);
    }

    #[test]
    fn malformed_lines_are_refused_with_their_number() {
        let e = parse_tokens("# c\n\nboss 00\n", "f")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f line 3: unknown role"), "{e}");
        let e = parse_tokens("read my-secret-token\n", "f")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("64 hex digits") && !e.contains("my-secret"),
            "{e}"
        );
        let e = parse_tokens(&format!("read {}\n", "zz".repeat(32)), "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("hex"), "{e}");
        let h = hex::encode(hash_token("x"));
        let e = parse_tokens(&format!("read {h}\nadmin {h}\n"), "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("already listed"), "{e}");
        let t = parse_tokens(&format!("  admin {h} ci deploy bot \n"), "f").unwrap();
        assert_eq!(t[0].label, "ci deploy bot");
        assert!(matches!(
            Authenticator::new(vec![]),
            Err(AuthError::NoTokens)
        ));
    }

    #[test]
    fn codes_for_missing_bad_and_low_tokens() {
        let a = authenticator();
        let train = "/vitals.learner.v1.LearnerService/Train";
        let code = |h| a.check(train, &headers(h)).unwrap_err().code();
        assert_eq!(code(None), tonic::Code::Unauthenticated);
        assert_eq!(code(Some("Basic YQ==")), tonic::Code::Unauthenticated);
        assert_eq!(code(Some("Bearer ")), tonic::Code::Unauthenticated);
        assert_eq!(code(Some("Bearer nope")), tonic::Code::Unauthenticated);
        assert_eq!(code(Some("Bearer i")), tonic::Code::PermissionDenied);
        assert_eq!(code(Some("Bearer r")), tonic::Code::PermissionDenied);
        assert!(a.check(train, &headers(Some("bearer a"))).is_ok());
        let msg = a
            .check(train, &headers(Some("Bearer r")))
            .unwrap_err()
            .message()
            .to_string();
        assert_eq!(
            msg,
            "role read may not call vitals.learner.v1.LearnerService/Train (it needs admin)"
        );
    }

    #[test]
    fn public_and_unknown_paths() {
        let a = authenticator();
        assert_eq!(
            a.check("/grpc.health.v1.Health/Check", &headers(None))
                .unwrap(),
            None
        );
        assert_eq!(
            a.check(
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                &headers(None)
            )
            .unwrap(),
            None
        );
        // Unknown RPCs fail closed: admin only.
        assert_eq!(
            required_access("/vitals.scoring.v1.ScoringService/Nope"),
            Access::Needs(Role::Admin)
        );
        assert_eq!(required_access("garbage"), Access::Needs(Role::Admin));
        // A public service name as a prefix of something else is not public.
        assert_eq!(
            required_access("/grpc.health.v1.HealthX/Check"),
            Access::Needs(Role::Admin)
        );
    }

    #[tokio::test]
    async fn first_start_token_is_created_once_and_kept_hashed() {
        for backend in vitals_store::testing::backends() {
            let store = vitals_store::testing::fresh_store(backend).await.unwrap();
            let mut off = ServerConfig::for_tests("sqlite::memory:");
            assert_eq!(
                first_start_admin_token(&mut off, &store).await.unwrap(),
                None
            );
            let mut with_file = ServerConfig::for_tests("sqlite::memory:");
            with_file.auth = AuthMode::On;
            with_file.tokens_file = Some("tokens".into());
            assert_eq!(
                first_start_admin_token(&mut with_file, &store)
                    .await
                    .unwrap(),
                None
            );
            assert!(with_file.extra_tokens.is_empty());
            assert!(
                vitals_store::auth::list_tokens(&store)
                    .await
                    .unwrap()
                    .is_empty(),
                "nothing is created when auth is off or a tokens file is set"
            );

            let mut first = ServerConfig::for_tests("sqlite::memory:");
            first.auth = AuthMode::On;
            let token = first_start_admin_token(&mut first, &store)
                .await
                .unwrap()
                .expect("a new token");
            let shown = first_start_message(Path::new("db.admin-token"));
            assert!(
                shown.contains("export VITALS_TOKEN=$(cat db.admin-token)")
                    && !shown.contains(&token),
                "{shown}"
            );
            let stored = vitals_store::auth::list_tokens(&store).await.unwrap();
            assert_eq!(stored.len(), 1);
            assert_eq!(stored[0].role, "admin");
            assert_eq!(stored[0].token_sha256, hex::encode(hash_token(&token)));
            assert!(
                !stored[0]
                    .token_sha256
                    .contains(&token[TOKEN_PREFIX.len()..])
            );

            // The next start shows nothing and accepts the same token.
            let mut second = ServerConfig::for_tests("sqlite::memory:");
            second.auth = AuthMode::On;
            assert_eq!(
                first_start_admin_token(&mut second, &store).await.unwrap(),
                None
            );
            let a = Authenticator::from_config(&second).unwrap().unwrap();
            let p = a
                .check(
                    "/vitals.learner.v1.LearnerService/Train",
                    &headers(Some(&format!("Bearer {token}"))),
                )
                .unwrap()
                .unwrap();
            assert_eq!(p.role, Role::Admin);
            assert_eq!(p.label, FIRST_START_LABEL);
        }
    }

    #[test]
    fn token_file_default_is_next_to_the_database() {
        for (url, want) in [
            ("sqlite://vitals.db?mode=rwc", "vitals.db.admin-token"),
            ("sqlite://data/x.db", "data/x.db.admin-token"),
            ("sqlite:x.db", "x.db.admin-token"),
            ("sqlite::memory:", "vitals-admin-token"),
            ("sqlite://x.db?mode=memory", "vitals-admin-token"),
            ("postgres://u@h/db", "vitals-admin-token"),
        ] {
            assert_eq!(default_token_file(url), PathBuf::from(want), "{url}");
        }
    }

    #[test]
    fn token_file_is_private_and_replaced() {
        let dir = std::env::temp_dir().join(format!("vitals-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.admin-token");
        std::fs::write(&path, "old").unwrap();
        write_token_file(&path, "vitals_abc").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "vitals_abc\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
        let err = write_token_file(&dir.join("missing/t"), "x").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn generated_tokens_are_distinct_and_prefixed() {
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
    }
}
