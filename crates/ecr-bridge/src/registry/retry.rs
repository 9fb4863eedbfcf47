//! Bounded retries: exponential backoff with jitter, honouring `Retry-After`,
//! and never past the caller's deadline.
//!
//! Two kinds of failure are budgeted apart. A failure (5xx, reset, timeout)
//! counts against `max_attempts` and `max_total_wait`. Throttling (429) is
//! not a failure but a quota: ECR answers `TOOMANYREQUESTS` with no
//! `Retry-After` whenever a burst of pushes exceeds e.g. PutImage's 10/s, and
//! giving up after a few attempts turns a busy minute into lost work. So
//! throttled requests wait with full jitter for as long as
//! `max_throttle_wait` and the deadline allow, however many attempts that is.

use std::time::{Duration, Instant};

use rand::Rng;

/// The longest wait a server may ask for that is taken at its word; more
/// than this is clamped (and then usually exceeds the budget, ending the
/// retries with the server's error).
pub const MAX_SERVER_WAIT: Duration = Duration::from_secs(3600);

/// How hard to try before giving up. The budget is bounded both in attempts
/// and in total time so a Lambda invocation ends with a clear error well
/// before its own timeout.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (throttled attempts not counted).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Total time spent waiting between failed attempts, at most.
    pub max_total_wait: Duration,
    /// Total time spent waiting out throttling, at most.
    pub max_throttle_wait: Duration,
    /// The longest single wait after a throttled attempt. Short, so that a
    /// quota shared by many clients stays in use: with waits drawn from
    /// [0, cap], n clients try about 2n/cap times a second.
    pub max_throttle_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            max_total_wait: Duration::from_secs(60),
            // Lambda's longest invocation; the deadline usually ends it first.
            max_throttle_wait: Duration::from_secs(15 * 60),
            max_throttle_backoff: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// No retries at all (for tests that want to see the first error).
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            max_throttle_wait: Duration::ZERO,
            ..RetryPolicy::default()
        }
    }

    pub fn start(&self) -> RetryState<'_> {
        self.start_until(None)
    }

    /// A budget that also ends at `deadline`: no wait runs past it.
    pub fn start_until(&self, deadline: Option<Instant>) -> RetryState<'_> {
        RetryState {
            policy: self,
            attempt: 0,
            throttled: 0,
            waited: Duration::ZERO,
            throttle_waited: Duration::ZERO,
            started: Instant::now(),
            deadline,
        }
    }
}

/// One operation's progress through its budget.
#[derive(Debug)]
pub struct RetryState<'a> {
    policy: &'a RetryPolicy,
    attempt: u32,
    throttled: u32,
    waited: Duration,
    throttle_waited: Duration,
    started: Instant,
    deadline: Option<Instant>,
}

impl RetryState<'_> {
    /// After a retryable failure: how long to wait before the next attempt,
    /// or `None` when the budget is spent. `retry_after` is the server's
    /// request; it is honoured when it fits the budget, and a server asking
    /// for more than the budget ends the retries at once.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        self.attempt = self.attempt.saturating_add(1);
        if self.attempt >= self.policy.max_attempts {
            return None;
        }
        let exp = self.backoff(self.attempt, self.policy.max_backoff);
        // "Equal jitter": half fixed, half random, so concurrent clients spread out
        // without ever retrying immediately.
        let half = exp / 2;
        let (delay, waited) = self.fit(
            half + random_up_to(half),
            retry_after,
            self.waited,
            self.policy.max_total_wait,
        )?;
        self.waited = waited;
        Some(delay)
    }

    /// After a throttled attempt: "full jitter" (anywhere from zero to the
    /// exponential step), so that many clients sharing one quota spread
    /// over it instead of retrying in waves. `None` once waiting would pass
    /// `max_throttle_wait` or the deadline.
    pub fn next_throttle_delay(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        self.throttled = self.throttled.saturating_add(1);
        let exp = self.backoff(self.throttled, self.policy.max_throttle_backoff);
        let (delay, waited) = self.fit(
            random_up_to(exp),
            retry_after,
            self.throttle_waited,
            self.policy.max_throttle_wait,
        )?;
        self.throttle_waited = waited;
        Some(delay)
    }

    /// Either of the above, by what the error was.
    pub fn next_delay_for(
        &mut self,
        throttled: bool,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        if throttled {
            self.next_throttle_delay(retry_after)
        } else {
            self.next_delay(retry_after)
        }
    }

    /// `delay`, at least the server's `retry_after` (itself at most
    /// [`MAX_SERVER_WAIT`]), with the total it brings `waited` to; `None`
    /// when that total passes `limit` or the wait passes the deadline.
    fn fit(
        &self,
        delay: Duration,
        retry_after: Option<Duration>,
        waited: Duration,
        limit: Duration,
    ) -> Option<(Duration, Duration)> {
        let delay = retry_after.map_or(delay, |ra| delay.max(ra.min(MAX_SERVER_WAIT)));
        let waited = waited.checked_add(delay)?;
        if waited > limit || !self.fits_deadline(delay) {
            return None;
        }
        Some((delay, waited))
    }

    /// `initial_backoff * 2^(n-1)`, at most `cap`.
    fn backoff(&self, n: u32, cap: Duration) -> Duration {
        self.policy
            .initial_backoff
            .saturating_mul(1u32 << n.saturating_sub(1).min(16))
            .min(cap)
    }

    fn fits_deadline(&self, delay: Duration) -> bool {
        match self.deadline {
            None => true,
            Some(d) => Instant::now()
                .checked_add(delay)
                .is_some_and(|after| after < d),
        }
    }

    /// Failed attempts so far (1 after the first failure); throttled ones apart.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Throttled attempts so far.
    pub fn throttled(&self) -> u32 {
        self.throttled
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

fn random_up_to(max: Duration) -> Duration {
    let ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=ms))
}

/// `Retry-After` as seconds or an HTTP date, clamped to [`MAX_SERVER_WAIT`].
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX_SERVER_WAIT));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .min(MAX_SERVER_WAIT),
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
        assert_eq!(RetryPolicy::none().start().next_throttle_delay(None), None);
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

    #[test]
    fn given_hostile_retry_after_values_when_parsed_and_waited_then_clamped_and_no_overflow() {
        assert_eq!(
            parse_retry_after("18446744073709551615"),
            Some(MAX_SERVER_WAIT)
        );
        let p = RetryPolicy::default();
        let mut s = p.start();
        // A first modest wait, then the largest a server can ask for.
        assert!(s.next_delay(Some(Duration::from_secs(1))).is_some());
        assert_eq!(s.next_delay(Some(Duration::MAX)), None);
        let mut s = p.start();
        assert!(s
            .next_throttle_delay(Some(Duration::from_secs(1)))
            .is_some());
        // Clamped to an hour, which is past the 15-minute throttle budget.
        assert_eq!(s.next_throttle_delay(Some(Duration::MAX)), None);
    }

    #[test]
    fn given_throttling_when_waiting_then_attempts_are_not_counted_but_time_is() {
        let p = RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(10),
            max_throttle_backoff: Duration::from_millis(40),
            max_throttle_wait: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        let mut s = p.start();
        let mut total = Duration::ZERO;
        let mut n = 0;
        while let Some(d) = s.next_throttle_delay(None) {
            assert!(d <= Duration::from_millis(40), "{d:?}");
            total += d;
            n += 1;
            assert!(n < 100_000, "throttle waits never ended");
        }
        // Far more tries than max_attempts, and no more waiting than the budget.
        assert!(n > 2, "{n}");
        assert!(total <= Duration::from_secs(1), "{total:?}");
        // Failures keep their own budget.
        assert!(s.next_delay(None).is_some());
        assert_eq!(s.next_delay(None), None);
    }

    #[test]
    fn given_a_deadline_when_waiting_then_no_wait_runs_past_it() {
        let p = RetryPolicy::default();
        let mut s = p.start_until(Some(Instant::now() + Duration::from_millis(50)));
        // 100 ms is the least the first failure waits: past the deadline.
        assert_eq!(s.next_delay(None), None);
        let mut s = p.start_until(Some(Instant::now()));
        assert_eq!(s.next_throttle_delay(None), None);
    }

    /// The fuzz target `retry_policy` in miniature, run on every test pass:
    /// random policies, extreme and odd `Retry-After` answers, any mix of
    /// throttled and failed attempts; the budgets hold and nothing panics.
    #[test]
    fn given_random_policies_and_hostile_answers_when_waiting_then_every_budget_holds() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        let answers = [
            "",
            "0",
            "1",
            "-1",
            "3600",
            "3601",
            "18446744073709551615",
            "99999999999999999999999",
            "1.5",
            " 7 ",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Fri, 31 Dec 9999 23:59:59 GMT",
            "garbage",
        ];
        for _ in 0..5_000 {
            let ms = |rng: &mut rand::rngs::StdRng, max: u64| {
                Duration::from_millis(rng.random_range(0..=max))
            };
            let p = RetryPolicy {
                max_attempts: rng.random_range(0..12),
                initial_backoff: ms(&mut rng, 10_000),
                max_backoff: ms(&mut rng, 400_000),
                max_total_wait: ms(&mut rng, 4_000_000),
                max_throttle_wait: ms(&mut rng, 40_000_000),
                max_throttle_backoff: ms(&mut rng, 100_000),
            };
            let mut s = p.start();
            let (mut waited, mut throttle_waited) = (Duration::ZERO, Duration::ZERO);
            for _ in 0..40 {
                let answer = answers[rng.random_range(0..answers.len())];
                let retry_after = parse_retry_after(answer);
                assert!(
                    retry_after.is_none_or(|d| d <= MAX_SERVER_WAIT),
                    "{answer:?}"
                );
                let throttled = rng.random_bool(0.5);
                let Some(d) = s.next_delay_for(throttled, retry_after) else {
                    continue;
                };
                if throttled {
                    throttle_waited += d;
                    assert!(throttle_waited <= p.max_throttle_wait, "{p:?}");
                } else {
                    waited += d;
                    assert!(waited <= p.max_total_wait, "{p:?}");
                    assert!(s.attempts() < p.max_attempts, "{p:?}");
                }
            }
        }
    }
}
