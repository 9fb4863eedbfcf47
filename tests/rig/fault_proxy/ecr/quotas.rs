//! ECR's per-API request quotas: a token bucket per API, shared by every
//! connection of the proxy; over it, 429 `TOOMANYREQUESTS` "Rate exceeded"
//! with no `Retry-After`, not forwarded, and no token spent.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use super::Answer;
use crate::fault_proxy::{bump, split_repo, FaultProxy, ProxyStats, Shared};
use crate::wire::Head;

/// The registry calls ECR meters, each standing for one ECR API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EcrApi {
    /// Manifest PUT, by tag or by digest.
    PutImage,
    /// `POST /v2/<repo>/blobs/uploads/`.
    InitiateLayerUpload,
    /// The final PUT to an upload session.
    CompleteLayerUpload,
    /// PATCH to an upload session.
    UploadLayerPart,
    /// Blob HEAD.
    BatchCheckLayerAvailability,
    /// Manifest GET or HEAD.
    BatchGetImage,
    /// Blob GET.
    GetDownloadUrlForLayer,
}

impl EcrApi {
    pub const ALL: [EcrApi; 7] = [
        EcrApi::PutImage,
        EcrApi::InitiateLayerUpload,
        EcrApi::CompleteLayerUpload,
        EcrApi::UploadLayerPart,
        EcrApi::BatchCheckLayerAvailability,
        EcrApi::BatchGetImage,
        EcrApi::GetDownloadUrlForLayer,
    ];

    /// The API a registry request counts against, if a metered one.
    pub fn of(method: &str, path: &str) -> Option<EcrApi> {
        let (_, rest) = split_repo(path)?;
        if rest.starts_with("manifests/") {
            return match method {
                "PUT" => Some(EcrApi::PutImage),
                "GET" | "HEAD" => Some(EcrApi::BatchGetImage),
                _ => None,
            };
        }
        if let Some(session) = rest.strip_prefix("blobs/uploads") {
            let session = session.trim_start_matches('/');
            return match (method, session.is_empty()) {
                ("POST", true) => Some(EcrApi::InitiateLayerUpload),
                ("PUT", false) => Some(EcrApi::CompleteLayerUpload),
                ("PATCH", false) => Some(EcrApi::UploadLayerPart),
                _ => None,
            };
        }
        if rest.starts_with("blobs/") {
            return match method {
                "HEAD" => Some(EcrApi::BatchCheckLayerAvailability),
                "GET" => Some(EcrApi::GetDownloadUrlForLayer),
                _ => None,
            };
        }
        None
    }

    /// ECR's name for it, as in Service Quotas.
    pub fn name(self) -> &'static str {
        match self {
            EcrApi::PutImage => "PutImage",
            EcrApi::InitiateLayerUpload => "InitiateLayerUpload",
            EcrApi::CompleteLayerUpload => "CompleteLayerUpload",
            EcrApi::UploadLayerPart => "UploadLayerPart",
            EcrApi::BatchCheckLayerAvailability => "BatchCheckLayerAvailability",
            EcrApi::BatchGetImage => "BatchGetImage",
            EcrApi::GetDownloadUrlForLayer => "GetDownloadUrlForLayer",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Requests per second allowed per API (`None`: unmetered), each a token
/// bucket holding one second's worth (burst = rate, at least 1), refilled
/// continuously and shared by every connection of the proxy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EcrQuotas {
    pub put_image: Option<f64>,
    pub initiate_layer_upload: Option<f64>,
    pub complete_layer_upload: Option<f64>,
    pub upload_layer_part: Option<f64>,
    pub batch_check_layer_availability: Option<f64>,
    pub batch_get_image: Option<f64>,
    pub get_download_url_for_layer: Option<f64>,
}

impl EcrQuotas {
    /// ECR's default quotas per account and region.
    pub fn ecr_defaults() -> Self {
        EcrQuotas {
            put_image: Some(10.0),
            initiate_layer_upload: Some(100.0),
            complete_layer_upload: Some(100.0),
            upload_layer_part: Some(500.0),
            batch_check_layer_availability: Some(1000.0),
            batch_get_image: Some(2000.0),
            get_download_url_for_layer: Some(3000.0),
        }
    }

    /// The quota of `api`, requests per second.
    pub fn rate(&self, api: EcrApi) -> Option<f64> {
        match api {
            EcrApi::PutImage => self.put_image,
            EcrApi::InitiateLayerUpload => self.initiate_layer_upload,
            EcrApi::CompleteLayerUpload => self.complete_layer_upload,
            EcrApi::UploadLayerPart => self.upload_layer_part,
            EcrApi::BatchCheckLayerAvailability => self.batch_check_layer_availability,
            EcrApi::BatchGetImage => self.batch_get_image,
            EcrApi::GetDownloadUrlForLayer => self.get_download_url_for_layer,
        }
    }
}

/// A token bucket: `capacity` tokens at most, `rate` added per second.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// Full, so a burst of `rate` passes at once.
    pub(crate) fn new(rate: f64, now: Instant) -> Self {
        let capacity = rate.max(1.0);
        TokenBucket {
            rate,
            capacity,
            tokens: capacity,
            at: now,
        }
    }

    /// Takes a token if there is one; a refusal takes nothing.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.capacity);
        self.at = self.at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The buckets, and the refusals so far, of one proxy.
pub(crate) struct QuotaState {
    buckets: Mutex<BTreeMap<EcrApi, TokenBucket>>,
    throttled: [AtomicU64; 7],
    /// Quota refusals per (API, request path): a request and its retries
    /// share a path.
    throttled_paths: Mutex<HashMap<(EcrApi, String), u64>>,
}

impl QuotaState {
    pub(crate) fn new(quotas: &EcrQuotas) -> Self {
        let now = Instant::now();
        let buckets = EcrApi::ALL
            .iter()
            .filter_map(|&api| quotas.rate(api).map(|r| (api, TokenBucket::new(r, now))))
            .collect();
        QuotaState {
            buckets: Mutex::new(buckets),
            throttled: Default::default(),
            throttled_paths: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn fill(&self, stats: &mut ProxyStats) {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        stats.quota_throttled = self.throttled.iter().map(g).sum();
        stats.put_image_throttled = g(&self.throttled[EcrApi::PutImage.index()]);
    }
}

impl Shared {
    /// ECR's 429 when the request's API is over its quota (no token spent);
    /// None (a token spent) when it may pass.
    pub(crate) fn over_quota(&self, head: &Head) -> Option<Answer> {
        let api = EcrApi::of(&head.method, head.path())?;
        let mut buckets = self.ecr.quotas.buckets.lock().expect("quota buckets");
        let bucket = buckets.get_mut(&api)?;
        if bucket.try_take(Instant::now()) {
            return None;
        }
        bump(&self.ecr.quotas.throttled[api.index()]);
        *self
            .ecr
            .quotas
            .throttled_paths
            .lock()
            .expect("throttled paths")
            .entry((api, head.path().to_string()))
            .or_insert(0) += 1;
        Some(Answer::error(
            "429 Too Many Requests",
            "TOOMANYREQUESTS",
            "Rate exceeded",
        ))
    }
}

impl FaultProxy {
    /// Requests refused by the quota of `api` so far.
    pub fn quota_throttled(&self, api: EcrApi) -> u64 {
        self.shared.ecr.quotas.throttled[api.index()].load(Ordering::Relaxed)
    }

    /// The most quota refusals of `api` that one request path met so far
    /// (a manifest PUT and its retries share a path): how many times one
    /// request was throttled before it got through, or gave up.
    pub fn quota_throttled_most(&self, api: EcrApi) -> u64 {
        let paths = self
            .shared
            .ecr
            .quotas
            .throttled_paths
            .lock()
            .expect("throttled paths");
        paths
            .iter()
            .filter(|((a, _), _)| *a == api)
            .map(|(_, &n)| n)
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn given_registry_routes_when_classified_then_each_maps_to_the_ecr_api_it_stands_for() {
        use EcrApi::*;
        let (session, blob) = ("/v2/app/blobs/uploads/5e1f-uuid", "/v2/app/blobs/sha256:ab");
        let cases = [
            ("PUT", "/v2/team/app/manifests/v1", Some(PutImage)),
            ("PUT", "/v2/app/manifests/sha256:ab", Some(PutImage)),
            ("GET", "/v2/app/manifests/v1", Some(BatchGetImage)),
            ("HEAD", "/v2/app/manifests/v1", Some(BatchGetImage)),
            ("DELETE", "/v2/app/manifests/sha256:ab", None),
            (
                "POST",
                "/v2/team/app/blobs/uploads/",
                Some(InitiateLayerUpload),
            ),
            ("PUT", session, Some(CompleteLayerUpload)),
            ("PATCH", session, Some(UploadLayerPart)),
            ("GET", session, None),
            ("HEAD", blob, Some(BatchCheckLayerAvailability)),
            ("GET", blob, Some(GetDownloadUrlForLayer)),
            ("GET", "/v2/app/tags/list", None),
            ("GET", "/v2/", None),
        ];
        for (method, path, want) in cases {
            assert_eq!(EcrApi::of(method, path), want, "{method} {path}");
        }
    }

    #[test]
    fn given_a_bucket_when_drained_then_refusals_take_nothing_and_it_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(4.0, t0);
        // Burst = rate.
        assert_eq!((0..6).filter(|_| b.try_take(t0)).count(), 4);
        // A thousand refusals later, a quarter second still buys one token:
        // the refusals took nothing.
        for _ in 0..1000 {
            assert!(!b.try_take(t0 + Duration::from_millis(10)));
        }
        assert!(b.try_take(t0 + Duration::from_millis(250)));
        assert!(!b.try_take(t0 + Duration::from_millis(260)));
        // Never more than one second's worth, however long it rested.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| b.try_take(later)).count(), 4);
        // A rate under 1/s still lets one request through.
        let mut slow = TokenBucket::new(0.5, t0);
        assert!(slow.try_take(t0));
        assert!(!slow.try_take(t0 + Duration::from_secs(1)));
        assert!(slow.try_take(t0 + Duration::from_secs(2)));
    }

    #[test]
    fn given_ecr_defaults_then_each_api_has_its_documented_quota() {
        let q = EcrQuotas::ecr_defaults();
        let got: Vec<_> = EcrApi::ALL.iter().map(|&a| q.rate(a)).collect();
        let want = [10.0, 100.0, 100.0, 500.0, 1000.0, 2000.0, 3000.0].map(Some);
        assert_eq!(got, want);
        assert!(EcrApi::ALL
            .iter()
            .all(|&a| EcrQuotas::default().rate(a).is_none()));
    }
}
