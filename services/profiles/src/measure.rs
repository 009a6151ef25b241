//! The preview of a draft scorecard's distribution over the current accounts (measured
//! with `vitals_scorecard::measure` and scored with scoring-core, as the scoring service
//! computes scorecard snapshots).

use chrono::Utc;
use vitals_proto::common::v1 as cpb;
use vitals_proto::profiles::v1 as pb;
use vitals_scorecard::measure::{measure_values, scored};
use vitals_scoring_core as core;
use vitals_server::ApiError;
use vitals_store::Store;
use vitals_store::profiles as sp;

use crate::convert::{self, scorecard_fields};
use crate::error::Result;
use crate::rules::{self, Rule};

/// The distribution a draft scorecard gives over the current accounts.
pub async fn preview(
    store: &Store,
    req: pb::PreviewScorecardRequest,
) -> Result<pb::PreviewScorecardResponse> {
    let s = req
        .scorecard
        .ok_or_else(|| ApiError::invalid("scorecard", "required"))?;
    let as_of = match &req.as_of {
        Some(t) => convert::as_of("as_of", t)?,
        None => Utc::now(),
    };
    // Validation compiles the segment: CPU work (milliseconds for a long rule), kept off
    // the async workers as any request with a read token can send one.
    let (fields, segment) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let fields = scorecard_fields("scorecard", &s, true)?;
        let segment = Rule::compile_segment_optional("scorecard.segment", &fields.segment)?;
        Ok((fields, segment))
    })
    .await??;
    let mapping = core::ScoreMapping::new(fields.worst, fields.best)
        .map_err(|e| ApiError::invalid("scorecard.best_value", e.to_string()))?;
    let bands = core::BandThresholds::new(fields.yellow_from, fields.green_from)
        .map_err(|e| ApiError::invalid("scorecard.band_thresholds", e.to_string()))?;
    let card = core::Scorecard {
        mapping,
        bands,
        impact: core::Impact::Medium,
    };
    let accounts = scored(sp::load_accounts(store).await?);
    let accounts = match segment {
        Some(rule) => rules::select_for_request("scorecard.segment", rule, accounts).await?,
        None => accounts,
    };
    let values = measure_values(store, &fields.measure, &accounts, as_of).await?;
    let mut raw: Vec<f64> = values.iter().flatten().copied().collect();
    let scores: Vec<f64> = raw
        .iter()
        .filter_map(|v| card.evaluate(*v).map(|(s, _)| s))
        .collect();
    raw.sort_unstable_by(f64::total_cmp);
    let d = core::distribution(scores.iter().copied(), &bands);
    let bins = d
        .histogram
        .iter()
        .enumerate()
        .map(|(i, &count)| cpb::HistogramBin {
            lower: i as f64,
            upper: i as f64 + 1.0,
            count: count as u32,
        })
        .collect();
    let min = scores.iter().copied().reduce(f64::min).unwrap_or(0.0);
    let max = scores.iter().copied().reduce(f64::max).unwrap_or(0.0);
    Ok(pb::PreviewScorecardResponse {
        distribution: Some(cpb::Distribution {
            bins,
            band_counts: Some(cpb::BandCounts {
                red: d.bands[0] as u32,
                yellow: d.bands[1] as u32,
                green: d.bands[2] as u32,
            }),
            count: d.count as u32,
            mean: d.mean.unwrap_or(0.0),
            median: d.median.unwrap_or(0.0),
            p10: d.p10.unwrap_or(0.0),
            p90: d.p90.unwrap_or(0.0),
            std_dev: d.std.unwrap_or(0.0),
            min,
            max,
        }),
        segment_count: accounts.len() as u32,
        with_value_count: d.count as u32,
        measure_min: raw.first().copied().unwrap_or(0.0),
        measure_median: core::quantile_sorted(&raw, 0.5).unwrap_or(0.0),
        measure_max: raw.last().copied().unwrap_or(0.0),
    })
}
