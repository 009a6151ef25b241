//! The seven steps of the demo, each a few calls of the public gRPC API, and the
//! summary they make.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use chrono::NaiveDate;
use tonic::transport::{Channel, Endpoint};
use vitals_proto::common::v1 as cpb;
use vitals_proto::ingestion::v1 as ipb;
use vitals_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use vitals_proto::learner::v1 as lpb;
use vitals_proto::learner::v1::learner_service_client::LearnerServiceClient;
use vitals_proto::profiles::v1 as ppb;
use vitals_proto::profiles::v1::profiles_service_client::ProfilesServiceClient;
use vitals_proto::scoring::v1 as spb;
use vitals_proto::scoring::v1::scoring_service_client::ScoringServiceClient;

use super::report::{render, short};
use super::server::Server;
use super::{
    AT_RISK_ROWS, AtRisk, DRIVERS_SHOWN, DemoArgs, DemoError, DemoSummary, PROFILES, ProfileBands,
    io, rpc, say, secs, training_options,
};
use crate::loader::{self, LoadArgs};

/// A client of each service, over one channel to the demo's server.
struct Clients {
    profiles: ProfilesServiceClient<Channel>,
    ingestion: IngestionServiceClient<Channel>,
    learner: LearnerServiceClient<Channel>,
    scoring: ScoringServiceClient<Channel>,
}

impl Clients {
    async fn connect(url: String) -> Result<Self, DemoError> {
        let channel: Channel = Endpoint::from_shared(url)
            .map_err(|e| DemoError::Server(e.to_string()))?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| DemoError::Server(e.to_string()))?;
        let max = 64 * 1024 * 1024;
        Ok(Self {
            profiles: ProfilesServiceClient::new(channel.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            ingestion: IngestionServiceClient::new(channel.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            learner: LearnerServiceClient::new(channel.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            scoring: ScoringServiceClient::new(channel)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        })
    }
}

/// Runs the seven steps against `server`, printing a line each, then prints the summary.
pub(super) async fn steps(
    args: &DemoArgs,
    server: &Server,
    data_dir: &Path,
    churned: &[String],
    (end, as_of): (NaiveDate, prost_types::Timestamp),
    out: &mut dyn Write,
) -> Result<DemoSummary, DemoError> {
    let mut c = Clients::connect(server.url()).await?;
    create_profiles(&mut c, out).await?;
    load(args, server, data_dir, end, out).await?;
    assign(&mut c, out).await?;
    mark_churned(&mut c, churned, end, out).await?;
    train(&mut c, as_of, out).await?;
    let computed = score(&mut c, (end, as_of), out).await?;
    let eval = evaluate(&mut c, out).await?;
    let summary = summarize(&mut c, end, computed.scored_count, &eval, out).await?;
    Ok(summary)
}

/// 1. Profiles first, so that accounts land in theirs as they are upserted.
async fn create_profiles(c: &mut Clients, out: &mut dyn Write) -> Result<(), DemoError> {
    let t = Instant::now();
    let mut created = 0;
    for (id, name, rule, priority, usage) in PROFILES {
        let r = c
            .profiles
            .create_health_profile(ppb::CreateHealthProfileRequest {
                profile_id: id.to_string(),
                health_profile: Some(ppb::HealthProfile {
                    display_name: name.to_string(),
                    description: format!("vitals demo: accounts matching {rule}"),
                    assignment_rule: rule.to_string(),
                    priority,
                    category_weights: Some(cpb::CategoryWeights {
                        usage,
                        conversations: 1.0,
                        pulse: 1.0,
                        contract: 1.0,
                        custom_metrics: 1.0,
                        custom_score_fields: HashMap::new(),
                    }),
                    ..Default::default()
                }),
            })
            .await;
        match r {
            Ok(_) => created += 1,
            // A database given with --database-url may hold them from an earlier run.
            Err(s) if s.code() == tonic::Code::AlreadyExists => {}
            Err(s) => return Err(rpc("CreateHealthProfile")(s)),
        }
    }
    say(
        out,
        &format!(
            "[1/7] profiles   {created} created ({} already there), rules over the account \
             attributes channel and country  ({})",
            PROFILES.len() - created,
            secs(t)
        ),
    )?;

    Ok(())
}

/// 2. The data, with the loader of `vitals load`.
async fn load(
    args: &DemoArgs,
    server: &Server,
    data_dir: &Path,
    end: NaiveDate,
    out: &mut dyn Write,
) -> Result<(), DemoError> {
    let t = Instant::now();
    let mut load = LoadArgs::new(data_dir, server.url());
    load.account_divisor = args.account_divisor;
    load.churn_cutoff = Some(end);
    let loaded = loader::load(&load).await?;
    let outcomes = match &loaded.outcomes {
        Some(o) => format!("{} churn outcomes recorded", o.accepted + o.duplicates),
        None => "churn outcomes NOT recorded (see the notice above)".to_string(),
    };
    say(
        out,
        &format!(
            "[2/7] load       {} accounts, {} subscriptions, {} events, {outcomes}  ({})",
            loaded.accounts.accepted + loaded.accounts.duplicates,
            loaded.subscriptions.accepted + loaded.subscriptions.duplicates,
            loaded.events.accepted + loaded.events.duplicates,
            secs(t)
        ),
    )?;

    Ok(())
}

/// 3. Assignment by the rules.
async fn assign(c: &mut Clients, out: &mut dyn Write) -> Result<(), DemoError> {
    let t = Instant::now();
    let r = c
        .profiles
        .reassign_accounts(ppb::ReassignAccountsRequest {
            dry_run: false,
            max_moves: 1,
        })
        .await
        .map_err(rpc("ReassignAccounts"))?
        .into_inner();
    let population = c
        .profiles
        .get_population_report(ppb::GetPopulationReportRequest {})
        .await
        .map_err(rpc("GetPopulationReport"))?
        .into_inner();
    let members: Vec<String> = population
        .profiles
        .iter()
        .map(|p| format!("{} {}", short(&p.profile), p.member_count))
        .collect();
    say(
        out,
        &format!(
            "[3/7] assign     {} accounts evaluated, {} moved; members: {}  ({})",
            r.evaluated_count,
            r.moved_count,
            members.join(", "),
            secs(t)
        ),
    )?;

    Ok(())
}

/// 4. The customers who left are no longer in the portfolio.
async fn mark_churned(
    c: &mut Clients,
    churned: &[String],
    end: NaiveDate,
    out: &mut dyn Write,
) -> Result<(), DemoError> {
    let t = Instant::now();
    for chunk in churned.chunks(5000) {
        c.ingestion
            .upsert_accounts(ipb::UpsertAccountsRequest {
                accounts: chunk
                    .iter()
                    .map(|id| ipb::Account {
                        account_id: id.clone(),
                        status: ipb::AccountStatus::Churned as i32,
                        ..Default::default()
                    })
                    .collect(),
                replace_attributes: false,
            })
            .await
            .map_err(rpc("UpsertAccounts"))?;
    }
    say(
        out,
        &format!(
            "[4/7] churned    {} accounts whose last subscription ended by {end} marked \
             CHURNED (not scored; their outcomes train the learner)  ({})",
            churned.len(),
            secs(t)
        ),
    )?;

    Ok(())
}

/// 5. Training.
async fn train(
    c: &mut Clients,
    as_of: prost_types::Timestamp,
    out: &mut dyn Write,
) -> Result<(), DemoError> {
    let t = Instant::now();
    let trained = c
        .learner
        .train(lpb::TrainRequest {
            profile: String::new(),
            options: Some(training_options()),
            as_of: Some(as_of),
        })
        .await
        .map_err(rpc("Train"))?
        .into_inner();
    let models: Vec<String> = trained
        .models
        .iter()
        .map(|m| {
            let who = if m.profile.is_empty() {
                "global".to_string()
            } else {
                short(&m.profile).to_string()
            };
            format!("{who} v{} ({} churns)", m.version, m.churn_count)
        })
        .collect();
    say(
        out,
        &format!(
            "[5/7] train      {} models: {}{}  ({})",
            trained.models.len(),
            models.join(", "),
            if trained.skipped.is_empty() {
                String::new()
            } else {
                format!(
                    "; no model for {} (its accounts use the global model)",
                    trained
                        .skipped
                        .iter()
                        .map(|p| short(&p.profile))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            secs(t)
        ),
    )?;

    Ok(())
}

/// 6. Scores.
async fn score(
    c: &mut Clients,
    (end, as_of): (NaiveDate, prost_types::Timestamp),
    out: &mut dyn Write,
) -> Result<spb::ComputeScoresResponse, DemoError> {
    let t = Instant::now();
    let computed = c
        .scoring
        .compute_scores(spb::ComputeScoresRequest {
            scope: None,
            as_of: Some(as_of),
        })
        .await
        .map_err(rpc("ComputeScores"))?
        .into_inner();
    say(
        out,
        &format!(
            "[6/7] score      {} accounts scored as of {end}, {} snapshots written  ({})",
            computed.scored_count,
            computed.snapshot_count,
            secs(t)
        ),
    )?;

    Ok(computed)
}

/// 7. The learner's honest evaluation.
async fn evaluate(
    c: &mut Clients,
    out: &mut dyn Write,
) -> Result<lpb::EvaluateResponse, DemoError> {
    let t = Instant::now();
    let eval = c
        .learner
        .evaluate(lpb::EvaluateRequest {
            profile: String::new(),
            options: Some(training_options()),
            backtest_folds: 0,
            as_of: None,
        })
        .await
        .map_err(rpc("Evaluate"))?
        .into_inner();
    say(
        out,
        &format!("[7/7] evaluate   {}  ({})", eval.model, secs(t)),
    )?;

    Ok(eval)
}

/// Scored accounts per band, per profile (profiles with no score left out).
async fn profile_bands(c: &mut Clients) -> Result<Vec<ProfileBands>, DemoError> {
    let listed = c
        .profiles
        .list_health_profiles(ppb::ListHealthProfilesRequest {
            page_size: 1000,
            page_token: String::new(),
        })
        .await
        .map_err(rpc("ListHealthProfiles"))?
        .into_inner();
    let mut bands = Vec::new();
    for p in &listed.health_profiles {
        let d = c
            .scoring
            .get_distribution(spb::GetDistributionRequest {
                profile: p.name.clone(),
                scorecard: String::new(),
                global: false,
            })
            .await
            .map_err(rpc("GetDistribution"))?
            .into_inner()
            .distribution
            .unwrap_or_default();
        if d.count == 0 {
            continue;
        }
        let c = d.band_counts.unwrap_or_default();
        bands.push(ProfileBands {
            profile: p.name.clone(),
            display_name: p.display_name.clone(),
            scored: d.count,
            bands: [c.red, c.yellow, c.green],
        });
    }
    Ok(bands)
}

/// The [`AT_RISK_ROWS`] lowest scores, with their strongest negative drivers.
async fn at_risk(c: &mut Clients) -> Result<Vec<AtRisk>, DemoError> {
    let risky = c
        .scoring
        .list_scores(spb::ListScoresRequest {
            page_size: AT_RISK_ROWS as i32,
            order_by: "value".into(),
            view: spb::ScoreView::Full as i32,
            ..Default::default()
        })
        .await
        .map_err(rpc("ListScores"))?
        .into_inner();
    let at_risk: Vec<AtRisk> = risky
        .snapshots
        .iter()
        .map(|s| {
            let mut down: Vec<&spb::Driver> =
                s.drivers.iter().filter(|d| d.contribution < 0.0).collect();
            down.sort_by(|a, b| a.contribution.total_cmp(&b.contribution));
            AtRisk {
                account_id: s.account_id.clone(),
                profile: s.profile.clone(),
                score: s.value,
                band: s.band(),
                churn_probability: s.churn_probability,
                drivers: down
                    .iter()
                    .take(DRIVERS_SHOWN)
                    .map(|d| (d.kpi.clone(), d.peer_percentile, d.contribution))
                    .collect(),
            }
        })
        .collect();
    Ok(at_risk)
}

/// The summary: bands per profile, the histogram, the accounts most at risk and the
/// learner's figures; printed to `out`.
async fn summarize(
    c: &mut Clients,
    end: NaiveDate,
    scored: u32,
    eval: &lpb::EvaluateResponse,
    out: &mut dyn Write,
) -> Result<DemoSummary, DemoError> {
    let bands = profile_bands(c).await?;
    let all = c
        .scoring
        .get_distribution(spb::GetDistributionRequest::default())
        .await
        .map_err(rpc("GetDistribution"))?
        .into_inner()
        .distribution
        .unwrap_or_default();
    let at_risk = at_risk(c).await?;
    let metrics = |e: &Option<lpb::Evaluation>| {
        e.as_ref()
            .map(|e| {
                (
                    e.metrics.as_ref().map(|m| m.auc).unwrap_or_default(),
                    e.backtest_auc,
                    e.metrics
                        .as_ref()
                        .map(|m| m.top_decile_lift)
                        .unwrap_or_default(),
                )
            })
            .unwrap_or_default()
    };
    let (churn_auc, churn_backtest_auc, churn_lift) = metrics(&eval.churn_probability);
    let (health_score_auc, health_backtest_auc, health_lift) = metrics(&eval.health_score);
    let summary = DemoSummary {
        as_of: end,
        scored,
        profiles: bands,
        histogram: all.bins.iter().map(|b| b.count).collect(),
        at_risk,
        churn_auc,
        churn_backtest_auc,
        health_score_auc,
    };
    let observations = eval
        .churn_probability
        .as_ref()
        .and_then(|e| e.metrics.as_ref())
        .map(|m| (m.observation_count, m.positive_count))
        .unwrap_or_default();
    let text = render(
        &summary,
        &all,
        (churn_lift, health_backtest_auc, health_lift),
        observations,
    );
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(io("writing the output"))?;
    Ok(summary)
}
