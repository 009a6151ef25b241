//! The events and churn outcomes of `vitals load`: event.csv.gz read on a blocking thread
//! and streamed over several IngestEvents streams; outcomes sent to the learner.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::NaiveDateTime;
use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::Channel;
use vitals_proto::ingestion::v1 as pb;
use vitals_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use vitals_proto::learner::v1 as lpb;
use vitals_proto::learner::v1::learner_service_client::LearnerServiceClient;

use super::files::{Churn, columns, day_ts, keep, open_csv, ts};
use super::{Auth, KindSummary, LoadArgs, LoadError, LoadSummary, progress};

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

/// Streams the events of `args.dir` over `args.streams` IngestEvents streams, each with
/// `args.in_flight` unacknowledged batches, and counts the acknowledgements.
pub(super) async fn stream_events(
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

/// Sends `churns` to LearnerService.RecordOutcomes; `None` when the learner does not
/// implement it (a notice is printed).
pub(super) async fn send_outcomes(
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
