//! Bearer-token authentication with roles, as a tower layer keyed on the gRPC path.
//!
//! Clients send `authorization: Bearer <token>`. The server knows tokens only by their
//! SHA-256 hash (from `VITALS_TOKENS_FILE`, plus the all-in-one's first-start token), each
//! with a role. Roles are ordered: `read` < `ingest` < `admin`; a role may call what it
//! needs and everything a lower role may call (so `admin` calls everything). Health and
//! reflection need no token. Each service declares the roles of its RPCs ([`RpcRoles`],
//! e.g. `vitals_ingestion::ROLES`; docs/api.md, the proto comments and docs/security.md
//! say the same) and hands them over with the service ([`crate::GrpcServer::add`]); an
//! RPC no service declared needs `admin`, so a new RPC is closed until its role is decided.
//!
//! A missing, malformed or unknown token gets UNAUTHENTICATED; a known token whose role is
//! too low gets PERMISSION_DENIED. The presented token is hashed and compared with every
//! configured hash in constant time, without an early exit.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use tonic::Status;
use tonic::body::Body;

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

/// The roles of one service's RPCs: `(gRPC path, role)`, declared by the service next to
/// its handlers (e.g. `vitals_ingestion::ROLES`) and given to
/// [`GrpcServer::add`](crate::GrpcServer::add) with the service.
pub type RpcRoles = &'static [(&'static str, Role)];

/// The role of every RPC a server serves, gathered from the [`RpcRoles`] of its services.
/// An RPC missing from it needs `admin`: a new RPC is closed until its service declares
/// its role.
#[derive(Clone, Debug, Default)]
pub struct RoleTable {
    rpcs: HashMap<&'static str, Role>,
}

impl RoleTable {
    /// Adds the roles of one service.
    pub fn extend(&mut self, roles: RpcRoles) {
        self.rpcs.extend(roles.iter().copied());
    }

    /// The access rule of the gRPC `path` (`/package.Service/Method`): public for health
    /// and reflection, the declared role, else `admin` (fail closed).
    pub fn access(&self, path: &str) -> Access {
        if is_public(path) {
            return Access::Public;
        }
        Access::Needs(self.rpcs.get(path).copied().unwrap_or(Role::Admin))
    }
}

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

/// Whether the gRPC `path` (`/package.Service/Method`) is a health or reflection call,
/// which needs no token.
pub fn is_public(path: &str) -> bool {
    let service = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .map(|(service, _)| service);
    service.is_some_and(|s| PUBLIC_SERVICES.contains(&s))
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
    roles: RoleTable,
}

impl Authenticator {
    /// An authenticator accepting `tokens`, with no RPC roles yet (every RPC needs
    /// `admin` until [`Self::with_roles`]); an empty set is refused
    /// ([`AuthError::NoTokens`]).
    pub fn new(tokens: Vec<TokenEntry>) -> Result<Self, AuthError> {
        if tokens.is_empty() {
            return Err(AuthError::NoTokens);
        }
        Ok(Self {
            tokens,
            roles: RoleTable::default(),
        })
    }

    /// This authenticator deciding each RPC's role from `roles`.
    pub fn with_roles(mut self, roles: RoleTable) -> Self {
        self.roles = roles;
        self
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

    /// The principal of `token` whatever the path (for HTTP routes, which check roles
    /// themselves), or `None` when no accepted token matches it.
    pub fn identify(&self, token: &str) -> Option<Principal> {
        self.lookup(token).map(|entry| Principal {
            role: entry.role,
            label: entry.label.clone(),
        })
    }

    /// Decides a call to `path` with `headers`: `Ok(None)` for a public path,
    /// `Ok(Some(principal))` for an allowed call, or the status to answer with.
    pub fn check(
        &self,
        path: &str,
        headers: &http::HeaderMap,
    ) -> Result<Option<Principal>, Status> {
        let Access::Needs(required) = self.roles.access(path) else {
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
        let mut roles = RoleTable::default();
        roles.extend(&[("/vitals.scoring.v1.ScoringService/GetScore", Role::Read)]);
        assert_eq!(
            roles.access("/vitals.scoring.v1.ScoringService/Nope"),
            Access::Needs(Role::Admin)
        );
        assert_eq!(roles.access("garbage"), Access::Needs(Role::Admin));
        // A public service name as a prefix of something else is not public.
        assert_eq!(
            roles.access("/grpc.health.v1.HealthX/Check"),
            Access::Needs(Role::Admin)
        );
        assert!(is_public("/grpc.health.v1.Health/Watch"));
        // A declared role is the role asked; without the table the same RPC is admin-only.
        let get = "/vitals.scoring.v1.ScoringService/GetScore";
        assert_eq!(roles.access(get), Access::Needs(Role::Read));
        let read = headers(Some("Bearer r"));
        assert_eq!(
            a.check(get, &read).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        let a = a.with_roles(roles);
        assert_eq!(a.check(get, &read).unwrap().unwrap().role, Role::Read);
    }

    #[test]
    fn generated_tokens_are_distinct_and_prefixed() {
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
    }
}
