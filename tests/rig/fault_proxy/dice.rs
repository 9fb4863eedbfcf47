//! The fault dice: which request gets which fault. Every decision is a hash
//! of (seed, method, path, how many times that method and path were seen
//! before), so the same seed injects the same faults into the same requests
//! however concurrent requests interleave.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use super::bump;
use crate::wire::Head;

/// Fraction (0.0–1.0) of requests that get each fault. Kinds are exclusive:
/// a request gets at most one. `truncate` applies only to responses with a
/// body (GET); elsewhere its share passes unharmed.
#[derive(Debug, Clone, Default)]
pub struct FaultRates {
    /// 500/502/503; half of them after the registry did the work.
    pub server_error: f64,
    /// 429 `TOO_MANY_REQUESTS` with `Retry-After: retry_after_secs`.
    pub throttle: f64,
    /// Connection reset (RST): mid-body when the request or response has
    /// one, else after the registry answered.
    pub reset: f64,
    /// The response body stops part way and the connection closes.
    pub truncate: f64,
    /// Answer delayed by `slow_delay`, body dribbled out in pieces.
    pub slow: f64,
}

/// What the fault dice said for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Fault {
    None,
    ServerError {
        status: u16,
        after_work: bool,
    },
    Throttle,
    /// Cut at this fraction of the body.
    Reset {
        cut: f64,
    },
    Truncate {
        cut: f64,
    },
    Slow,
}

/// How often each request was seen, and the faults dealt so far.
#[derive(Default)]
pub(crate) struct Dice {
    occurrences: Mutex<HashMap<String, u64>>,
    /// (fault, method, path#occurrence) of every fault injected, for failure messages.
    log: Mutex<Vec<String>>,
}

impl Dice {
    /// Rolls the dice for a request, deterministically from the seed.
    pub(crate) fn decide(&self, seed: u64, r: &FaultRates, head: &Head) -> Fault {
        if r.server_error + r.throttle + r.reset + r.truncate + r.slow <= 0.0 {
            return Fault::None;
        }
        let key = format!("{} {}", head.method, fault_key(&head.target));
        let occurrence = {
            let mut seen = self.occurrences.lock().expect("occurrences");
            let n = seen.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let roll = |salt: u64| unit(mix(seed, &key, occurrence, salt));
        let u = roll(1);
        let mut edge = 0.0;
        let mut band = |rate: f64| {
            let hit = u >= edge && u < edge + rate;
            edge += rate;
            hit
        };
        if band(r.server_error) {
            let statuses = [500, 502, 503];
            let pick = (mix(seed, &key, occurrence, 2) % 3) as usize;
            Fault::ServerError {
                status: statuses[pick],
                after_work: roll(3) < 0.5,
            }
        } else if band(r.throttle) {
            Fault::Throttle
        } else if band(r.reset) {
            Fault::Reset { cut: roll(4) }
        } else if band(r.truncate) {
            if head.method == "GET" {
                Fault::Truncate { cut: roll(5) }
            } else {
                Fault::None
            }
        } else if band(r.slow) {
            Fault::Slow
        } else {
            Fault::None
        }
    }

    /// Counts a fault dealt to `head` and logs it.
    pub(crate) fn note(&self, kind: &str, head: &Head, counter: &AtomicU64) {
        bump(counter);
        let key = format!("{} {}", head.method, fault_key(&head.target));
        let occurrence = self
            .occurrences
            .lock()
            .expect("occurrences")
            .get(&key)
            .copied()
            .unwrap_or(0);
        self.log
            .lock()
            .expect("fault log")
            .push(format!("{kind} {key}#{occurrence}"));
    }

    /// The last `n` faults, as "kind METHOD path#occurrence".
    pub(crate) fn recent(&self, n: usize) -> Vec<String> {
        let log = self.log.lock().expect("fault log");
        log[log.len().saturating_sub(n)..].to_vec()
    }
}

/// The status line of an injected 5xx.
pub(crate) fn status_line(status: u16) -> &'static str {
    match status {
        500 => "500 Internal Server Error",
        502 => "502 Bad Gateway",
        _ => "503 Service Unavailable",
    }
}

/// Where a body is cut: `cut` of its length, at least one byte short.
pub(crate) fn cut_at(len: usize, cut: f64) -> usize {
    ((len as f64 * cut) as usize).min(len.saturating_sub(1))
}

/// The request's identity for the fault dice: method-independent path, with
/// an upload session's random id replaced by the digest it uploads (so a
/// replay hits the same blob whatever session ids the registry hands out).
fn fault_key(target: &str) -> String {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match path.find("/blobs/uploads/") {
        Some(i) => {
            let digest = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("digest="))
                .unwrap_or("");
            let has_session = path.len() > i + "/blobs/uploads/".len();
            format!(
                "{}/blobs/uploads/{}{digest}",
                &path[..i],
                if has_session { "<session>" } else { "" }
            )
        }
        None => path.to_string(),
    }
}

fn mix(seed: u64, key: &str, occurrence: u64, salt: u64) -> u64 {
    // FNV-1a over the key, then splitmix64 over everything.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = h
        ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ occurrence.rotate_left(32)
        ^ salt.wrapping_mul(0xd6e8_feb8_6659_fd93);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_keys_ignore_upload_session_ids() {
        assert_eq!(
            fault_key("/v2/a/b/blobs/uploads/1234-uuid?_state=xyz&digest=sha256:ab"),
            "/v2/a/b/blobs/uploads/<session>sha256:ab"
        );
        assert_eq!(fault_key("/v2/a/blobs/uploads/"), "/v2/a/blobs/uploads/");
        assert_eq!(fault_key("/v2/a/manifests/v1"), "/v2/a/manifests/v1");
    }

    #[test]
    fn the_dice_depend_on_seed_key_and_occurrence_only() {
        let a = mix(7, "GET /v2/a/blobs/x", 1, 1);
        assert_eq!(a, mix(7, "GET /v2/a/blobs/x", 1, 1));
        assert_ne!(a, mix(8, "GET /v2/a/blobs/x", 1, 1));
        assert_ne!(a, mix(7, "GET /v2/a/blobs/x", 2, 1));
        // Roughly uniform: 10% of 10,000 rolls land below 0.1.
        let low = (0..10_000)
            .filter(|n| unit(mix(1, "k", *n, 1)) < 0.1)
            .count();
        assert!((850..1150).contains(&low), "{low}");
    }
}
