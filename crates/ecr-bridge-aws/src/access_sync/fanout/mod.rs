//! The full reconcile as a fan-out: a start records a run and enqueues one
//! step per Scan segment; each segment step converges the users of its
//! pages whose rows grant something, and before its invocation's deadline
//! enqueues its own continuation (`LastEvaluatedKey`); the segment whose
//! end brings the run's open segments to zero enqueues the sweep, which
//! pages the repositories under the prefix and revokes every one whose
//! users' rows, read again consistently, grant nothing.
//!
//! Why a user with nothing to grant is left to the sweep: only the sweep
//! knows which repositories exist, so a segment spends no call on a user
//! who has neither access nor a repository. Why the sweep reads the table
//! again instead of trusting what the segments saw: a user added since
//! their segment passed, or a step delivered twice, must never be revoked.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::runs::{ReconcileCounts, ReconcileRun, ReconcileRuns, RunState};
use super::step::{exclusive_start_key, ReconcileRunId, ReconcileStep, StepWork};
use super::{AccessSync, CallStats, ReconcileReport, RepositoryReport, SyncError, Tally};
use crate::deadline::PageClock;
use crate::error::AwsError;
use crate::run_table::now_ms;
use crate::work_queue::WorkQueue;
use segment::Segment;

/// Where in its first page a step picks up.
#[derive(Debug, Default, Clone)]
struct Resume {
    /// Leading rows of this user are skipped (a segment only).
    skip_user: Option<String>,
    /// Items through this one were done by the step before.
    done_through: Option<String>,
}

/// The items of a page a step has still to do: after `done_through`, if
/// the page holds it (if it no longer does, all of them: redoing is
/// harmless, skipping what was never done is not).
fn after_done<T>(
    mut items: Vec<T>,
    done_through: Option<&str>,
    name: impl Fn(&T) -> &str,
) -> Vec<T> {
    if let Some(done) = done_through {
        if let Some(pos) = items.iter().position(|i| name(i) == done) {
            items.drain(..=pos);
        }
    }
    items
}

/// Runs `work` in page order, `concurrency` at once, starting items only
/// until the clock's deadline (the first always starts: every step makes
/// progress); the results of the items started, in order.
async fn until_deadline<T, F, Fut, R>(
    clock: &PageClock,
    items: Vec<T>,
    concurrency: usize,
    work: F,
) -> Vec<R>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = R>,
{
    use futures_util::StreamExt;
    futures_util::stream::iter(items.into_iter().enumerate())
        .take_while(|(i, _)| std::future::ready(*i == 0 || !clock.past_deadline()))
        .map(|(_, item)| work(item))
        .buffered(concurrency.max(1))
        .collect()
        .await
}

mod segment;
mod sweep;

/// A run without any update for this long has lost its steps (to the
/// dead-letter queue, or a refused enqueue): a start replaces it. Longer
/// than Lambda's 15-minute limit, so no live step is taken for lost.
pub const STALE_AFTER: Duration = Duration::from_secs(20 * 60);

/// How long a step's claim outlives its invocation's deadline.
const CLAIM_SLACK: Duration = Duration::from_secs(60);

/// Segments when `RECONCILE_SEGMENTS` is not set.
pub const DEFAULT_SEGMENTS: u32 = 4;

/// Where a fanned-out reconcile keeps its steps and its run.
pub struct Fanout {
    pub queue: Box<dyn WorkQueue>,
    pub runs: ReconcileRuns,
    pub segments: u32,
}

impl Fanout {
    /// Adds a page's `counts` (and `state`) to `run`; its `segments_open`
    /// after, or `None` when the run was replaced.
    async fn count(
        &self,
        run: &ReconcileRunId,
        counts: &ReconcileCounts,
        state: Option<RunState>,
    ) -> Result<Option<i64>, SyncError> {
        self.runs
            .add(run, counts, state)
            .await
            .map_err(SyncError::Runs)
    }
}

/// What a full reconcile request did.
#[derive(Debug, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum FullReconcile {
    /// The whole reconcile in this invocation (no reconcile queue).
    Single(ReconcileReport),
    /// A run started, or joined because one is under way.
    FanOut(RunStarted),
}

#[derive(Debug, Serialize)]
pub struct RunStarted {
    pub run: ReconcileRunId,
    /// Another start's run was under way: nothing new was enqueued.
    pub joined: bool,
    pub state: RunState,
    pub segments: u32,
    pub counts: ReconcileCounts,
}

impl RunStarted {
    fn of(run: ReconcileRun, joined: bool) -> RunStarted {
        RunStarted {
            run: run.id,
            joined,
            state: run.state,
            segments: run.segments,
            counts: run.counts,
        }
    }
}

/// What one step did.
#[derive(Debug, Default, Serialize)]
pub struct StepReport {
    pub run: Option<ReconcileRunId>,
    /// `segment` or `sweep`.
    pub step: &'static str,
    pub pages: u32,
    pub rows: usize,
    pub malformed_rows: usize,
    pub users: usize,
    pub repositories: usize,
    #[serde(flatten)]
    pub tally: Tally,
    pub calls: CallStats,
    /// The rest was handed to a continuation step.
    pub continued: bool,
    /// This was the last segment to end: the sweep is enqueued.
    pub sweep_started: bool,
    pub run_finished: bool,
    /// The run was replaced by a newer one: this step stopped.
    pub superseded: bool,
    /// A redelivered message: the step ran (or runs) elsewhere; skipped.
    pub duplicate: bool,
    #[serde(skip)]
    pub reports: Vec<RepositoryReport>,
}

impl StepReport {
    fn add(&mut self, reports: Vec<RepositoryReport>) {
        for r in &reports {
            self.tally.add(r);
            self.calls += r.calls;
        }
        self.reports.extend(reports);
    }
}

/// A page's share of the run's counts.
fn page_counts(reports: &[RepositoryReport], calls: CallStats) -> ReconcileCounts {
    let mut tally = Tally::default();
    let mut calls = calls;
    for r in reports {
        tally.add(r);
        calls += r.calls;
    }
    ReconcileCounts {
        granted: tally.granted as i64,
        changed: tally.changed as i64,
        revoked: tally.revoked as i64,
        unchanged: tally.unchanged as i64,
        missing: tally.missing as i64,
        failed: tally.failed as i64,
        calls: calls.total() as i64,
        writes: calls.writes() as i64,
        ..ReconcileCounts::default()
    }
}

impl AccessSync {
    /// Starts a full reconcile: a fanned-out run when a reconcile queue is
    /// configured (or joins the one under way), else the whole reconcile here.
    pub async fn start_full_reconcile(&self) -> Result<FullReconcile, SyncError> {
        let Some(fanout) = &self.fanout else {
            return self.full_reconcile().await.map(FullReconcile::Single);
        };
        let runs = &fanout.runs;
        let current = runs.current().await.map_err(SyncError::Runs)?;
        let now = now_ms();
        if let Some(run) = &current {
            let quiet_for = Duration::from_millis(now.saturating_sub(run.updated_at_ms));
            if run.state != RunState::Finished && quiet_for < STALE_AFTER {
                tracing::info!(run = %run.id, state = ?run.state, "a full reconcile is under way; joined it");
                return Ok(FullReconcile::FanOut(RunStarted::of(run.clone(), true)));
            }
            if run.state != RunState::Finished {
                tracing::warn!(run = %run.id, quiet_s = quiet_for.as_secs(), "replacing a full reconcile that stopped making progress (its steps are in the dead-letter queue or were never enqueued)");
            }
        }
        let run = ReconcileRun {
            id: ReconcileRunId::new(),
            state: RunState::Scanning,
            segments: fanout.segments,
            started_at_ms: now,
            updated_at_ms: now,
            counts: ReconcileCounts {
                segments_open: fanout.segments.into(),
                ..ReconcileCounts::default()
            },
        };
        let began = runs
            .begin(&run, current.as_ref().map(|r| &r.id))
            .await
            .map_err(SyncError::Runs)?;
        if !began {
            // Another start stored its run between our read and write.
            let winner = runs.current().await.map_err(SyncError::Runs)?;
            return match winner {
                Some(w) => Ok(FullReconcile::FanOut(RunStarted::of(w, true))),
                None => Err(SyncError::Runs(AwsError::transient(
                    "dynamodb:PutItem",
                    "the run item changed and then vanished; start again",
                ))),
            };
        }
        let bodies: Vec<String> = (0..fanout.segments)
            .map(|index| {
                ReconcileStep::new(
                    &run.id,
                    StepWork::Segment {
                        index,
                        total: fanout.segments,
                        start: None,
                        skip_user: None,
                        done_through: None,
                    },
                )
                .body()
            })
            .collect();
        send_all(fanout.queue.as_ref(), &bodies).await?;
        tracing::info!(run = %run.id, segments = fanout.segments, "full reconcile started");
        Ok(FullReconcile::FanOut(RunStarted::of(run, false)))
    }

    /// One step of a fanned-out run, until its work is done or `deadline`
    /// nears (then a continuation carries the rest).
    pub async fn reconcile_step(
        &self,
        step: &ReconcileStep,
        deadline: Option<Instant>,
    ) -> Result<StepReport, SyncError> {
        let Some(fanout) = &self.fanout else {
            return Err(SyncError::FanoutOff);
        };
        // Held until shortly after this invocation can last: a redelivery
        // while it runs, or after it is done, is skipped; one after a crash
        // (the lease ran out) runs the step again.
        let remaining = deadline.map_or(Duration::from_secs(15 * 60), |d| {
            d.saturating_duration_since(Instant::now())
        });
        let lease_until = now_ms() + (remaining + CLAIM_SLACK).as_millis() as u64;
        let claimed = fanout
            .runs
            .claim(&step.id, lease_until)
            .await
            .map_err(SyncError::Runs)?;
        if !claimed {
            tracing::info!(run = %step.run, step_id = %step.id, outcome = "duplicate", "reconcile step already done or running; skipped");
            return Ok(StepReport {
                run: Some(step.run.clone()),
                duplicate: true,
                ..StepReport::default()
            });
        }
        let result = self.run_step(fanout, step, deadline).await;
        let settled = match &result {
            Ok(_) => fanout.runs.step_done(&step.id).await,
            // Let the queue's retry claim it again.
            Err(_) => fanout.runs.release(&step.id).await,
        };
        if let Err(e) = settled {
            tracing::warn!(step_id = %step.id, error = %e, "could not record the step's end; a redelivery waits for its lease");
        }
        result
    }

    async fn run_step(
        &self,
        fanout: &Fanout,
        step: &ReconcileStep,
        deadline: Option<Instant>,
    ) -> Result<StepReport, SyncError> {
        let clock = PageClock::new(deadline);
        let mut report = StepReport {
            run: Some(step.run.clone()),
            ..StepReport::default()
        };
        match &step.work {
            StepWork::Segment {
                index,
                total,
                start,
                skip_user,
                done_through,
            } => {
                report.step = "segment";
                let start = match start {
                    Some(key) => Some(exclusive_start_key(key).ok_or_else(|| {
                        SyncError::Queue(AwsError::permanent(
                            "reconcile step",
                            "the segment's start key holds binary that is not base64",
                        ))
                    })?),
                    None => None,
                };
                let segment = Segment {
                    fanout,
                    clock,
                    run: &step.run,
                    index: *index,
                    total: *total,
                };
                let resume = Resume {
                    skip_user: skip_user.clone(),
                    done_through: done_through.clone(),
                };
                self.segment(&segment, start, resume, &mut report).await?;
            }
            StepWork::Sweep {
                next_token,
                done_through,
            } => {
                report.step = "sweep";
                let resume = Resume {
                    skip_user: None,
                    done_through: done_through.clone(),
                };
                self.sweep(
                    fanout,
                    &clock,
                    &step.run,
                    next_token.clone(),
                    resume,
                    &mut report,
                )
                .await?;
            }
        }
        Ok(report)
    }
}

/// Every body on the queue, or a transient error (the step that sent them
/// is retried whole).
async fn send_all(queue: &dyn WorkQueue, bodies: &[String]) -> Result<(), SyncError> {
    let accepted = queue.send(bodies).await.map_err(SyncError::Queue)?;
    if accepted < bodies.len() {
        return Err(SyncError::Queue(AwsError::transient(
            "sqs:SendMessageBatch",
            format!(
                "{} of {} reconcile steps refused",
                bodies.len() - accepted,
                bodies.len()
            ),
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_page_cut_short_when_resumed_then_only_the_items_after_the_last_done_remain() {
        let page = vec!["a", "b", "c", "d"];
        assert_eq!(after_done(page.clone(), Some("b"), |s| s), ["c", "d"]);
        assert_eq!(after_done(page.clone(), None, |s| s), page);
        // Gone from the page since (deleted meanwhile): all of it again.
        assert_eq!(after_done(page.clone(), Some("x"), |s| s), page);
    }

    #[tokio::test]
    async fn given_a_deadline_inside_a_page_when_working_then_items_stop_starting_but_the_first_always_runs(
    ) {
        let clock = PageClock::new(Some(Instant::now() + Duration::from_millis(50)));
        let slow = |i: u32| async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            i
        };
        let done = until_deadline(&clock, (0..10).collect(), 1, slow).await;
        assert!(
            (1..10).contains(&done.len()),
            "started until the deadline: {done:?}"
        );
        assert_eq!(
            done,
            (0..done.len() as u32).collect::<Vec<_>>(),
            "in page order"
        );
        let past = PageClock::new(Some(Instant::now()));
        assert_eq!(until_deadline(&past, vec![7, 8], 4, slow).await, [7]);
    }
}
