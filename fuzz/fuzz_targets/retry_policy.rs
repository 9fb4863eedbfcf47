//! The retry budget under any server: any `Retry-After` text, any mix of
//! throttled and failed attempts, any policy and deadline. Never a panic
//! (`Duration` arithmetic overflows panic), no single wait over the server
//! cap or the policy's caps, and the sums stay within the budgets.
#![no_main]

use std::time::{Duration, Instant};

use ecr_bridge::registry::{parse_retry_after, RetryPolicy, MAX_SERVER_WAIT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (head, ops) = data.split_at(8);
    let ms = |b: u8| Duration::from_millis(u64::from(b) * 37);
    let policy = RetryPolicy {
        max_attempts: u32::from(head[0] % 12),
        initial_backoff: ms(head[1]),
        max_backoff: ms(head[2]).saturating_mul(40),
        max_total_wait: ms(head[3]).saturating_mul(400),
        max_throttle_wait: ms(head[4]).saturating_mul(4000),
        max_throttle_backoff: ms(head[5]).saturating_mul(10),
    };
    let deadline = (head[6] & 1 == 1).then(|| Instant::now() + ms(head[7]).saturating_mul(1000));
    let mut state = policy.start_until(deadline);
    let (mut waited, mut throttle_waited) = (Duration::ZERO, Duration::ZERO);
    // Each op: one flag byte, then a Retry-After text up to the next 0xFF.
    for op in ops.split(|b| *b == 0xFF).take(64) {
        let Some((flag, text)) = op.split_first() else {
            continue;
        };
        let retry_after = std::str::from_utf8(text).ok().and_then(parse_retry_after);
        if let Some(ra) = retry_after {
            assert!(ra <= MAX_SERVER_WAIT, "{ra:?} from {text:?}");
        }
        let throttled = flag & 1 == 1;
        let Some(delay) = state.next_delay_for(throttled, retry_after) else {
            continue;
        };
        if let Some(d) = deadline {
            assert!(Instant::now() + delay <= d + Duration::from_secs(1));
        }
        if throttled {
            throttle_waited += delay;
            assert!(throttle_waited <= policy.max_throttle_wait);
        } else {
            waited += delay;
            assert!(waited <= policy.max_total_wait);
            assert!(state.attempts() < policy.max_attempts.max(1));
        }
    }
});
