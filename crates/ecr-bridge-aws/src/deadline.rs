//! The invocation's deadline, as every long loop sees it: when work must
//! stop (the deadline less the time to report), and whether one more page
//! of listing or scanning still fits before then.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long before an invocation's deadline work stops, to leave time for
/// the outcome line, the metrics, a continuation and the answer: 30 s, or
/// a quarter of a short invocation.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(30);

/// When work must stop for an invocation that ends in `remaining`.
pub fn work_deadline(now: Instant, remaining: Duration) -> Instant {
    now + remaining.saturating_sub(DEADLINE_MARGIN.min(remaining / 4))
}

/// When the work of an invocation must stop: its deadline (milliseconds
/// since the epoch, as the runtime API gives it) less the time to report.
/// `None` for a deadline already past when the invocation starts: Lambda
/// never hands out such an event, but an emulator does (`cargo lambda
/// watch` dates the first event before compiling the function), and
/// stopping at once would make every such run fail.
pub fn invocation_deadline(deadline_ms: u64) -> Option<Instant> {
    let end = UNIX_EPOCH + Duration::from_millis(deadline_ms);
    match end.duration_since(SystemTime::now()) {
        Ok(remaining) if !remaining.is_zero() => Some(work_deadline(Instant::now(), remaining)),
        _ => {
            tracing::warn!(
                deadline_ms,
                "the invocation's deadline had passed when it started (an emulator's clock?); working without one"
            );
            None
        }
    }
}

/// Whether another page fits before the deadline: a page starts only if
/// the longest page so far would still end before it, so a step ends in
/// time unless one page is far slower than the ones before. The first page
/// always runs: every step makes progress.
pub struct PageClock {
    deadline: Option<Instant>,
    longest: Mutex<Option<Duration>>,
}

impl PageClock {
    pub fn new(deadline: Option<Instant>) -> Self {
        PageClock {
            deadline,
            longest: Mutex::new(None),
        }
    }

    /// A page that began at `started` has ended.
    pub fn page_done(&self, started: Instant) {
        let took = started.elapsed();
        let mut longest = self.longest.lock().unwrap_or_else(|e| e.into_inner());
        *longest = Some(longest.map_or(took, |l| l.max(took)));
    }

    /// Whether the deadline has passed: work inside a page stops starting
    /// new items then.
    pub fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    pub fn room_for_another(&self) -> bool {
        let longest = self.longest.lock().unwrap_or_else(|e| e.into_inner());
        match (self.deadline, *longest) {
            (None, _) | (_, None) => true,
            (Some(deadline), Some(page)) => Instant::now() + page < deadline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_invocation_deadlines_when_converted_then_work_stops_30_s_or_a_quarter_early() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let left = |ms: u64| {
            invocation_deadline(now_ms + ms)
                .expect("a deadline ahead")
                .saturating_duration_since(Instant::now())
                .as_secs_f64()
        };
        // 15 minutes: stop 30 s before. 8 s: stop 2 s before.
        assert!(
            (869.0..=870.1).contains(&left(900_000)),
            "{}",
            left(900_000)
        );
        assert!((5.9..=6.1).contains(&left(8_000)), "{}", left(8_000));
        // Already past at the start (an emulator): no deadline rather than none left.
        assert_eq!(invocation_deadline(now_ms.saturating_sub(60_000)), None);
    }

    #[test]
    fn given_a_page_slower_than_the_time_left_when_asked_then_no_other_page_starts() {
        let clock = PageClock::new(Some(Instant::now() + Duration::from_millis(50)));
        assert!(clock.room_for_another(), "the first page always runs");
        let started = Instant::now();
        std::thread::sleep(Duration::from_millis(60));
        clock.page_done(started);
        assert!(!clock.room_for_another());
        let unbounded = PageClock::new(None);
        unbounded.page_done(started);
        assert!(unbounded.room_for_another());
    }
}
