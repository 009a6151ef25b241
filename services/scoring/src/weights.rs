//! KPI weights from the learner: asked with a deadline, cached per profile for a TTL, with
//! the fallbacks of docs/scoring-service.md, "weights sources" (last known weights, else
//! uniform).
//!
//! Two ways to reach the learner ([`WeightsProvider`]):
//! - [`GrpcLearner`]: `LearnerService.GetWeights` over gRPC at `--learner-url` (the
//!   separate Deployments of production), through `vitals_server::client` (TLS, token);
//! - [`InProcessLearner`]: the learner's own tonic service object called directly, with
//!   no network hop (the all-in-one `vitals`, where both live in one process). The call
//!   is the same trait method the gRPC server dispatches to, so the answer is the same.
//!
//! Without a provider (the standalone binary with no `--learner-url`), every profile
//! gets uniform weights.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::Status;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;
use vitals_learn_core::GbmModel;
use vitals_proto::common::v1 as cpb;
use vitals_proto::learner::v1 as lpb;
use vitals_proto::learner::v1::learner_service_client::LearnerServiceClient;
use vitals_server::client::{self, ClientError, ClientInterceptor, ClientTls};

/// Something that answers `GetWeights`.
#[tonic::async_trait]
pub trait WeightsProvider: Send + Sync + 'static {
    /// The learner's answer for `profile` (`profiles/{id}`).
    async fn get_weights(&self, profile: String) -> Result<lpb::GetWeightsResponse, Status>;
}

/// The learner over gRPC.
#[derive(Clone)]
pub struct GrpcLearner {
    client: LearnerServiceClient<InterceptedService<Channel, ClientInterceptor>>,
}

impl fmt::Debug for GrpcLearner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GrpcLearner")
    }
}

impl GrpcLearner {
    /// A lazy client of the learner at `url` (`http://` or `https://`; nothing is
    /// connected until the first call), sending `token` as a bearer token when set, and
    /// accepting answers up to `max_message_bytes` (a GetWeights answer carries the
    /// learner's booster when its challenger serves: more than tonic's default 4 MiB is
    /// possible).
    pub fn new(
        url: &str,
        tls: &ClientTls,
        token: Option<&str>,
        max_message_bytes: usize,
    ) -> Result<Self, ClientError> {
        let channel = client::connect_lazy(url, tls)?;
        let client =
            LearnerServiceClient::with_interceptor(channel, ClientInterceptor::new(token)?)
                .max_decoding_message_size(max_message_bytes);
        Ok(Self { client })
    }
}

#[tonic::async_trait]
impl WeightsProvider for GrpcLearner {
    async fn get_weights(&self, profile: String) -> Result<lpb::GetWeightsResponse, Status> {
        let mut c = self.client.clone();
        Ok(c.get_weights(lpb::GetWeightsRequest { profile })
            .await?
            .into_inner())
    }
}

/// The learner's tonic service called in-process (the all-in-one).
pub struct InProcessLearner<T>(pub T);

#[tonic::async_trait]
impl<T> WeightsProvider for InProcessLearner<T>
where
    T: lpb::learner_service_server::LearnerService,
{
    async fn get_weights(&self, profile: String) -> Result<lpb::GetWeightsResponse, Status> {
        let req = tonic::Request::new(lpb::GetWeightsRequest { profile });
        Ok(self.0.get_weights(req).await?.into_inner())
    }
}

/// Where a profile's KPI weights came from (the snapshot's `weights_source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Fresh from the learner's model.
    Learned,
    /// The learner did not answer in time: its last answer for the profile.
    LastKnown,
    /// No model, or no learner and nothing cached.
    Uniform,
}

impl Source {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Learned => "learned",
            Self::LastKnown => "last_known",
            Self::Uniform => "uniform",
        }
    }

    /// From the stored form.
    pub fn parse(s: &str) -> Self {
        match s {
            "learned" => Self::Learned,
            "last_known" => Self::LastKnown,
            _ => Self::Uniform,
        }
    }

    /// The proto enum.
    pub fn to_proto(self) -> cpb::WeightsSource {
        match self {
            Self::Learned => cpb::WeightsSource::Learned,
            Self::LastKnown => cpb::WeightsSource::LastKnown,
            Self::Uniform => cpb::WeightsSource::Uniform,
        }
    }
}

/// The weights used for one profile in a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Weights {
    /// Where they came from.
    pub source: Source,
    /// The model, `models/{id}`; empty for uniform.
    pub model: String,
    /// KPI name -> weight within its category; empty = uniform (every KPI weighs 1).
    pub kpi_weights: HashMap<String, f64>,
    /// Suggested category weights (usage, conversations, pulse, contract, custom).
    pub suggested_category: Option<[f64; 5]>,
    /// Intercept of the churn model.
    pub intercept: f64,
    /// The churn model's coefficients; empty = no churn model.
    pub coefficients: Vec<Coefficient>,
    /// The gradient-boosted model that serves the churn probability instead of the
    /// coefficients, when the learner's challenger won (docs/learning.md).
    pub booster: Option<Booster>,
}

/// One coefficient of the learner's logistic churn model.
#[derive(Clone, Debug, PartialEq)]
pub struct Coefficient {
    /// The feature column: `<kpi>` (peer percentile), `<kpi>:log` or `<kpi>:value`
    /// (`vitals_learn_core::features::column_value` reads it).
    pub column: String,
    /// The coefficient.
    pub coefficient: f64,
    /// The feature's value for an account without the KPI.
    pub missing: f64,
}

/// A learner's gradient-boosted churn model, parsed once per answer.
#[derive(Clone, Debug)]
pub struct Booster(pub Arc<GbmModel>);

impl PartialEq for Booster {
    /// The same parsed model (models are not compared tree by tree).
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Weights {
    /// Uniform weights, no model.
    pub fn uniform() -> Self {
        Self {
            source: Source::Uniform,
            model: String::new(),
            kpi_weights: HashMap::new(),
            suggested_category: None,
            intercept: 0.0,
            coefficients: Vec::new(),
            booster: None,
        }
    }

    fn from_response(r: lpb::GetWeightsResponse) -> Self {
        let learned = r.source() == cpb::WeightsSource::Learned && !r.kpi_weights.is_empty();
        if !learned {
            return Self::uniform();
        }
        // A booster that does not parse gives no churn probability rather than the
        // logistic one the learner does not serve.
        let (booster, churn_model) = if r.booster_json.is_empty() {
            (None, true)
        } else {
            match GbmModel::from_json(&r.booster_json) {
                Ok(b) => (Some(Booster(Arc::new(b))), true),
                Err(e) => {
                    tracing::warn!(model = %r.model, error = %e, "the learner's booster does not parse; no churn probability");
                    (None, false)
                }
            }
        };
        Self {
            source: Source::Learned,
            model: r.model,
            kpi_weights: r
                .kpi_weights
                .into_iter()
                .filter(|w| w.weight.is_finite() && w.weight >= 0.0)
                .map(|w| (w.kpi, w.weight))
                .collect(),
            suggested_category: r.suggested_category_weights.map(|c| {
                [
                    c.usage,
                    c.conversations,
                    c.pulse,
                    c.contract,
                    c.custom_metrics,
                ]
            }),
            intercept: r.intercept,
            coefficients: if churn_model {
                r.coefficients
                    .into_iter()
                    .filter(|c| c.coefficient.is_finite())
                    .map(|c| Coefficient {
                        missing: c.missing_value.filter(|m| m.is_finite()).unwrap_or(0.5),
                        column: c.kpi,
                        coefficient: c.coefficient,
                    })
                    .collect()
            } else {
                Vec::new()
            },
            booster,
        }
    }
}

/// The learner's weights per profile, cached for a TTL.
pub struct WeightsCache {
    provider: Option<Arc<dyn WeightsProvider>>,
    timeout: Duration,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Arc<Weights>)>>,
}

impl fmt::Debug for WeightsCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeightsCache")
            .field("learner", &self.provider.is_some())
            .field("timeout", &self.timeout)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl WeightsCache {
    /// A cache over `provider` (none: always uniform), asking with deadline `timeout`
    /// and trusting an answer for `ttl`.
    pub fn new(
        provider: Option<Arc<dyn WeightsProvider>>,
        timeout: Duration,
        ttl: Duration,
    ) -> Self {
        Self {
            provider,
            timeout,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, profile_id: &str) -> Option<(Instant, Arc<Weights>)> {
        self.cache
            .lock()
            .ok()
            .and_then(|c| c.get(profile_id).cloned())
    }

    /// The weights of profile `profile_id`: the cached answer while younger than the
    /// TTL, else a fresh one; when the learner fails or misses the deadline, the last
    /// answer (as [`Source::LastKnown`] if it was learned), else uniform.
    pub async fn weights(&self, profile_id: &str) -> Arc<Weights> {
        let Some(provider) = &self.provider else {
            return Arc::new(Weights::uniform());
        };
        let cached = self.cached(profile_id);
        if let Some((at, w)) = &cached
            && at.elapsed() < self.ttl
        {
            return w.clone();
        }
        let call = provider.get_weights(format!("profiles/{profile_id}"));
        let (reason, error) = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(r)) => {
                let w = Arc::new(Weights::from_response(r));
                if let Ok(mut c) = self.cache.lock() {
                    c.insert(profile_id.to_string(), (Instant::now(), w.clone()));
                }
                return w;
            }
            Ok(Err(status)) => (
                if status.code() == tonic::Code::Unavailable {
                    "unavailable"
                } else {
                    "error"
                },
                format!("{}: {}", status.code(), status.message()),
            ),
            Err(_) => ("timeout", format!("no answer within {:?}", self.timeout)),
        };
        tracing::warn!(profile = %profile_id, error = %error, "learner GetWeights failed; using fallback weights");
        match cached {
            Some((_, w)) if w.source != Source::Uniform => {
                vitals_server::metrics::learner_fallback(reason, "cached");
                let mut last = (*w).clone();
                last.source = Source::LastKnown;
                Arc::new(last)
            }
            _ => {
                vitals_server::metrics::learner_fallback(reason, "uniform");
                Arc::new(Weights::uniform())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU8, Ordering};

    use super::*;

    /// Answers with a model (mode 0), fails (1) or never answers (2).
    struct Scripted(AtomicU8);

    #[tonic::async_trait]
    impl WeightsProvider for Scripted {
        async fn get_weights(&self, profile: String) -> Result<lpb::GetWeightsResponse, Status> {
            match self.0.load(Ordering::SeqCst) {
                0 => Ok(lpb::GetWeightsResponse {
                    profile,
                    source: cpb::WeightsSource::Learned as i32,
                    model: "models/p-1".into(),
                    kpi_weights: vec![lpb::KpiWeight {
                        kpi: "active_days".into(),
                        weight: 1.0,
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                1 => Err(Status::unavailable("down")),
                _ => std::future::pending().await,
            }
        }
    }

    fn cache(mode: u8, ttl: Duration) -> (Arc<Scripted>, WeightsCache) {
        let p = Arc::new(Scripted(AtomicU8::new(mode)));
        let c = WeightsCache::new(Some(p.clone()), Duration::from_millis(20), ttl);
        (p, c)
    }

    #[tokio::test]
    async fn learned_then_last_known_when_down_or_silent() {
        let (p, c) = cache(0, Duration::ZERO);
        let w = c.weights("p").await;
        assert_eq!(
            (w.source, w.model.as_str()),
            (Source::Learned, "models/p-1")
        );
        assert_eq!(w.kpi_weights.get("active_days"), Some(&1.0));
        p.0.store(1, Ordering::SeqCst);
        let w = c.weights("p").await;
        assert_eq!(
            (w.source, w.model.as_str()),
            (Source::LastKnown, "models/p-1")
        );
        p.0.store(2, Ordering::SeqCst);
        let w = c.weights("p").await;
        assert_eq!(w.source, Source::LastKnown, "a learner that never answers");
        // Another profile has nothing cached: uniform.
        let w = c.weights("q").await;
        assert_eq!((w.source, w.model.as_str()), (Source::Uniform, ""));
        assert!(w.kpi_weights.is_empty());
    }

    #[tokio::test]
    async fn a_fresh_answer_is_reused_within_the_ttl() {
        let (p, c) = cache(0, Duration::from_secs(3600));
        assert_eq!(c.weights("p").await.source, Source::Learned);
        p.0.store(1, Ordering::SeqCst);
        assert_eq!(
            c.weights("p").await.source,
            Source::Learned,
            "not asked again"
        );
    }

    #[tokio::test]
    async fn no_learner_or_no_model_is_uniform() {
        let c = WeightsCache::new(None, Duration::from_millis(20), Duration::ZERO);
        assert_eq!(c.weights("p").await.source, Source::Uniform);
        let none = Weights::from_response(lpb::GetWeightsResponse {
            source: cpb::WeightsSource::Uniform as i32,
            ..Default::default()
        });
        assert_eq!(none, Weights::uniform());
    }
}
