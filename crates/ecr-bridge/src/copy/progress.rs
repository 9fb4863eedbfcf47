//! How far a copy has got, for a caller that shows it (the CLI on a
//! terminal): blobs and bytes planned and done, counted as they stream.
//! Counters only; nothing here prints.

use std::sync::atomic::{AtomicU64, Ordering};

/// Shared by a copy's concurrent blob transfers and whoever reads it.
#[derive(Debug, Default)]
pub struct Progress {
    blobs_total: AtomicU64,
    blobs_done: AtomicU64,
    bytes_total: AtomicU64,
    bytes_done: AtomicU64,
}

/// One reading of a [`Progress`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgressSnapshot {
    pub blobs_total: u64,
    pub blobs_done: u64,
    pub bytes_total: u64,
    /// Never more than `bytes_total`: a blob that starts over counts its
    /// bytes again as they come.
    pub bytes_done: u64,
}

impl Progress {
    pub fn snapshot(&self) -> ProgressSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let bytes_total = get(&self.bytes_total);
        ProgressSnapshot {
            blobs_total: get(&self.blobs_total),
            blobs_done: get(&self.blobs_done),
            bytes_total,
            bytes_done: get(&self.bytes_done).min(bytes_total),
        }
    }

    /// Blobs about to be copied (an index adds its children's as it goes).
    pub(super) fn planned(&self, blobs: u64, bytes: u64) {
        self.blobs_total.fetch_add(blobs, Ordering::Relaxed);
        self.bytes_total.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes that went through to the target.
    pub(super) fn streamed(&self, bytes: u64) {
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A blob finished; `unsent` of its bytes never streamed (the target
    /// had it, or mounted it).
    pub(super) fn blob_done(&self, unsent: u64) {
        self.blobs_done.fetch_add(1, Ordering::Relaxed);
        self.bytes_done.fetch_add(unsent, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_blob_streamed_twice_when_read_then_bytes_done_stops_at_the_total() {
        let p = Progress::default();
        p.planned(2, 300);
        p.streamed(200);
        p.streamed(200); // the second blob started over after 100 of 200 bytes
        p.blob_done(0);
        p.blob_done(100); // the first was skipped: the target had it

        let s = p.snapshot();

        assert_eq!((s.blobs_done, s.blobs_total), (2, 2));
        assert_eq!((s.bytes_done, s.bytes_total), (300, 300));
    }
}
