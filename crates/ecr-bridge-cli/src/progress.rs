//! A copy's progress on a terminal: one line on stderr, redrawn four times
//! a second (blobs done of planned, bytes of total, rate), ended with a
//! newline. Only when stderr is a terminal and `--quiet` is not given: a
//! pipe or a log file gets the JSON report and nothing else.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ecr_bridge::copy::{Progress, ProgressSnapshot};

const REDRAW: Duration = Duration::from_millis(250);

/// The line being drawn; dropping it stops the redraws.
pub struct ProgressLine {
    progress: Arc<Progress>,
    ticker: tokio::task::JoinHandle<()>,
    started: Instant,
}

impl ProgressLine {
    /// A line for a copy, if stderr is a terminal and not `quiet`.
    pub fn start(quiet: bool) -> Option<ProgressLine> {
        if quiet || !std::io::stderr().is_terminal() {
            return None;
        }
        let progress = Arc::new(Progress::default());
        let started = Instant::now();
        let drawn = progress.clone();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(REDRAW).await;
                draw(&drawn.snapshot(), started.elapsed(), false);
            }
        });
        Some(ProgressLine {
            progress,
            ticker,
            started,
        })
    }

    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// The last state, and the cursor on a new line.
    pub fn finish(self) {
        self.ticker.abort();
        draw(&self.progress.snapshot(), self.started.elapsed(), true);
    }
}

fn draw(s: &ProgressSnapshot, elapsed: Duration, last: bool) {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r{}\x1b[K", line(s, elapsed));
    if last {
        let _ = writeln!(err);
    }
    let _ = err.flush();
}

/// `3/7 blobs, 12.3 of 352.3 MB, 45.6 MB/s`.
fn line(s: &ProgressSnapshot, elapsed: Duration) -> String {
    let mb = |b: u64| b as f64 / 1_000_000.0;
    let rate = mb(s.bytes_done) / elapsed.as_secs_f64().max(0.001);
    format!(
        "{}/{} blobs, {:.1} of {:.1} MB, {rate:.1} MB/s",
        s.blobs_done,
        s.blobs_total,
        mb(s.bytes_done),
        mb(s.bytes_total)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_snapshot_when_drawn_then_blobs_bytes_and_rate_read_plainly() {
        let s = ProgressSnapshot {
            blobs_total: 7,
            blobs_done: 3,
            bytes_total: 352_300_000,
            bytes_done: 12_300_000,
        };

        assert_eq!(
            line(&s, Duration::from_secs(2)),
            "3/7 blobs, 12.3 of 352.3 MB, 6.2 MB/s"
        );
    }
}
