//! `vitals load`: brings a customer base in the sample-data format (see
//! `shared/data/README.md`) into a running Vitals through its public gRPC API.
//!
//! Files read from `--dir` (CSV, gzip, header row): `account.csv.gz`,
//! `subscription.csv.gz`, `event_type.csv.gz`, `event.csv.gz`. They are sent in that
//! order: accounts (with `channel`, `country` and `date_of_birth` attributes; create
//! time = first subscription start), event types, subscriptions, then events streamed in
//! batches over several IngestEvents streams with several batches in flight on each.
//! Finally churn outcomes derived from the subscriptions go to
//! `LearnerService.RecordOutcomes` (skipped with a notice when the learner does not
//! implement it yet).
//!
//! Everything is idempotent: ids are derived from the rows (subscription id =
//! `{product}:{start_date}`; event id = `{unix seconds}:{event type}` plus `:{n}` for the
//! n-th repeat of the same account, time and type in the file), so loading the same
//! folder twice stores nothing new (every event comes back as a duplicate).
//! Rows that cannot be read are skipped and reported with their line and reason; nothing
//! is skipped silently.

mod events;
mod files;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tonic::Request;
use tonic::transport::Endpoint;
use vitals_proto::ingestion::v1 as pb;
use vitals_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use vitals_server::client::{self, ClientError, ClientTls};
use vitals_server::tls::TlsError;

use events::{send_outcomes, stream_events};
pub use files::{Churn, derive_churns};
use files::{day_ts, read_accounts, read_event_types, read_subscriptions};

/// IngestEvents streams of a load unless told otherwise (`--streams`).
pub const DEFAULT_STREAMS: u64 = 16;

/// Settings of `vitals load`.
#[derive(Clone, Debug, clap::Args)]
pub struct LoadArgs {
    /// Folder holding account.csv.gz, subscription.csv.gz, event_type.csv.gz and
    /// event.csv.gz.
    #[arg(long)]
    pub dir: PathBuf,
    /// Address of the Vitals server (ingestion, and learner for the outcomes):
    /// `http://host:port`, or `https://host:port` with --ca-cert.
    #[arg(long, env = "VITALS_ADDR", default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// PEM CA certificate(s) that sign the server's certificate; required for an
    /// `https://` address (there are no built-in public roots).
    #[arg(long, env = "VITALS_CA_CERT", value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate presented to a server that requires mutual TLS; needs
    /// --client-key (and --ca-cert).
    #[arg(
        long,
        env = "VITALS_CLIENT_CERT",
        value_name = "PEM",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(
        long,
        env = "VITALS_CLIENT_KEY",
        value_name = "PEM",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,
    /// Bearer token sent as `authorization: Bearer <token>` when set.
    #[arg(long, env = "VITALS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Events per IngestEvents batch (1..=10000).
    #[arg(long, default_value = "1000", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch_size: u64,
    /// IngestEvents streams used at once. The server writes the batches of one stream one
    /// after the other, so this is how many event transactions a load keeps busy: 16
    /// matches the server's default `--ingestion-write-concurrency` on PostgreSQL (a
    /// SQLite server writes one at a time whatever the count).
    #[arg(long, default_value_t = DEFAULT_STREAMS, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub streams: u64,
    /// Unacknowledged batches allowed on each stream.
    #[arg(long, default_value = "4", value_parser = clap::value_parser!(u64).range(1..=64))]
    pub in_flight: u64,
    /// Load only accounts whose numeric id is divisible by N (and their
    /// subscriptions and events): a deterministic subset for tests and quick demos.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub account_divisor: Option<u64>,
    /// Subscriptions ending on or before this date with no renewal within 7 days are
    /// churns; default: the latest subscription start in the file (the data's end).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub churn_cutoff: Option<NaiveDate>,
    /// Do not send churn outcomes to the learner.
    #[arg(long)]
    pub no_outcomes: bool,
}

impl LoadArgs {
    /// Settings for `dir` and `addr` with every other value at its default.
    pub fn new(dir: impl Into<PathBuf>, addr: impl Into<String>) -> Self {
        Self {
            dir: dir.into(),
            addr: addr.into(),
            ca_cert: None,
            client_cert: None,
            client_key: None,
            token: None,
            batch_size: 1000,
            streams: DEFAULT_STREAMS,
            in_flight: 4,
            account_divisor: None,
            churn_cutoff: None,
            no_outcomes: false,
        }
    }
}

/// Why `vitals load` failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file is missing or unreadable.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The server address is not a URL.
    #[error("invalid --addr {0:?}: {1}")]
    Addr(String, String),
    /// A TLS setting is unusable (the message names the flag and the file).
    #[error("{0}")]
    Tls(String),
    /// The server could not be reached.
    #[error("cannot connect to {0}: {1}")]
    Connect(String, String),
    /// The server refused a call.
    #[error("{rpc} failed: {status}")]
    Rpc {
        /// The RPC.
        rpc: &'static str,
        /// The status it returned.
        status: Box<tonic::Status>,
    },
}

/// Counts for one kind of record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KindSummary {
    /// Rows read from the file (after the account filter).
    pub read: u64,
    /// Records new to the store.
    pub accepted: u64,
    /// Records already stored (duplicates, or updated upserts).
    pub duplicates: u64,
    /// Rows skipped, with the first few reasons.
    pub skipped: u64,
}

/// What a load did.
#[derive(Clone, Debug, Default)]
pub struct LoadSummary {
    /// Accounts (accepted = created, duplicates = updated).
    pub accounts: KindSummary,
    /// Event types (accepted = created, duplicates = updated).
    pub event_types: KindSummary,
    /// Subscriptions (accepted = created, duplicates = updated).
    pub subscriptions: KindSummary,
    /// Usage events (accepted = new, duplicates = already stored).
    pub events: KindSummary,
    /// Churn outcomes derived and sent (None when not sent: disabled or unimplemented).
    pub outcomes: Option<KindSummary>,
    /// Reasons of skipped rows (`file:line: reason`), at most 20.
    pub skip_reasons: Vec<String>,
    /// Time spent streaming events.
    pub events_elapsed: Duration,
    /// Time of the whole load.
    pub elapsed: Duration,
}

impl LoadSummary {
    /// Events per second while streaming them.
    pub fn events_per_second(&self) -> f64 {
        let s = self.events_elapsed.as_secs_f64();
        if s > 0.0 {
            (self.events.accepted + self.events.duplicates) as f64 / s
        } else {
            0.0
        }
    }

    /// A human-readable report.
    pub fn report(&self) -> String {
        let mut s = format!(
            "{:<14} {:>10} {:>10} {:>11} {:>8}\n",
            "kind", "read", "accepted", "duplicates", "skipped"
        );
        let mut line = |name: &str, k: &KindSummary| {
            s.push_str(&format!(
                "{:<14} {:>10} {:>10} {:>11} {:>8}\n",
                name, k.read, k.accepted, k.duplicates, k.skipped
            ));
        };
        line("accounts", &self.accounts);
        line("event types", &self.event_types);
        line("subscriptions", &self.subscriptions);
        line("events", &self.events);
        if let Some(o) = &self.outcomes {
            line("churn outcomes", o);
        }
        s.push_str("(for upserts, accepted = created and duplicates = updated)\n");
        for r in &self.skip_reasons {
            s.push_str(&format!("skipped: {r}\n"));
        }
        s.push_str(&format!(
            "elapsed {:.1} s; events streamed in {:.1} s = {:.0} events/s\n",
            self.elapsed.as_secs_f64(),
            self.events_elapsed.as_secs_f64(),
            self.events_per_second()
        ));
        s
    }

    fn skip(&mut self, reason: String) {
        if self.skip_reasons.len() < 20 {
            self.skip_reasons.push(reason);
        }
    }
}

/// Adds `authorization: Bearer <token>` when a token is set.
#[derive(Clone)]
struct Auth(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl Auth {
    fn new(token: Option<&str>) -> Result<Self, LoadError> {
        match token.filter(|t| !t.is_empty()) {
            None => Ok(Self(None)),
            Some(t) => format!("Bearer {t}")
                .parse()
                .map(|v| Self(Some(v)))
                .map_err(|_| LoadError::Addr("VITALS_TOKEN".into(), "not valid ASCII".into())),
        }
    }

    fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        if let Some(v) = &self.0 {
            r.metadata_mut().insert("authorization", v.clone());
        }
        r
    }
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    // Hidden when stderr is not a terminal (CI, logs, tests): indicatif's stderr target
    // draws only on a terminal.
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>14} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_message(what.to_string());
    pb
}

/// The command-line flag (and variable) of a TLS file setting of [`ClientTls`].
fn tls_flag(setting: &str) -> &'static str {
    match setting {
        "CA" => "--ca-cert (VITALS_CA_CERT)",
        "client certificate" => "--client-cert (VITALS_CLIENT_CERT)",
        "client key" => "--client-key (VITALS_CLIENT_KEY)",
        _ => "--ca-cert / --client-cert / --client-key",
    }
}

/// The endpoint of `args.addr` with the TLS settings of `args`; errors name the flag.
fn endpoint(args: &LoadArgs) -> Result<Endpoint, LoadError> {
    let addr = &args.addr;
    let has_tls = args.ca_cert.is_some() || args.client_cert.is_some() || args.client_key.is_some();
    if addr.starts_with("https://") && args.ca_cert.is_none() {
        return Err(LoadError::Addr(
            addr.clone(),
            "an https:// address needs --ca-cert (VITALS_CA_CERT), the PEM CA certificate that \
             signs the server's certificate"
                .into(),
        ));
    }
    if addr.starts_with("http://") && has_tls {
        return Err(LoadError::Addr(
            addr.clone(),
            "--ca-cert / --client-cert / --client-key are set but the address is http:// \
             (use https://)"
                .into(),
        ));
    }
    if args.client_cert.is_some() != args.client_key.is_some() {
        return Err(LoadError::Tls(
            "--client-cert (VITALS_CLIENT_CERT) and --client-key (VITALS_CLIENT_KEY) go together"
                .into(),
        ));
    }
    let tls = ClientTls {
        ca_cert: args.ca_cert.clone(),
        client_cert: args.client_cert.clone(),
        client_key: args.client_key.clone(),
        domain: None,
    };
    let ep = client::endpoint(addr, &tls).map_err(|e| match e {
        ClientError::Url { url, reason } => LoadError::Addr(url, reason),
        ClientError::Tls(TlsError::Read {
            setting,
            path,
            reason,
        }) => LoadError::Tls(format!(
            "cannot read {} {path}: {reason}",
            tls_flag(setting)
        )),
        ClientError::Tls(TlsError::NotPem {
            setting,
            path,
            expected,
        }) => LoadError::Tls(format!(
            "{} {path}: no PEM {expected} found",
            tls_flag(setting)
        )),
        ClientError::Tls(TlsError::Invalid { reason, .. }) => LoadError::Tls(format!(
            "TLS settings refused (--ca-cert / --client-cert / --client-key): {reason}"
        )),
        other => LoadError::Addr(addr.clone(), other.to_string()),
    })?;
    // A little longer than the services' own connect timeout: a loader may be started
    // together with the server.
    Ok(ep.connect_timeout(Duration::from_secs(10)))
}

/// Loads the folder of `args` into the server at `args.addr`; returns the counts.
pub async fn load(args: &LoadArgs) -> Result<LoadSummary, LoadError> {
    let started = Instant::now();
    let auth = Auth::new(args.token.as_deref())?;
    let endpoint = endpoint(args)?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| LoadError::Connect(args.addr.clone(), vitals_server::tls::error_chain(&e)))?;
    let mut summary = LoadSummary::default();
    let dir = args.dir.clone();
    let max_msg = 64 * 1024 * 1024;
    let mut client = IngestionServiceClient::new(channel.clone())
        .max_decoding_message_size(max_msg)
        .max_encoding_message_size(max_msg);

    // Subscriptions first in memory: they give each account's create time.
    let subs = read_subscriptions(&dir, args.account_divisor, &mut summary)?;
    let mut first_start: HashMap<&str, NaiveDate> = HashMap::new();
    for s in &subs {
        let e = first_start.entry(s.account.as_str()).or_insert(s.start);
        *e = (*e).min(s.start);
    }

    // Accounts.
    let accounts = read_accounts(&dir, args.account_divisor, &first_start, &mut summary)?;
    for chunk in accounts.chunks(1000) {
        let r = client
            .upsert_accounts(auth.req(pb::UpsertAccountsRequest {
                accounts: chunk.to_vec(),
                replace_attributes: false,
            }))
            .await
            .map_err(|s| LoadError::Rpc {
                rpc: "UpsertAccounts",
                status: Box::new(s),
            })?
            .into_inner();
        summary.accounts.accepted += u64::from(r.created_count);
        summary.accounts.duplicates += u64::from(r.updated_count);
    }

    // Event types.
    let types = read_event_types(&dir, &mut summary)?;
    if !types.is_empty() {
        let r = client
            .upsert_event_types(auth.req(pb::UpsertEventTypesRequest { event_types: types }))
            .await
            .map_err(|s| LoadError::Rpc {
                rpc: "UpsertEventTypes",
                status: Box::new(s),
            })?
            .into_inner();
        summary.event_types.accepted += u64::from(r.created_count);
        summary.event_types.duplicates += u64::from(r.updated_count);
    }

    // Subscriptions.
    let pbsubs: Vec<pb::Subscription> = subs
        .iter()
        .map(|s| pb::Subscription {
            subscription_id: format!("{}:{}", s.product, s.start),
            account_id: s.account.clone(),
            product: s.product.clone(),
            start_time: Some(day_ts(s.start)),
            end_time: s.end.map(day_ts),
            mrr: s.mrr,
            quantity: s.quantity,
            units: s.units.clone(),
            billing_period_months: s.bill,
            add_on: false,
            discount: s.discount,
        })
        .collect();
    for chunk in pbsubs.chunks(5000) {
        let r = client
            .upsert_subscriptions(auth.req(pb::UpsertSubscriptionsRequest {
                subscriptions: chunk.to_vec(),
            }))
            .await
            .map_err(|s| LoadError::Rpc {
                rpc: "UpsertSubscriptions",
                status: Box::new(s),
            })?
            .into_inner();
        summary.subscriptions.accepted += u64::from(r.created_count);
        summary.subscriptions.duplicates += u64::from(r.updated_count);
    }

    // Events.
    let ev_started = Instant::now();
    stream_events(args, client.clone(), &auth, &mut summary).await?;
    summary.events_elapsed = ev_started.elapsed();

    // Churn outcomes.
    if !args.no_outcomes {
        let cutoff = args
            .churn_cutoff
            .or_else(|| subs.iter().map(|s| s.start).max())
            .unwrap_or(NaiveDate::MIN);
        let triples: Vec<(String, NaiveDate, Option<NaiveDate>)> = subs
            .iter()
            .map(|s| (s.account.clone(), s.start, s.end))
            .collect();
        let churns = derive_churns(&triples, cutoff);
        summary.outcomes = send_outcomes(channel, &auth, &churns).await?;
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}
