//! One repository brought in line with the table: read what its users'
//! rows grant (collisions fail closed), read the policy, write only when
//! they differ, then read the table again and converge (bounded) if it
//! changed meanwhile.

use std::collections::BTreeSet;

use ecr_bridge::access::{
    desired_accounts, merge_policy, resolve, PolicyChange, PolicyError, Resolved,
};
use futures_util::StreamExt;

use super::admit::Applied;
use super::policies::CurrentPolicy;
use super::report::{finish, log_report};
use super::{AccessSync, CallStats, MissingRepository, Outcome, RepositoryReport, SyncError};

/// Candidate user ids looked up at once.
const LOOKUP_CONCURRENCY: usize = 8;

/// One repository to reconcile and whose rows decide it.
pub(super) struct ConvergeJob {
    pub repository: String,
    /// Who the report is about: the user of a stream record, the users the
    /// scan found, or an orphan's candidates.
    pub users: Vec<String>,
    /// Every user id whose rows are read for the desired state: on the
    /// stream path, every id that escapes to the same name.
    pub lookups: Vec<String>,
    /// The name has more candidate ids than this limit: nothing is granted.
    pub too_many: Option<usize>,
    /// What the scan already read (the re-check after a write reads again).
    pub initial: Option<Resolved>,
    /// Log "unchanged" at debug (a full reconcile touches every user).
    pub quiet: bool,
}

impl AccessSync {
    pub(super) async fn converge(&self, job: ConvergeJob) -> RepositoryReport {
        let mut report = RepositoryReport::new(job.users.clone(), Some(job.repository.clone()));
        let mut calls = CallStats::default();
        if let Err(e) = self.converge_inner(&job, &mut report, &mut calls).await {
            report.outcome = Outcome::Failed;
            report.error = Some(e);
        }
        report.calls = calls;
        log_report(&report, job.quiet);
        let announced = self.announce(&report).await;
        report.events_failed = announced.failed;
        report
    }

    async fn converge_inner(
        &self,
        job: &ConvergeJob,
        report: &mut RepositoryReport,
        calls: &mut CallStats,
    ) -> Result<(), SyncError> {
        let repository = job.repository.as_str();
        let mut resolved = match &job.initial {
            Some(r) => r.clone(),
            None => self.read_resolved(job, calls).await?,
        };
        let mut before: Option<BTreeSet<String>> = None;
        let mut rounds = 0;
        loop {
            let desired = &resolved.desired;
            report.skipped_rows = desired.skipped.iter().map(ToString::to_string).collect();
            report.contest = resolved.contest.clone();
            report.left_out.clear();
            let current = match self.policies.get(repository, calls).await? {
                CurrentPolicy::Text(t) => Some(t),
                CurrentPolicy::None => None,
                CurrentPolicy::NoRepository if desired.accounts.is_empty() => {
                    finish(report, before.unwrap_or_default(), &desired.accounts);
                    return Ok(());
                }
                CurrentPolicy::NoRepository => match self.settings.missing_repository {
                    MissingRepository::Skip => {
                        report.outcome = Outcome::RepositoryMissing;
                        report.accounts = desired.accounts.iter().map(|a| a.to_string()).collect();
                        return Ok(());
                    }
                    MissingRepository::Create => {
                        self.policies.create(repository, calls).await?;
                        report.created_repository = true;
                        None
                    }
                },
            };
            let merged = merge_policy(current.as_deref(), &desired.accounts, &self.settings.policy);
            match &merged {
                Ok(p) => {
                    let before = before.get_or_insert_with(|| p.before.clone());
                    if p.change == PolicyChange::Keep {
                        finish(report, before.clone(), &desired.accounts);
                        return Ok(());
                    }
                }
                // Too long: what fits is written (`apply`).
                Err(PolicyError::TooLarge { .. }) => {}
                Err(e) => {
                    return Err(SyncError::Policy {
                        repository: repository.to_string(),
                        source: e.clone(),
                    })
                }
            }
            if before.is_none() {
                before = merge_policy(current.as_deref(), &BTreeSet::new(), &self.settings.policy)
                    .ok()
                    .map(|p| p.before);
            }
            if rounds >= self.settings.converge_rounds {
                return Err(SyncError::NotConverged {
                    repository: repository.to_string(),
                    writes: report.writes,
                });
            }
            rounds += 1;
            let applied = self
                .apply(
                    repository,
                    current.as_deref(),
                    &desired.accounts,
                    merged,
                    calls,
                )
                .await?;
            let Applied::Written {
                granted,
                left_out,
                changes,
            } = applied
            else {
                // Deleted under us: look again (missing or re-created).
                continue;
            };
            report.writes += changes;
            report.left_out = left_out;
            let again = self.read_resolved(job, calls).await?;
            if again.desired.accounts == desired.accounts {
                report.contest = again.contest.clone();
                finish(report, before.clone().unwrap_or_default(), &granted);
                return Ok(());
            }
            tracing::info!(repository, user_id = %report.user_label(), "the users table changed while we wrote; converging again");
            resolved = again;
        }
    }

    /// Each lookup id's rows, read consistently, and what they grant
    /// together on the repository.
    pub(super) async fn read_resolved(
        &self,
        job: &ConvergeJob,
        calls: &mut CallStats,
    ) -> Result<Resolved, SyncError> {
        let selection = &self.settings.selection;
        let reads: Vec<_> = futures_util::stream::iter(&job.lookups)
            .map(|user| async move {
                let mut calls = CallStats::default();
                let rows = self.table.user_rows(user, &mut calls).await;
                (user, rows, calls)
            })
            .buffered(LOOKUP_CONCURRENCY)
            .collect()
            .await;
        let mut claims = Vec::with_capacity(reads.len());
        let mut failure = None;
        for (user, rows, c) in reads {
            *calls += c;
            match rows {
                Ok(rows) => claims.push((user.clone(), desired_accounts(&rows, selection))),
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        if let Some(e) = failure {
            return Err(e.into());
        }
        Ok(resolve(claims, job.too_many))
    }
}
