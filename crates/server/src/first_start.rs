//! The all-in-one's first-start admin token: with auth on and no tokens configured, one
//! admin token is created on the first start, only its hash kept in the database, and the
//! token itself handed over once in a private file (docs/security.md).

use std::path::{Path, PathBuf};

#[cfg(test)]
use crate::auth::TOKEN_PREFIX;
use crate::auth::{Role, generate_token, hash_token, parse_tokens};
use crate::config::{AuthMode, ServerConfig};

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
            let a = second.authenticator().unwrap().unwrap();
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
}
