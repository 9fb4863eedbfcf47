//! Client-side rate limiting that learns a registry's quotas.
//!
//! ECR's quotas are per account, region and API (PutImage 10/s,
//! InitiateLayerUpload 100/s, ...), and a request over one is answered 429
//! with no hint of how long to wait. Retrying blindly wastes the quota on
//! refusals; so, in the spirit of the AWS SDKs' "adaptive" retry mode, each
//! (host, API) pair has a token bucket that is off until throttling is more
//! than a stray answer (several 429s, over a quarter of recent answers), then drops to 70% of
//! the rate that was being sent and grows back along a cubic curve while
//! requests succeed. A stray 429 is only retried: slowing every request for
//! one refusal in fifty would cost more than it saves. Every client of the process that talks to
//! the same host shares the bucket, so concurrent copies slow down together.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use reqwest::Method;

/// The quota a registry request counts against (ECR's API names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiClass {
    /// Manifest PUT, by digest or tag (PutImage).
    PutImage,
    /// Manifest GET/HEAD (BatchGetImage).
    GetImage,
    /// Blob HEAD (BatchCheckLayerAvailability).
    CheckLayer,
    /// Blob GET, and whatever it redirects to (GetDownloadUrlForLayer).
    DownloadLayer,
    /// Upload POST (InitiateLayerUpload).
    InitiateUpload,
    /// The PUT that completes an upload (CompleteLayerUpload).
    CompleteUpload,
    /// Anything else (`/v2/`, referrers, tag lists, deletes).
    Other,
}

impl ApiClass {
    pub fn of(method: &Method, path: &str) -> ApiClass {
        // The route is the last marker: a repository may be named "blobs".
        let at = |marker: &str| path.rfind(marker).map(|i| i + 1);
        let (upload, manifest, blob) = (at("/blobs/uploads/"), at("/manifests/"), at("/blobs/"));
        let last = [upload, manifest, blob].into_iter().flatten().max();
        match (last, method) {
            (None, _) => ApiClass::Other,
            (l, &Method::POST) if l == upload => ApiClass::InitiateUpload,
            (l, &Method::PUT) if l == upload => ApiClass::CompleteUpload,
            (l, _) if l == upload => ApiClass::Other,
            (l, &Method::PUT) if l == manifest => ApiClass::PutImage,
            (l, &Method::GET | &Method::HEAD) if l == manifest => ApiClass::GetImage,
            (l, &Method::HEAD) if l == blob => ApiClass::CheckLayer,
            (l, &Method::GET) if l == blob => ApiClass::DownloadLayer,
            _ => ApiClass::Other,
        }
    }
}

/// The slowest the limiter goes: one request every two seconds. Below this
/// a client would sit idle while the quota, shared with others, has room.
const MIN_RATE: f64 = 0.5;
const MAX_RATE: f64 = 10_000.0;
/// After a 429, the rate drops to this share of what was being sent.
const BETA: f64 = 0.7;
/// CUBIC's scaling constant (requests/s per s³), as in the SDKs.
const CUBIC_C: f64 = 0.4;
/// The longest a caller waits before asking for a token again.
const MAX_POLL: Duration = Duration::from_millis(250);
/// Sending rate is measured over windows of this length.
const WINDOW: Duration = Duration::from_millis(500);
/// Throttling counts as lasting when more than this share of recent
/// answers (half-life one second) were 429s, and there were a few of them.
const LASTING_SHARE: f64 = 0.25;
const LASTING_COUNT: f64 = 2.5;

/// The limiter's state for one (host, API). Pure: time is passed in, so it
/// can be tested and fuzzed without sleeping.
#[derive(Debug, Clone)]
pub struct AdaptiveRate {
    /// Off until the first throttle: an unthrottled client is never slowed.
    enabled: bool,
    /// Tokens per second while enabled.
    fill_rate: f64,
    /// May go negative: each caller reserves a slot and waits its turn.
    tokens: f64,
    last_refill: Instant,
    /// The rate at the last throttle (CUBIC's W_max).
    last_max_rate: f64,
    last_throttle: Instant,
    /// Smoothed sending rate, requests per second.
    measured: f64,
    window_start: Instant,
    window_count: u32,
    /// Recent answers, decayed with a one-second half-life.
    recent_ok: f64,
    recent_throttled: f64,
    last_decay: Instant,
}

impl AdaptiveRate {
    pub fn new(now: Instant) -> Self {
        AdaptiveRate {
            enabled: false,
            fill_rate: MAX_RATE,
            tokens: 0.0,
            last_refill: now,
            last_max_rate: MAX_RATE,
            last_throttle: now,
            measured: 0.0,
            window_start: now,
            window_count: 0,
            recent_ok: 0.0,
            recent_throttled: 0.0,
            last_decay: now,
        }
    }

    pub fn is_limiting(&self) -> bool {
        self.enabled
    }

    /// Requests per second currently allowed (`None` while not limiting).
    pub fn rate(&self) -> Option<f64> {
        self.enabled.then_some(self.fill_rate)
    }

    /// Takes a token for a request about to be sent: zero when it may go
    /// now, else how long to wait before asking again. Nothing is reserved
    /// ahead: the rate grows while callers wait, so a wait decided at a low
    /// rate must not outlive it (a process's last PUTs would trickle out
    /// after the quota freed up).
    pub fn reserve(&mut self, now: Instant) -> Duration {
        if !self.enabled {
            self.count_sent(now);
            return Duration::ZERO;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.count_sent(now);
            return Duration::ZERO;
        }
        let wait = (1.0 - self.tokens) / self.fill_rate;
        Duration::from_secs_f64(wait.min(MAX_POLL.as_secs_f64()))
    }

    /// The registry answered 429.
    pub fn on_throttle(&mut self, now: Instant) {
        self.decay(now);
        self.recent_throttled += 1.0;
        let share = self.recent_throttled / (self.recent_throttled + self.recent_ok);
        if share <= LASTING_SHARE || self.recent_throttled < LASTING_COUNT {
            return;
        }
        // Requests sent at the old rate come back refused together: count
        // them as one signal, as TCP cuts its window once per round trip.
        let settle = Duration::from_secs_f64((1.0 / self.fill_rate).max(0.1));
        if self.enabled && now.saturating_duration_since(self.last_throttle) < settle {
            return;
        }
        let sending = self.measured.max(MIN_RATE);
        let base = if self.enabled {
            self.fill_rate.min(sending)
        } else {
            sending
        };
        self.refill(now);
        self.last_max_rate = base;
        self.last_throttle = now;
        self.fill_rate = (base * BETA).clamp(MIN_RATE, MAX_RATE);
        self.enabled = true;
        // No burst in hand: the next request waits for its token.
        self.tokens = self.tokens.clamp(0.0, 1.0);
    }

    /// The registry accepted a request (any answer but throttling or a 5xx).
    pub fn on_success(&mut self, now: Instant) {
        self.decay(now);
        self.recent_ok += 1.0;
        if !self.enabled {
            return;
        }
        self.refill(now);
    }

    /// The rate along the cubic curve since the last cut: back to the
    /// refused rate after k seconds, then faster and faster (a throttle was
    /// a passing burst more often than a lasting limit, and a lasting one
    /// cuts the rate again at once). It grows with time, not with answers,
    /// so a waiting caller profits too. Half a minute without a 429 and the
    /// curve is past any quota (no limiting).
    fn grow(&mut self, now: Instant) {
        let t = now
            .saturating_duration_since(self.last_throttle)
            .as_secs_f64();
        let k = (self.last_max_rate * (1.0 - BETA) / CUBIC_C).cbrt();
        let cubic = CUBIC_C * (t - k).powi(3) + self.last_max_rate;
        self.fill_rate = cubic.clamp(MIN_RATE, MAX_RATE);
    }

    fn decay(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last_decay).as_secs_f64();
        let f = 0.5f64.powf(dt);
        self.recent_ok *= f;
        self.recent_throttled *= f;
        self.last_decay = now;
    }

    fn refill(&mut self, now: Instant) {
        if self.enabled {
            self.grow(now);
        }
        let dt = now
            .saturating_duration_since(self.last_refill)
            .as_secs_f64();
        let capacity = self.fill_rate.max(1.0);
        self.tokens = (self.tokens + dt * self.fill_rate).min(capacity);
        self.last_refill = now;
    }

    fn count_sent(&mut self, now: Instant) {
        self.window_count = self.window_count.saturating_add(1);
        let span = now.saturating_duration_since(self.window_start);
        if span >= WINDOW {
            let instant = f64::from(self.window_count) / span.as_secs_f64();
            self.measured = 0.8 * self.measured + 0.2 * instant;
            if self.measured == 0.0 {
                self.measured = instant;
            }
            self.window_start = now;
            self.window_count = 0;
        } else if self.measured == 0.0 {
            // First window: a burst counts at once, so a 429 in the first
            // half second already knows roughly how fast we were going.
            self.measured = f64::from(self.window_count) / WINDOW.as_secs_f64();
        }
    }
}

/// One (host, API) bucket, shared.
#[derive(Debug)]
pub struct Limiter {
    state: Mutex<AdaptiveRate>,
}

impl Limiter {
    fn new() -> Self {
        Limiter {
            state: Mutex::new(AdaptiveRate::new(Instant::now())),
        }
    }

    /// How long to wait before sending (zero while not limiting).
    pub fn reserve(&self) -> Duration {
        self.with(|s| s.reserve(Instant::now()))
    }

    pub fn on_throttle(&self) {
        self.with(|s| s.on_throttle(Instant::now()));
    }

    pub fn on_success(&self) {
        self.with(|s| s.on_success(Instant::now()));
    }

    pub fn rate(&self) -> Option<f64> {
        self.with(|s| s.rate())
    }

    fn with<T>(&self, f: impl FnOnce(&mut AdaptiveRate) -> T) -> T {
        // A panic elsewhere while holding the lock leaves valid numbers behind.
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

type Limiters = Mutex<HashMap<(String, ApiClass), Arc<Limiter>>>;

/// The process-wide bucket for `host` (`name[:port]`) and `api`. Process
/// wide on purpose: a quota belongs to the registry, not to one client
/// object, and a Lambda container may hold several clients of one registry
/// (one per role).
pub fn limiter(host: &str, api: ApiClass) -> Arc<Limiter> {
    static ALL: OnceLock<Limiters> = OnceLock::new();
    let all = ALL.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = all.lock().unwrap_or_else(|p| p.into_inner());
    map.entry((host.to_string(), api))
        .or_insert_with(|| Arc::new(Limiter::new()))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A fresh rate and the instant it started at.
    fn start() -> (Instant, AdaptiveRate) {
        let t0 = Instant::now();
        (t0, AdaptiveRate::new(t0))
    }

    /// Lasting throttling: three 429s in a row at `t`.
    fn refused(r: &mut AdaptiveRate, t: Instant) {
        for _ in 0..3 {
            r.on_throttle(t);
        }
    }

    /// A rate that saw `n` requests, one every `step`, then lasting
    /// throttling right after them; with its start and the rate it cut to.
    fn refused_after(n: u32, step: Duration) -> (Instant, AdaptiveRate, f64) {
        let (t0, mut r) = start();
        for i in 0..n {
            r.reserve(t0 + step * i);
        }
        refused(&mut r, t0 + step * n);
        let rate = r.rate().expect("limiting");
        (t0, r, rate)
    }

    #[test]
    fn given_requests_when_classified_then_each_lands_on_its_ecr_quota() {
        for (request, class) in [
            ("PUT /v2/a/b/manifests/v1", ApiClass::PutImage),
            ("HEAD /v2/a/manifests/sha256:x", ApiClass::GetImage),
            ("GET /v2/a/manifests/v1", ApiClass::GetImage),
            ("HEAD /v2/a/blobs/sha256:x", ApiClass::CheckLayer),
            ("GET /v2/a/blobs/sha256:x", ApiClass::DownloadLayer),
            ("POST /v2/a/blobs/uploads/", ApiClass::InitiateUpload),
            ("PUT /v2/a/blobs/uploads/u1", ApiClass::CompleteUpload),
            ("GET /v2/", ApiClass::Other),
            // A repository named like a route is still routed by the last part.
            ("PUT /v2/blobs/manifests/v1", ApiClass::PutImage),
            ("HEAD /v2/manifests/blobs/sha256:x", ApiClass::CheckLayer),
        ] {
            let (method, path) = request.split_once(' ').unwrap();
            let method: Method = method.parse().unwrap();
            assert_eq!(ApiClass::of(&method, path), class, "{request}");
        }
    }

    #[test]
    fn given_no_throttling_when_sending_then_never_slowed() {
        let (t0, mut r) = start();
        for i in 0..1000 {
            assert_eq!(r.reserve(t0 + ms(i)), Duration::ZERO);
            r.on_success(t0 + ms(i));
        }
        assert!(!r.is_limiting());
    }

    #[test]
    fn given_a_throttle_when_sending_fast_then_paced_below_the_rate_that_was_refused() {
        // 20 requests in 100 ms (200/s), then a 429.
        let (t0, mut r, rate) = refused_after(20, ms(5));
        assert!((MIN_RATE..200.0).contains(&rate), "{rate}");
        // A caller that asks again as soon as it is told gets far fewer
        // than 200 a second through in the next second.
        let (mut t, end, mut sent) = (t0 + ms(100), t0 + ms(1100), 0);
        while t < end {
            match r.reserve(t) {
                w if w.is_zero() => {
                    sent += 1;
                    t += ms(1);
                }
                w => t += w,
            }
        }
        assert!(
            sent < 100,
            "{sent} sent in a second after the cut to {rate}/s"
        );
        assert!(sent >= 1, "not stopped altogether");
    }

    #[test]
    fn given_a_stray_429_among_many_successes_when_counted_then_nothing_is_slowed() {
        let (t0, mut r) = start();
        for i in 0..100 {
            r.reserve(t0 + ms(i));
            if i == 50 {
                r.on_throttle(t0 + ms(i));
            } else {
                r.on_success(t0 + ms(i));
            }
        }
        assert!(!r.is_limiting());
    }

    #[test]
    fn given_many_requests_refused_together_when_counted_then_the_rate_is_cut_once() {
        let (t0, mut r, once) = refused_after(20, ms(1));
        for i in 0..19 {
            r.on_throttle(t0 + ms(21 + i));
        }
        assert_eq!(r.rate(), Some(once));
    }

    #[test]
    fn given_repeated_throttles_then_the_rate_falls_to_the_floor_and_recovers_on_success() {
        let (mut t, mut r) = start();
        // Refused again and again, each time after the limiter's own pace.
        for _ in 0..30 {
            t += r.reserve(t);
            refused(&mut r, t);
            t += Duration::from_secs(3);
        }
        assert_eq!(r.rate(), Some(MIN_RATE));
        // Ten seconds of successes at whatever pace the limiter allows.
        let end = t + Duration::from_secs(10);
        while t < end {
            let wait = r.reserve(t);
            if wait.is_zero() {
                r.on_success(t);
            }
            t += wait.max(ms(1));
        }
        let rate = r.rate().expect("limiting");
        assert!(rate > 5.0, "{rate}");
    }

    #[test]
    fn given_hostile_timing_when_driven_then_numbers_stay_finite_and_waits_bounded() {
        let (mut t, mut r) = start();
        for i in 0u64..10_000 {
            let w = r.reserve(t);
            assert!(w <= Duration::from_secs(3600), "{w:?}");
            if i % 3 == 0 {
                r.on_throttle(t);
            } else {
                r.on_success(t);
            }
            // Sometimes no time passes at all, sometimes a lot.
            t += ms((i * 7919) % 5000);
            let rate = r.rate().unwrap_or(MAX_RATE);
            assert!(
                rate.is_finite() && (MIN_RATE..=MAX_RATE).contains(&rate),
                "{rate}"
            );
        }
    }

    #[test]
    fn given_two_clients_of_one_host_when_asking_then_they_share_one_bucket() {
        let a = limiter("registry.test:1", ApiClass::PutImage);
        let b = limiter("registry.test:1", ApiClass::PutImage);
        let other = limiter("registry.test:1", ApiClass::CheckLayer);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &other));
        for _ in 0..3 {
            a.on_throttle();
        }
        assert!(b.rate().is_some());
        assert!(other.rate().is_none());
    }
}
