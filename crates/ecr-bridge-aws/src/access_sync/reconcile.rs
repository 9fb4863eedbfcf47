//! Which repositories to converge, and in what groups: one user's (a stream
//! record), a stream batch's users, and the full reconcile (every user in the
//! table, then every repository under the prefix that no user maps to).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use ecr_bridge::access::naming::{escaped_part, repository_name, unescape_candidates};
use ecr_bridge::access::{colliding_ids, desired_accounts, resolve, Resolved, Row};
use futures_util::StreamExt;

use super::converge::ConvergeJob;
use super::report::{log_findings, log_report};
use super::{
    AccessSync, BatchReport, CallStats, Outcome, ReconcileReport, RepositoryReport, StreamChange,
    SyncError,
};

impl AccessSync {
    /// Brings one user's repository in line with the table.
    pub async fn reconcile_user(&self, user_id: &str) -> RepositoryReport {
        self.reconcile_user_as(user_id, false).await
    }

    /// The same, logging "unchanged" at debug (a full reconcile's user).
    pub(super) async fn reconcile_user_quietly(&self, user_id: &str) -> RepositoryReport {
        self.reconcile_user_as(user_id, true).await
    }

    async fn reconcile_user_as(&self, user_id: &str, quiet: bool) -> RepositoryReport {
        match repository_name(&self.settings.prefix, user_id) {
            Ok(repository) => {
                // Another user id that escapes to the same name and has
                // granting rows makes this a collision: look them all up.
                let limit = self.settings.collision_candidates;
                let (lookups, too_many) = match colliding_ids(user_id, limit) {
                    Some(ids) => (ids, None),
                    None => (vec![user_id.to_string()], Some(limit)),
                };
                self.converge(ConvergeJob {
                    repository,
                    users: vec![user_id.to_string()],
                    lookups,
                    too_many,
                    initial: None,
                    quiet,
                })
                .await
            }
            Err(e) => {
                let mut report = RepositoryReport::new(vec![user_id.to_string()], None);
                report.outcome = Outcome::Failed;
                report.error = Some(e.into());
                log_report(&report, quiet);
                report
            }
        }
    }

    /// One reconcile per distinct user of the batch. The sequence numbers
    /// of records whose user failed transiently come back for Lambda to
    /// retry; permanent failures are logged and counted, never returned,
    /// so one bad row cannot block its shard.
    pub async fn handle_batch(&self, changes: &[StreamChange]) -> BatchReport {
        let mut order: Vec<&str> = Vec::new();
        let mut sequence_numbers: HashMap<&str, Vec<&str>> = HashMap::new();
        for c in changes {
            let entry = sequence_numbers
                .entry(c.user_id.as_str())
                .or_insert_with(|| {
                    order.push(c.user_id.as_str());
                    Vec::new()
                });
            if let Some(s) = c.sequence_number.as_deref().filter(|s| !s.is_empty()) {
                entry.push(s);
            }
        }
        let reports: Vec<RepositoryReport> = futures_util::stream::iter(order)
            .map(|user| self.reconcile_user(user))
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;

        let mut batch = BatchReport::default();
        for r in &reports {
            batch.tally.add(r);
            batch.calls += r.calls;
            if r.is_retryable_failure() {
                let seqs = &sequence_numbers[r.users[0].as_str()];
                if seqs.is_empty() {
                    batch.unreportable += 1;
                    tracing::error!(user_id = %r.user_label(), outcome = "failed", "transient failure, but its records carry no sequence number for Lambda to retry");
                }
                batch
                    .failed_sequence_numbers
                    .extend(seqs.iter().map(|s| s.to_string()));
            }
        }
        // Lambda restarts from the lowest identifier; keep stream order.
        batch
            .failed_sequence_numbers
            .sort_by(|a, b| cmp_sequence(a, b));
        batch.reports = reports;
        batch
    }

    /// Every user in the table, then every repository under the prefix that
    /// no user maps to. Fails as a whole only when the table or the
    /// repository list cannot be read.
    pub async fn full_reconcile(&self) -> Result<ReconcileReport, SyncError> {
        let started = Instant::now();
        let mut report = ReconcileReport::default();
        let mut calls = CallStats::default();

        let mut rows_by_user: BTreeMap<String, Vec<Row>> = BTreeMap::new();
        let mut start = None;
        loop {
            let page = self
                .table
                .scan_page(start.take(), self.settings.scan_page_size, None, &mut calls)
                .await?;
            report.scan_pages += 1;
            report.rows += page.rows.len() + page.malformed;
            report.malformed_rows += page.malformed;
            for (user, row) in page.rows {
                rows_by_user.entry(user).or_default().push(row);
            }
            match page.next {
                Some(next) => start = Some(next),
                None => break,
            }
        }
        if report.malformed_rows > 0 {
            tracing::warn!(
                table = %self.table.name(),
                rows = report.malformed_rows,
                "rows without a string user id skipped"
            );
        }
        report.users = rows_by_user.len();

        // Listing first spares a GetRepositoryPolicy for every user who has
        // neither access nor a repository.
        let existing: HashSet<String> = self
            .policies
            .list_under(&self.settings.prefix, &mut calls)
            .await?
            .into_iter()
            .collect();
        report.repositories = existing.len();

        let mut by_repository: BTreeMap<String, Vec<(String, Vec<Row>)>> = BTreeMap::new();
        let mut reports = Vec::new();
        for (user, rows) in rows_by_user {
            match repository_name(&self.settings.prefix, &user) {
                Ok(repo) => by_repository.entry(repo).or_default().push((user, rows)),
                Err(e) => {
                    let mut r = RepositoryReport::new(vec![user], None);
                    r.outcome = Outcome::Failed;
                    r.error = Some(e.into());
                    log_report(&r, true);
                    reports.push(r);
                }
            }
        }

        let limit = self.settings.collision_candidates;
        let mut jobs = Vec::new();
        for (repository, claims) in by_repository {
            let users: Vec<String> = claims.iter().map(|(u, _)| u.clone()).collect();
            // The stream path looks up at most `limit` ids per name, so
            // past it a grant is withheld here too: both paths must agree,
            // or access would flip between them.
            let too_many = colliding_ids(&users[0], limit).is_none().then_some(limit);
            let resolved: Resolved = resolve(
                claims
                    .iter()
                    .map(|(u, rows)| (u.clone(), desired_accounts(rows, &self.settings.selection))),
                too_many,
            );
            if resolved.desired.accounts.is_empty() && !existing.contains(&repository) {
                // Nothing to grant and nowhere to grant it.
                let mut r = RepositoryReport::new(users, Some(repository));
                r.skipped_rows = resolved
                    .desired
                    .skipped
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                r.contest = resolved.contest;
                log_findings(&r);
                reports.push(r);
                continue;
            }
            jobs.push(ConvergeJob {
                repository,
                users: users.clone(),
                lookups: users,
                too_many,
                initial: Some(resolved),
                quiet: true,
            });
        }
        let mapped: HashSet<&str> = jobs
            .iter()
            .map(|t| t.repository.as_str())
            .chain(reports.iter().filter_map(|r| r.repository.as_deref()))
            .collect();
        let mut orphans: Vec<&String> = existing
            .iter()
            .filter(|r| !mapped.contains(r.as_str()))
            .collect();
        orphans.sort();
        report.orphans = orphans.len();
        let orphan_jobs: Vec<ConvergeJob> = orphans
            .into_iter()
            .map(|repository| {
                let escaped = escaped_part(&self.settings.prefix, repository).unwrap_or_default();
                // A user added since the scan may own it: the re-check after
                // revoking reads every user id the name could stand for.
                let (users, too_many) = match unescape_candidates(escaped, limit) {
                    Some(users) => (users, None),
                    None => {
                        tracing::warn!(repository = %repository, "name stands for too many user ids to re-check; revoking without the re-check");
                        (Vec::new(), Some(limit))
                    }
                };
                ConvergeJob {
                    repository: repository.clone(),
                    users: users.clone(),
                    lookups: users,
                    too_many,
                    initial: Some(Resolved::default()),
                    quiet: true,
                }
            })
            .collect();
        drop(mapped);
        jobs.extend(orphan_jobs);

        let done: Vec<RepositoryReport> = futures_util::stream::iter(jobs)
            .map(|t| self.converge(t))
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        reports.extend(done);

        for r in &reports {
            report.tally.add(r);
            calls += r.calls;
        }
        report.calls = calls;
        report.duration_ms = started.elapsed().as_millis() as u64;
        report.reports = reports;
        Ok(report)
    }
}

/// Stream sequence numbers are decimal strings of varying length.
fn cmp_sequence(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_sequence_numbers_of_different_lengths_when_sorted_then_numerically() {
        let mut s = vec!["900", "10000", "1000"];
        s.sort_by(|a, b| cmp_sequence(a, b));
        assert_eq!(s, ["900", "1000", "10000"]);
    }
}
