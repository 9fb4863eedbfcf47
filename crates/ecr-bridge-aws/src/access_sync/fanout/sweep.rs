//! The sweep step: the repositories under the prefix page by page, each
//! revoked only when no user id its name stands for has a granting row.

use std::time::Instant;

use ecr_bridge::access::naming::{escaped_part, unescape_candidates};
use ecr_bridge::access::Resolved;

use super::{after_done, page_counts, send_all, until_deadline, Fanout, Resume, StepReport};
use crate::access_sync::converge::ConvergeJob;
use crate::access_sync::runs::RunState;
use crate::access_sync::step::{ReconcileRunId, ReconcileStep, StepWork};
use crate::access_sync::{AccessSync, CallStats, Outcome, RepositoryReport, SyncError};
use crate::deadline::PageClock;

impl AccessSync {
    pub(super) async fn sweep(
        &self,
        fanout: &Fanout,
        clock: &PageClock,
        run: &ReconcileRunId,
        mut token: Option<String>,
        resume: Resume,
        report: &mut StepReport,
    ) -> Result<(), SyncError> {
        let mut done_through = resume.done_through;
        loop {
            let began = Instant::now();
            let mut calls = CallStats::default();
            let (names, next) = match self
                .policies
                .page_under(&self.settings.prefix, token.clone(), &mut calls)
                .await
            {
                Ok(page) => page,
                Err(e) if report.pages > 0 => {
                    tracing::warn!(run = %run, error = %e, "repository page failed; handing the rest of the sweep on");
                    continue_sweep(fanout, run, token, None).await?;
                    report.continued = true;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            report.pages += 1;
            let page_done_through = done_through.take();
            let names = after_done(names, page_done_through.as_deref(), String::as_str);
            let to_do = names.len();
            let done: Vec<(String, Swept)> = until_deadline(
                clock,
                names,
                self.settings.concurrency,
                |repository| async move {
                    let report = self.sweep_one(repository.clone()).await;
                    (repository, report)
                },
            )
            .await;
            let swept = done.len();
            let last_done = done.last().map(|(r, _)| r.clone());
            report.repositories += swept;
            let mut reports = Vec::with_capacity(done.len());
            for (_, swept) in done {
                match swept {
                    Swept::Left(lookups) => calls += lookups,
                    Swept::Converged(r) => reports.push(*r),
                }
            }
            let mut counts = page_counts(&reports, calls);
            counts.repositories_swept = swept as i64;
            report.calls += calls;
            report.add(reports);
            clock.page_done(began);
            if swept < to_do {
                // The deadline came inside the page: the next step asks for
                // it again and picks up after the last repository done.
                if fanout.count(run, &counts, None).await?.is_none() {
                    report.superseded = true;
                    return Ok(());
                }
                continue_sweep(fanout, run, token, last_done.or(page_done_through)).await?;
                report.continued = true;
                return Ok(());
            }
            counts.sweep_pages = 1;
            let state = next.is_none().then_some(RunState::Finished);
            let counted = fanout.count(run, &counts, state).await?;
            if counted.is_none() {
                report.superseded = true;
                return Ok(());
            }
            match next {
                None => {
                    report.run_finished = true;
                    tracing::info!(run = %run, "full reconcile finished");
                    return Ok(());
                }
                Some(next) if !clock.room_for_another() => {
                    continue_sweep(fanout, run, Some(next), None).await?;
                    report.continued = true;
                    return Ok(());
                }
                Some(next) => token = Some(next),
            }
        }
    }

    /// One repository of the sweep: `Left` with the calls of the look-up
    /// when its users' rows grant something (a segment converged it), else
    /// its revocation.
    async fn sweep_one(&self, repository: String) -> Swept {
        let limit = self.settings.collision_candidates;
        let escaped = escaped_part(&self.settings.prefix, &repository).unwrap_or_default();
        let Some(candidates) = unescape_candidates(escaped, limit) else {
            // Too many readings to look up: such a name grants nothing on
            // either path, so what it grants is revoked without a re-check.
            tracing::warn!(repository = %repository, "name stands for too many user ids to re-check; revoking without the re-check");
            return Swept::Converged(Box::new(
                self.converge(ConvergeJob {
                    repository,
                    users: Vec::new(),
                    lookups: Vec::new(),
                    too_many: Some(limit),
                    initial: Some(Resolved::default()),
                    quiet: true,
                })
                .await,
            ));
        };
        let mut job = ConvergeJob {
            repository,
            users: candidates.clone(),
            lookups: candidates,
            too_many: None,
            initial: None,
            quiet: true,
        };
        let mut calls = CallStats::default();
        let resolved = match self.read_resolved(&job, &mut calls).await {
            Ok(r) => r,
            Err(e) => {
                let mut r = RepositoryReport::new(job.users, Some(job.repository));
                r.outcome = Outcome::Failed;
                r.error = Some(e);
                r.calls = calls;
                crate::access_sync::report::log_report(&r, true);
                return Swept::Converged(Box::new(r));
            }
        };
        if !resolved.desired.accounts.is_empty() {
            return Swept::Left(calls);
        }
        job.initial = Some(resolved);
        let mut r = self.converge(job).await;
        r.calls += calls;
        Swept::Converged(Box::new(r))
    }
}

/// What the sweep did with one repository.
enum Swept {
    /// Its users grant: left to their segment, after these look-ups.
    Left(CallStats),
    Converged(Box<RepositoryReport>),
}

async fn continue_sweep(
    fanout: &Fanout,
    run: &ReconcileRunId,
    next_token: Option<String>,
    done_through: Option<String>,
) -> Result<(), SyncError> {
    let step = ReconcileStep::new(
        run,
        StepWork::Sweep {
            next_token,
            done_through,
        },
    );
    send_all(fanout.queue.as_ref(), &[step.body()]).await
}
