//! What a proxy did so far: its counters, read out as [`ProxyStats`].

use std::sync::atomic::{AtomicU64, Ordering};

use super::FaultProxy;

/// What the proxy did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyStats {
    pub requests: u64,
    /// Requests the registry received.
    pub forwarded: u64,
    pub server_errors: u64,
    /// Of `server_errors`: answered after the registry did the work.
    pub server_errors_after_work: u64,
    pub throttled: u64,
    pub resets_mid_body: u64,
    pub resets_without_body: u64,
    pub truncated: u64,
    pub slow: u64,
    /// Connections reset because the registry was "down".
    pub down_resets: u64,
    pub patches: u64,
    pub name_unknown: u64,
    pub tag_refusals: u64,
    pub unauthorized: u64,
    /// Of `unauthorized`: credentials that were valid before a rotation.
    pub stale_tokens: u64,
    pub rotations: u64,
    /// Blob-upload PUTs the registry received (completed or not).
    pub blob_puts_forwarded: u64,
    /// Manifest PUTs the registry received (PutImage calls that did work).
    pub manifest_puts_forwarded: u64,
    /// Requests refused with 429 by [`ProxyOptions::quotas`], all APIs.
    pub quota_throttled: u64,
    /// Of `quota_throttled`: manifest PUTs (PutImage).
    pub put_image_throttled: u64,
    /// Requests refused with 403 for an expired token
    /// ([`TokenRotation::Expiring`]).
    pub expired_tokens: u64,
    /// Tokens issued with [`TokenHandle::issue`].
    pub tokens_issued: u64,
    /// Manifest PUTs refused with 405 (media type parameters, referrers).
    pub referrers_refused: u64,
    /// Repositories created by a push ([`ProxyOptions::create_on_push`]).
    pub created_on_push: u64,
    /// Blob mounts not done: turned into plain uploads or refused.
    pub mounts_refused: u64,
    /// Manifest requests whose 129–300 character tag went upstream as an alias.
    pub long_tags_aliased: u64,
    /// Manifest requests refused for a tag over 300 characters.
    pub long_tags_refused: u64,
    /// Manifest PUTs refused with `BLOB_UPLOAD_UNKNOWN` ([`ProxyOptions::layer_lag`]).
    pub layers_not_found: u64,
}

impl ProxyStats {
    /// Faults injected, all kinds.
    pub fn faults(&self) -> u64 {
        self.server_errors
            + self.throttled
            + self.resets_mid_body
            + self.resets_without_body
            + self.truncated
            + self.slow
    }
}

impl std::fmt::Display for ProxyStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "requests={} forwarded={} 5xx={} (after work {}) 429={} resets mid-body={} resets other={} truncated={} slow={} down-resets={}",
            self.requests,
            self.forwarded,
            self.server_errors,
            self.server_errors_after_work,
            self.throttled,
            self.resets_mid_body,
            self.resets_without_body,
            self.truncated,
            self.slow,
            self.down_resets
        )?;
        let ecr = [
            ("quota-429", self.quota_throttled),
            ("expired-403", self.expired_tokens),
            ("referrer-405", self.referrers_refused),
            ("created-on-push", self.created_on_push),
            ("mounts-refused", self.mounts_refused),
            ("long-tags-aliased", self.long_tags_aliased),
            ("long-tags-refused", self.long_tags_refused),
            ("layers-not-found", self.layers_not_found),
        ];
        for (name, n) in ecr.iter().filter(|(_, n)| *n > 0) {
            write!(f, " {name}={n}")?;
        }
        Ok(())
    }
}

/// Every counter of a proxy, its own and its ECR behaviours'.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) forwarded: AtomicU64,
    pub(crate) server_errors: AtomicU64,
    pub(crate) server_errors_after_work: AtomicU64,
    pub(crate) throttled: AtomicU64,
    pub(crate) resets_mid_body: AtomicU64,
    pub(crate) resets_without_body: AtomicU64,
    pub(crate) truncated: AtomicU64,
    pub(crate) slow: AtomicU64,
    pub(crate) down_resets: AtomicU64,
    pub(crate) patches: AtomicU64,
    pub(crate) name_unknown: AtomicU64,
    pub(crate) tag_refusals: AtomicU64,
    pub(crate) unauthorized: AtomicU64,
    pub(crate) stale_tokens: AtomicU64,
    pub(crate) rotations: AtomicU64,
    pub(crate) blob_puts_forwarded: AtomicU64,
    pub(crate) manifest_puts_forwarded: AtomicU64,
    pub(crate) expired_tokens: AtomicU64,
    pub(crate) tokens_issued: AtomicU64,
    pub(crate) referrers_refused: AtomicU64,
    pub(crate) created_on_push: AtomicU64,
    pub(crate) mounts_refused: AtomicU64,
    pub(crate) long_tags_aliased: AtomicU64,
    pub(crate) long_tags_refused: AtomicU64,
    pub(crate) layers_not_found: AtomicU64,
}

impl FaultProxy {
    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut stats = ProxyStats {
            requests: g(&c.requests),
            forwarded: g(&c.forwarded),
            server_errors: g(&c.server_errors),
            server_errors_after_work: g(&c.server_errors_after_work),
            throttled: g(&c.throttled),
            resets_mid_body: g(&c.resets_mid_body),
            resets_without_body: g(&c.resets_without_body),
            truncated: g(&c.truncated),
            slow: g(&c.slow),
            down_resets: g(&c.down_resets),
            patches: g(&c.patches),
            name_unknown: g(&c.name_unknown),
            tag_refusals: g(&c.tag_refusals),
            unauthorized: g(&c.unauthorized),
            stale_tokens: g(&c.stale_tokens),
            rotations: g(&c.rotations),
            blob_puts_forwarded: g(&c.blob_puts_forwarded),
            manifest_puts_forwarded: g(&c.manifest_puts_forwarded),
            expired_tokens: g(&c.expired_tokens),
            tokens_issued: g(&c.tokens_issued),
            referrers_refused: g(&c.referrers_refused),
            created_on_push: g(&c.created_on_push),
            mounts_refused: g(&c.mounts_refused),
            long_tags_aliased: g(&c.long_tags_aliased),
            long_tags_refused: g(&c.long_tags_refused),
            layers_not_found: g(&c.layers_not_found),
            ..ProxyStats::default()
        };
        self.shared.ecr.quotas.fill(&mut stats);
        stats
    }
}
