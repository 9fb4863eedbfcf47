//! Bounded retries: exponential backoff with jitter, honouring `Retry-After`.

use std::time::{Duration, Instant};

use rand::Rng;

/// How hard to try before giving up. The budget is bounded both in attempts
/// and in total time so a Lambda invocation ends with a clear error well
/// before its own timeout.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Total time spent waiting between attempts, at most.
    pub max_total_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            max_total_wait: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries at all (for tests that want to see the first error).
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    pub fn start(&self) -> RetryState<'_> {
        RetryState {
            policy: self,
            attempt: 0,
            waited: Duration::ZERO,
            started: Instant::now(),
        }
    }
}

/// One operation's progress through its budget.
#[derive(Debug)]
pub struct RetryState<'a> {
    policy: &'a RetryPolicy,
    attempt: u32,
    waited: Duration,
    started: Instant,
}

impl RetryState<'_> {
    /// After a retryable failure: how long to wait before the next attempt,
    /// or `None` when the budget is spent. `retry_after` is the server's
    /// request; it is honoured when it fits the budget, and a server asking
    /// for more than the budget ends the retries at once.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        self.attempt += 1;
        if self.attempt >= self.policy.max_attempts {
            return None;
        }
        let exp = self
            .policy
            .initial_backoff
            .saturating_mul(1u32 << (self.attempt - 1).min(16))
            .min(self.policy.max_backoff);
        // "Equal jitter": half fixed, half random, so concurrent clients spread out
        // without ever retrying immediately.
        let half = exp / 2;
        let jitter = rand::rng().random_range(0..=half.as_millis() as u64);
        let mut delay = half + Duration::from_millis(jitter);
        if let Some(ra) = retry_after {
            delay = delay.max(ra);
        }
        if self.waited + delay > self.policy.max_total_wait {
            return None;
        }
        self.waited += delay;
        Some(delay)
    }

    /// Attempts made so far (1 after the first failure).
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_default_policy_when_failing_repeatedly_then_attempts_are_bounded_and_growing() {
        let p = RetryPolicy::default();
        let mut s = p.start();
        let mut delays = Vec::new();
        while let Some(d) = s.next_delay(None) {
            delays.push(d);
        }
        assert_eq!(delays.len() as u32, p.max_attempts - 1);
        // Each delay lies in [exp/2, exp] for exp = 200ms * 2^n.
        for (n, d) in delays.iter().enumerate() {
            let exp = (200u64 << n).min(10_000);
            assert!(
                d.as_millis() as u64 >= exp / 2 && d.as_millis() as u64 <= exp,
                "{n}: {d:?}"
            );
        }
    }

    #[test]
    fn given_retry_after_within_budget_when_waiting_then_it_is_honoured() {
        let p = RetryPolicy::default();
        let mut s = p.start();
        assert!(s.next_delay(Some(Duration::from_secs(3))).unwrap() >= Duration::from_secs(3));
    }

    #[test]
    fn given_retry_after_beyond_budget_when_waiting_then_retries_end() {
        let p = RetryPolicy::default();
        let mut s = p.start();
        assert_eq!(s.next_delay(Some(Duration::from_secs(3600))), None);
    }

    #[test]
    fn given_no_retry_policy_when_failing_then_no_second_attempt() {
        assert_eq!(RetryPolicy::none().start().next_delay(None), None);
    }

    #[test]
    fn given_retry_after_forms_when_parsed_then_seconds_and_dates_work() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
