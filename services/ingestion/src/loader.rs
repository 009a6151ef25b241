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

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, NaiveDateTime, TimeDelta};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};
use vitals_proto::common::v1 as cpb;
use vitals_proto::ingestion::v1 as pb;
use vitals_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use vitals_proto::learner::v1 as lpb;
use vitals_proto::learner::v1::learner_service_client::LearnerServiceClient;
use vitals_server::client::{self, ClientError, ClientTls};
use vitals_server::tls::TlsError;

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

fn open_csv(dir: &Path, name: &str) -> Result<csv::Reader<Box<dyn Read + Send>>, LoadError> {
    let path = dir.join(name);
    let f = std::fs::File::open(&path).map_err(|e| LoadError::File {
        path: path.clone(),
        reason: format!(
            "cannot open ({e}); expected the sample-data layout of shared/data/README.md"
        ),
    })?;
    let gz: Box<dyn Read + Send> = Box::new(flate2::read::GzDecoder::new(
        BufReader::with_capacity(1 << 20, f),
    ));
    Ok(csv::ReaderBuilder::new().has_headers(true).from_reader(gz))
}

/// Column positions by header name.
fn columns(
    r: &mut csv::Reader<Box<dyn Read + Send>>,
    file: &str,
    want: &[&str],
) -> Result<Vec<usize>, LoadError> {
    let headers = r.headers().map_err(|e| LoadError::File {
        path: file.into(),
        reason: format!("cannot read the header row: {e}"),
    })?;
    want.iter()
        .map(|w| {
            headers
                .iter()
                .position(|h| h == *w)
                .ok_or_else(|| LoadError::File {
                    path: file.into(),
                    reason: format!("no column {w:?} in the header row"),
                })
        })
        .collect()
}

fn ts(t: NaiveDateTime) -> prost_types::Timestamp {
    let u = t.and_utc();
    prost_types::Timestamp {
        seconds: u.timestamp(),
        nanos: 0,
    }
}

fn day_ts(d: NaiveDate) -> prost_types::Timestamp {
    ts(d.and_time(chrono::NaiveTime::MIN))
}

fn keep(account: &str, divisor: Option<u64>) -> bool {
    match divisor {
        None => true,
        Some(d) => account.parse::<u64>().is_ok_and(|n| n % d == 0),
    }
}

/// One subscription row as read.
#[derive(Clone, Debug)]
struct SubRow {
    account: String,
    product: String,
    start: NaiveDate,
    end: Option<NaiveDate>,
    mrr: f64,
    quantity: Option<f64>,
    units: String,
    bill: u32,
    discount: f64,
}

/// A churn derived from subscriptions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Churn {
    /// The account.
    pub account_id: String,
    /// The churn date: the end of the last subscription of an active period.
    pub date: NaiveDate,
}

/// Churns by the sample data's rule: subscriptions chained back to back (a new one
/// starting within 7 days of the previous end) form an active period; a period whose
/// end is on or before `cutoff` is a churn on that end date. `subs` are
/// (account, start, end exclusive) in any order; open-ended subscriptions never churn.
pub fn derive_churns(
    subs: &[(String, NaiveDate, Option<NaiveDate>)],
    cutoff: NaiveDate,
) -> Vec<Churn> {
    let mut by_account: BTreeMap<&str, Vec<(NaiveDate, Option<NaiveDate>)>> = BTreeMap::new();
    for (a, s, e) in subs {
        by_account.entry(a.as_str()).or_default().push((*s, *e));
    }
    let mut out = Vec::new();
    for (account, mut periods) in by_account {
        periods.sort();
        // End of the current active period; None = open-ended.
        let mut end: Option<Option<NaiveDate>> = None;
        for (s, e) in periods {
            match end {
                None => end = Some(e),
                Some(None) => {}
                Some(Some(cur)) => {
                    if s <= cur + TimeDelta::days(7) {
                        end = Some(e.map(|e| e.max(cur)));
                    } else {
                        if cur <= cutoff {
                            out.push(Churn {
                                account_id: account.to_string(),
                                date: cur,
                            });
                        }
                        end = Some(e);
                    }
                }
            }
        }
        if let Some(Some(cur)) = end
            && cur <= cutoff
        {
            out.push(Churn {
                account_id: account.to_string(),
                date: cur,
            });
        }
    }
    out
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

fn read_subscriptions(
    dir: &Path,
    divisor: Option<u64>,
    summary: &mut LoadSummary,
) -> Result<Vec<SubRow>, LoadError> {
    let file = "subscription.csv.gz";
    let mut r = open_csv(dir, file)?;
    let c = columns(
        &mut r,
        file,
        &[
            "account_id",
            "product",
            "start_date",
            "end_date",
            "mrr",
            "quantity",
            "units",
            "bill_period_months",
            "discount",
        ],
    )?;
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let line = i + 2;
        let rec = match rec {
            Ok(rec) => rec,
            Err(e) => {
                summary.subscriptions.skipped += 1;
                summary.skip(format!("{file}:{line}: {e}"));
                continue;
            }
        };
        let f = |k: usize| rec.get(c[k]).unwrap_or("").trim();
        if !keep(f(0), divisor) {
            continue;
        }
        summary.subscriptions.read += 1;
        let parsed = (|| -> Result<SubRow, String> {
            let date = |s: &str, what: &str| {
                NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| format!("{what} {s:?}: {e}"))
            };
            let num = |s: &str, what: &str, default: f64| {
                if s.is_empty() {
                    Ok(default)
                } else {
                    s.parse::<f64>().map_err(|e| format!("{what} {s:?}: {e}"))
                }
            };
            Ok(SubRow {
                account: f(0).to_string(),
                product: f(1).to_string(),
                start: date(f(2), "start_date")?,
                end: if f(3).is_empty() {
                    None
                } else {
                    Some(date(f(3), "end_date")?)
                },
                mrr: num(f(4), "mrr", 0.0)?,
                quantity: if f(5).is_empty() {
                    None
                } else {
                    Some(num(f(5), "quantity", 0.0)?)
                },
                units: f(6).to_string(),
                bill: num(f(7), "bill_period_months", 1.0)? as u32,
                discount: num(f(8), "discount", 0.0)?,
            })
        })();
        match parsed {
            Ok(s) => out.push(s),
            Err(e) => {
                summary.subscriptions.skipped += 1;
                summary.skip(format!("{file}:{line}: {e}"));
            }
        }
    }
    Ok(out)
}

fn read_accounts(
    dir: &Path,
    divisor: Option<u64>,
    first_start: &HashMap<&str, NaiveDate>,
    summary: &mut LoadSummary,
) -> Result<Vec<pb::Account>, LoadError> {
    let file = "account.csv.gz";
    let mut r = open_csv(dir, file)?;
    let c = columns(
        &mut r,
        file,
        &["account_id", "channel", "date_of_birth", "country"],
    )?;
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let line = i + 2;
        let rec = match rec {
            Ok(rec) => rec,
            Err(e) => {
                summary.accounts.skipped += 1;
                summary.skip(format!("{file}:{line}: {e}"));
                continue;
            }
        };
        let f = |k: usize| rec.get(c[k]).unwrap_or("").trim();
        if !keep(f(0), divisor) {
            continue;
        }
        summary.accounts.read += 1;
        if f(0).is_empty() {
            summary.accounts.skipped += 1;
            summary.skip(format!("{file}:{line}: empty account_id"));
            continue;
        }
        let mut attributes = HashMap::new();
        let s = |v: &str| cpb::AttributeValue {
            kind: Some(cpb::attribute_value::Kind::StringValue(v.to_string())),
        };
        if !f(1).is_empty() {
            attributes.insert("channel".to_string(), s(f(1)));
        }
        if !f(3).is_empty() {
            attributes.insert("country".to_string(), s(f(3)));
        }
        if !f(2).is_empty() {
            match NaiveDate::parse_from_str(f(2), "%Y-%m-%d") {
                Ok(d) => {
                    attributes.insert(
                        "date_of_birth".to_string(),
                        cpb::AttributeValue {
                            kind: Some(cpb::attribute_value::Kind::TimestampValue(day_ts(d))),
                        },
                    );
                }
                Err(e) => {
                    summary.accounts.skipped += 1;
                    summary.skip(format!("{file}:{line}: date_of_birth {:?}: {e}", f(2)));
                    continue;
                }
            }
        }
        out.push(pb::Account {
            account_id: f(0).to_string(),
            display_name: String::new(),
            attributes,
            create_time: first_start.get(f(0)).map(|d| day_ts(*d)),
            status: pb::AccountStatus::Unspecified as i32,
            profile: String::new(),
            update_time: None,
        });
    }
    Ok(out)
}

fn read_event_types(
    dir: &Path,
    summary: &mut LoadSummary,
) -> Result<Vec<pb::EventType>, LoadError> {
    let file = "event_type.csv.gz";
    let mut r = open_csv(dir, file)?;
    let c = columns(&mut r, file, &["event_type_name"])?;
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        summary.event_types.read += 1;
        match rec {
            Ok(rec) if !rec.get(c[0]).unwrap_or("").trim().is_empty() => {
                let name = rec.get(c[0]).unwrap_or("").trim().to_string();
                out.push(pb::EventType {
                    display_name: name.clone(),
                    name,
                    key: false,
                    description: String::new(),
                    event_count: 0,
                });
            }
            Ok(_) => {
                summary.event_types.skipped += 1;
                summary.skip(format!("{file}:{}: empty event_type_name", i + 2));
            }
            Err(e) => {
                summary.event_types.skipped += 1;
                summary.skip(format!("{file}:{}: {e}", i + 2));
            }
        }
    }
    Ok(out)
}

/// What the event reader saw: (rows read, rows skipped, skip reasons).
type ReaderTotals = (u64, u64, Vec<String>);

/// Reads event.csv.gz on a blocking thread and hands out batches.
fn spawn_event_reader(
    dir: PathBuf,
    divisor: Option<u64>,
    batch_size: usize,
    tx: mpsc::Sender<Vec<pb::Event>>,
) -> tokio::task::JoinHandle<Result<ReaderTotals, LoadError>> {
    tokio::task::spawn_blocking(move || {
        let file = "event.csv.gz";
        let mut r = open_csv(&dir, file)?;
        let c = columns(
            &mut r,
            file,
            &[
                "account_id",
                "event_time",
                "event_type",
                "user_id",
                "event_value",
            ],
        )?;
        let (mut read, mut skipped, mut reasons) = (0u64, 0u64, Vec::new());
        let skip = |line: usize, why: String, reasons: &mut Vec<String>| {
            if reasons.len() < 20 {
                reasons.push(format!("{file}:{line}: {why}"));
            }
        };
        // Repeats of (time, type) within the current account, for stable ids. The file
        // is grouped by account; the ids stay deterministic even if it were not.
        // Keyed by (time, event type number): no string is allocated per row.
        let mut seen: HashMap<(i64, u32), u32> = HashMap::new();
        let mut type_no: HashMap<String, u32> = HashMap::new();
        let mut current = String::new();
        let mut batch = Vec::with_capacity(batch_size);
        let mut rec = csv::StringRecord::new();
        let mut line = 1usize;
        loop {
            line += 1;
            match r.read_record(&mut rec) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    skipped += 1;
                    skip(line, e.to_string(), &mut reasons);
                    continue;
                }
            }
            let f = |k: usize| rec.get(c[k]).unwrap_or("").trim();
            let account = f(0);
            if !keep(account, divisor) {
                continue;
            }
            read += 1;
            let t = match NaiveDateTime::parse_from_str(f(1), "%Y-%m-%d %H:%M:%S") {
                Ok(t) => t,
                Err(e) => {
                    skipped += 1;
                    skip(line, format!("event_time {:?}: {e}", f(1)), &mut reasons);
                    continue;
                }
            };
            let value = if f(4).is_empty() {
                None
            } else {
                match f(4).parse::<f64>() {
                    Ok(v) => Some(v),
                    Err(e) => {
                        skipped += 1;
                        skip(line, format!("event_value {:?}: {e}", f(4)), &mut reasons);
                        continue;
                    }
                }
            };
            if account.is_empty() || f(2).is_empty() {
                skipped += 1;
                skip(line, "empty account_id or event_type".into(), &mut reasons);
                continue;
            }
            if account != current {
                current = account.to_string();
                seen.clear();
            }
            let secs = t.and_utc().timestamp();
            let t_no = match type_no.get(f(2)) {
                Some(&n) => n,
                None => {
                    let n = type_no.len() as u32;
                    type_no.insert(f(2).to_string(), n);
                    n
                }
            };
            let n = seen.entry((secs, t_no)).or_insert(0);
            let event_id = if *n == 0 {
                format!("{secs}:{}", f(2))
            } else {
                format!("{secs}:{}:{n}", f(2))
            };
            *n += 1;
            batch.push(pb::Event {
                event_id,
                account_id: current.clone(),
                user_id: f(3).to_string(),
                event_type: f(2).to_string(),
                occur_time: Some(ts(t)),
                value,
            });
            if batch.len() >= batch_size {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
                if tx.blocking_send(full).is_err() {
                    break;
                }
            }
        }
        if !batch.is_empty() {
            let _ = tx.blocking_send(batch);
        }
        Ok((read, skipped, reasons))
    })
}

async fn stream_events(
    args: &LoadArgs,
    client: IngestionServiceClient<Channel>,
    auth: &Auth,
    summary: &mut LoadSummary,
) -> Result<(), LoadError> {
    // The total for the progress bar: a quick count would cost a second pass over the
    // gzip; the bar shows a spinner-like count instead when unknown.
    let bar = progress(0, "events");
    bar.set_length(0);
    let (tx, rx) = mpsc::channel::<Vec<pb::Event>>(args.streams as usize * args.in_flight as usize);
    let reader = spawn_event_reader(
        args.dir.clone(),
        args.account_divisor,
        args.batch_size as usize,
        tx,
    );
    let rx = Arc::new(Mutex::new(rx));
    let accepted = Arc::new(AtomicU64::new(0));
    let duplicates = Arc::new(AtomicU64::new(0));
    let seq = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.streams {
        let mut client = client.clone();
        let auth = auth.clone();
        let rx = rx.clone();
        let (accepted, duplicates, seq) = (accepted.clone(), duplicates.clone(), seq.clone());
        let bar = bar.clone();
        let in_flight = args.in_flight as usize;
        tasks.push(tokio::spawn(async move {
            let (out_tx, out_rx) = mpsc::channel::<pb::IngestEventsRequest>(in_flight);
            let permits = Arc::new(Semaphore::new(in_flight));
            let sender_permits = permits.clone();
            let bar_len = bar.clone();
            let sender = tokio::spawn(async move {
                loop {
                    let Ok(permit) = sender_permits.clone().acquire_owned().await else {
                        break;
                    };
                    let batch = rx.lock().await.recv().await;
                    let Some(events) = batch else { break };
                    permit.forget();
                    bar_len.inc_length(events.len() as u64);
                    let req = pb::IngestEventsRequest {
                        sequence: seq.fetch_add(1, Ordering::Relaxed),
                        events,
                    };
                    if out_tx.send(req).await.is_err() {
                        break;
                    }
                }
                // Dropping out_tx half-closes the stream.
            });
            let mut acks = client
                .ingest_events(auth.req(ReceiverStream::new(out_rx)))
                .await
                .map_err(|s| LoadError::Rpc {
                    rpc: "IngestEvents",
                    status: Box::new(s),
                })?
                .into_inner();
            loop {
                match acks.message().await {
                    Ok(Some(ack)) => {
                        permits.add_permits(1);
                        accepted.fetch_add(u64::from(ack.accepted_count), Ordering::Relaxed);
                        duplicates.fetch_add(u64::from(ack.duplicate_count), Ordering::Relaxed);
                        bar.inc(u64::from(ack.accepted_count + ack.duplicate_count));
                    }
                    Ok(None) => break,
                    Err(s) => {
                        sender.abort();
                        return Err(LoadError::Rpc {
                            rpc: "IngestEvents",
                            status: Box::new(s),
                        });
                    }
                }
            }
            let _ = sender.await;
            Ok::<(), LoadError>(())
        }));
    }
    let mut first_err = None;
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(LoadError::Connect("stream task".into(), e.to_string()));
            }
        }
    }
    // Unblock the reader if the streams stopped early.
    drop(rx);
    let read = reader.await.map_err(|e| LoadError::File {
        path: args.dir.join("event.csv.gz"),
        reason: format!("reader failed: {e}"),
    })??;
    bar.finish_and_clear();
    if let Some(e) = first_err {
        return Err(e);
    }
    summary.events.read += read.0;
    summary.events.skipped += read.1;
    for r in read.2 {
        summary.skip(r);
    }
    summary.events.accepted += accepted.load(Ordering::Relaxed);
    summary.events.duplicates += duplicates.load(Ordering::Relaxed);
    Ok(())
}

async fn send_outcomes(
    channel: Channel,
    auth: &Auth,
    churns: &[Churn],
) -> Result<Option<KindSummary>, LoadError> {
    let mut client = LearnerServiceClient::new(channel);
    let mut k = KindSummary {
        read: churns.len() as u64,
        ..Default::default()
    };
    for chunk in churns.chunks(5000) {
        let outcomes = chunk
            .iter()
            .map(|c| lpb::Outcome {
                account_id: c.account_id.clone(),
                kind: lpb::OutcomeKind::Churned as i32,
                occur_time: Some(day_ts(c.date)),
                note: "derived by vitals load from subscriptions".into(),
                record_time: None,
            })
            .collect();
        match client
            .record_outcomes(auth.req(lpb::RecordOutcomesRequest { outcomes }))
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                k.accepted += u64::from(r.recorded_count);
                k.duplicates += u64::from(r.duplicate_count);
            }
            Err(s) if s.code() == Code::Unimplemented => {
                let why = if s.message().is_empty() {
                    "LearnerService is not served at this address".to_string()
                } else {
                    s.message().to_string()
                };
                eprintln!(
                    "notice: churn outcomes not recorded ({why}); {} derived churns not sent",
                    churns.len()
                );
                return Ok(None);
            }
            Err(s) => {
                return Err(LoadError::Rpc {
                    rpc: "RecordOutcomes",
                    status: Box::new(s),
                });
            }
        }
    }
    Ok(Some(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn churn_rule() {
        let subs = vec![
            // a: renewed back to back, ends before the cutoff: churn at the last end.
            ("a".to_string(), d("2020-01-01"), Some(d("2020-02-01"))),
            ("a".to_string(), d("2020-02-01"), Some(d("2020-03-01"))),
            // b: still subscribed after the cutoff: no churn.
            ("b".to_string(), d("2020-05-10"), Some(d("2020-06-10"))),
            // c: gap of 10 days, then back, then still active: one churn at the gap.
            ("c".to_string(), d("2020-01-01"), Some(d("2020-02-01"))),
            ("c".to_string(), d("2020-02-11"), Some(d("2020-07-01"))),
            // e: renewal 7 days after the end counts as continuous.
            ("e".to_string(), d("2020-01-01"), Some(d("2020-02-01"))),
            ("e".to_string(), d("2020-02-08"), Some(d("2020-07-01"))),
            // f: ends exactly on the cutoff: churn.
            ("f".to_string(), d("2020-05-01"), Some(d("2020-06-01"))),
        ];
        let churns = derive_churns(&subs, d("2020-06-01"));
        assert_eq!(
            churns,
            vec![
                Churn {
                    account_id: "a".into(),
                    date: d("2020-03-01")
                },
                Churn {
                    account_id: "c".into(),
                    date: d("2020-02-01")
                },
                Churn {
                    account_id: "f".into(),
                    date: d("2020-06-01")
                },
            ]
        );
    }
}
