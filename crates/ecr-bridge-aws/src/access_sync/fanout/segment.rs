//! A segment step: its Scan segment page by page, each user converged or
//! left to the sweep, a continuation before the deadline, and the sweep
//! started by the segment that ends last.

use std::collections::HashMap;
use std::time::Instant;

use aws_sdk_dynamodb::types::AttributeValue;
use ecr_bridge::access::naming::repository_name;
use ecr_bridge::access::{colliding_ids, desired_accounts, resolve, Row};

use super::{after_done, page_counts, send_all, until_deadline, Fanout, Resume, StepReport};
use crate::access_sync::converge::ConvergeJob;
use crate::access_sync::report::log_findings;
use crate::access_sync::runs::{ReconcileCounts, RunState};
use crate::access_sync::step::{start_key_of, ReconcileRunId, ReconcileStep, StepWork};
use crate::access_sync::{AccessSync, CallStats, Outcome, RepositoryReport, SyncError};
use crate::deadline::PageClock;

/// A page's rows by user, in scan order (a user's rows are adjacent: they
/// share the partition key), without the leading rows of `skip`.
fn by_user(rows: Vec<(String, Row)>, skip: Option<&str>) -> Vec<(String, Vec<Row>)> {
    let mut users: Vec<(String, Vec<Row>)> = Vec::new();
    let mut skipping = skip;
    for (user, row) in rows {
        if skipping == Some(user.as_str()) {
            continue;
        }
        skipping = None;
        match users.last_mut() {
            Some((last, rows)) if *last == user => rows.push(row),
            _ => users.push((user, vec![row])),
        }
    }
    users
}

/// How one user of a segment page is converged.
enum UserWork {
    /// From a consistent Query: the user's rows may go on past the page,
    /// or other user ids share the repository's name.
    Query(String),
    Converge(ConvergeJob),
    /// A name that cannot be built: failed without a call.
    Failed(RepositoryReport),
    /// Nothing to grant: left to the sweep, which revokes what exists.
    ToSweep,
}

impl AccessSync {
    pub(super) async fn segment(
        &self,
        s: &Segment<'_>,
        mut start: Option<Key>,
        resume: Resume,
        report: &mut StepReport,
    ) -> Result<(), SyncError> {
        let Resume {
            skip_user: mut skip,
            mut done_through,
        } = resume;
        loop {
            let began = Instant::now();
            let mut calls = CallStats::default();
            let page = match self
                .table
                .scan_page(
                    start.clone(),
                    self.settings.scan_page_size,
                    Some((s.index, s.total)),
                    &mut calls,
                )
                .await
            {
                Ok(page) => page,
                // Keep what this step did: the rest goes on in a new step
                // (retried by the queue if its first page fails again).
                Err(e) if report.pages > 0 => {
                    tracing::warn!(run = %s.run, segment = s.index, error = %e, "scan page failed; handing the rest of the segment on");
                    s.continue_at(
                        start.as_ref(),
                        Resume {
                            skip_user: skip,
                            done_through: None,
                        },
                    )
                    .await?;
                    report.continued = true;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            report.pages += 1;
            let (rows, malformed) = (page.rows.len() + page.malformed, page.malformed);
            let users = by_user(page.rows, skip.as_deref());
            // The page's last user may have rows on the next page.
            let open_user = page
                .next
                .as_ref()
                .and_then(|_| users.last().map(|(u, _)| u.clone()));
            let page_done_through = done_through.take();
            let users = after_done(users, page_done_through.as_deref(), |(u, _)| u.as_str());
            let to_do = users.len();
            let done: Vec<(String, Option<RepositoryReport>)> = until_deadline(
                &s.clock,
                users,
                self.settings.concurrency,
                |(user, rows)| {
                    let open = open_user.as_deref() == Some(user.as_str());
                    async move {
                        let report = match self.user_work(user.clone(), &rows, open) {
                            UserWork::Query(user) => Some(self.reconcile_user_quietly(&user).await),
                            UserWork::Converge(job) => Some(self.converge(job).await),
                            UserWork::Failed(r) => Some(r),
                            UserWork::ToSweep => None,
                        };
                        (user, report)
                    }
                },
            )
            .await;
            let cut_short = done.len() < to_do;
            let last_done = done.last().map(|(u, _)| u.clone());
            let users_done = done.len();
            report.users += users_done;
            let reports: Vec<RepositoryReport> = done.into_iter().filter_map(|(_, r)| r).collect();
            let mut counts = page_counts(&reports, calls);
            counts.users = users_done as i64;
            report.calls += calls;
            report.add(reports);
            s.clock.page_done(began);
            if cut_short {
                // The deadline came inside the page: the next step scans it
                // again and picks up after the last user done.
                let counted = s.fanout.count(s.run, &counts, None).await?;
                if counted.is_none() {
                    report.superseded = true;
                    return Ok(());
                }
                let resume = Resume {
                    skip_user: skip,
                    done_through: last_done.or(page_done_through),
                };
                s.continue_at(start.as_ref(), resume).await?;
                report.continued = true;
                return Ok(());
            }
            // Rows are counted once, when their page is done.
            report.rows += rows;
            report.malformed_rows += malformed;
            counts.scan_pages = 1;
            counts.rows = rows as i64;
            counts.malformed_rows = malformed as i64;
            // A page of nothing but the skipped user's rows keeps skipping.
            if open_user.is_some() {
                skip = open_user;
            }
            match page.next {
                None => {
                    counts.segments_open = -1;
                    let open = s.fanout.count(s.run, &counts, None).await?;
                    match open {
                        None => report.superseded = true,
                        Some(0) => {
                            s.fanout
                                .count(s.run, &ReconcileCounts::default(), Some(RunState::Sweeping))
                                .await?;
                            let sweep = ReconcileStep::new(
                                s.run,
                                StepWork::Sweep {
                                    next_token: None,
                                    done_through: None,
                                },
                            );
                            send_all(s.fanout.queue.as_ref(), &[sweep.body()]).await?;
                            report.sweep_started = true;
                            tracing::info!(run = %s.run, "every segment is done; the orphan sweep is enqueued");
                        }
                        Some(_) => {}
                    }
                    return Ok(());
                }
                Some(next) => {
                    // Counted before the continuation is sent: a failure in
                    // between retries this step (counts twice) rather than
                    // leaving two continuations of one segment.
                    let counted = s.fanout.count(s.run, &counts, None).await?;
                    if counted.is_none() {
                        report.superseded = true;
                        return Ok(());
                    }
                    start = Some(next);
                    if !s.clock.room_for_another() {
                        let resume = Resume {
                            skip_user: skip,
                            done_through: None,
                        };
                        s.continue_at(start.as_ref(), resume).await?;
                        report.continued = true;
                        return Ok(());
                    }
                }
            }
        }
    }

    fn user_work(&self, user: String, rows: &[Row], open: bool) -> UserWork {
        if open {
            // Rows on the next page may grant what these do not.
            return UserWork::Query(user);
        }
        let repository = match repository_name(&self.settings.prefix, &user) {
            Ok(r) => r,
            Err(e) => {
                let mut r = RepositoryReport::new(vec![user], None);
                r.outcome = Outcome::Failed;
                r.error = Some(e.into());
                crate::access_sync::report::log_report(&r, true);
                return UserWork::Failed(r);
            }
        };
        let desired = desired_accounts(rows, &self.settings.selection);
        if desired.accounts.is_empty() {
            // Whatever the repository grants is the sweep's to revoke, or,
            // if another user id of the same name grants, that user's
            // segment converges it.
            let mut r = RepositoryReport::new(vec![user], Some(repository));
            r.skipped_rows = desired.skipped.iter().map(ToString::to_string).collect();
            log_findings(&r);
            return UserWork::ToSweep;
        }
        let limit = self.settings.collision_candidates;
        if colliding_ids(&user, limit).is_none_or(|ids| ids.len() > 1) {
            // Other user ids escape to this name: their rows decide too.
            return UserWork::Query(user);
        }
        UserWork::Converge(ConvergeJob {
            repository,
            users: vec![user.clone()],
            lookups: vec![user.clone()],
            too_many: None,
            initial: Some(resolve([(user, desired)], None)),
            quiet: true,
        })
    }
}

/// A DynamoDB item key.
type Key = HashMap<String, AttributeValue>;

/// A segment step's fixed part.
pub(super) struct Segment<'a> {
    pub fanout: &'a Fanout,
    pub clock: PageClock,
    pub run: &'a ReconcileRunId,
    pub index: u32,
    pub total: u32,
}

impl Segment<'_> {
    async fn continue_at(&self, start: Option<&Key>, resume: Resume) -> Result<(), SyncError> {
        let step = ReconcileStep::new(
            self.run,
            StepWork::Segment {
                index: self.index,
                total: self.total,
                start: start.and_then(start_key_of),
                skip_user: resume.skip_user,
                done_through: resume.done_through,
            },
        );
        send_all(self.fanout.queue.as_ref(), &[step.body()]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str) -> Row {
        Row {
            row_id: Some(id.into()),
            ..Row::default()
        }
    }

    #[test]
    fn given_a_page_starting_inside_a_skipped_user_when_grouped_then_their_rows_are_left_out() {
        let rows = vec![
            ("a".to_string(), row("1")),
            ("a".to_string(), row("2")),
            ("b".to_string(), row("3")),
            ("c".to_string(), row("4")),
            ("c".to_string(), row("5")),
        ];
        let users = by_user(rows.clone(), Some("a"));
        let names: Vec<(&str, usize)> = users.iter().map(|(u, r)| (u.as_str(), r.len())).collect();
        assert_eq!(names, [("b", 1), ("c", 2)]);
        let all = by_user(rows, None);
        assert_eq!(all.len(), 3);
    }
}
