//! What a reconcile did, per repository and in total, and the log lines
//! that say so.

use std::collections::BTreeSet;

use ecr_bridge::access::{AccountId, Contest, LeftOut};
use serde::Serialize;

use super::SyncError;

/// AWS calls made, by operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CallStats {
    pub query: u32,
    pub scan: u32,
    pub get_policy: u32,
    pub set_policy: u32,
    pub delete_policy: u32,
    pub describe_repositories: u32,
    pub create_repository: u32,
}

impl CallStats {
    pub fn total(&self) -> u32 {
        self.query
            + self.scan
            + self.get_policy
            + self.set_policy
            + self.delete_policy
            + self.describe_repositories
            + self.create_repository
    }

    /// Calls that change something in ECR (or try to: a refused
    /// `SetRepositoryPolicy` counts).
    pub fn writes(&self) -> u32 {
        self.set_policy + self.delete_policy + self.create_repository
    }
}

impl std::ops::AddAssign for CallStats {
    fn add_assign(&mut self, o: CallStats) {
        self.query += o.query;
        self.scan += o.scan;
        self.get_policy += o.get_policy;
        self.set_policy += o.set_policy;
        self.delete_policy += o.delete_policy;
        self.describe_repositories += o.describe_repositories;
        self.create_repository += o.create_repository;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Our statement now grants accounts; before, it granted none.
    Granted,
    /// It grants a different set (or the same set, rewritten: a Gen3 take-over).
    Changed,
    /// It granted accounts; now it grants none.
    Revoked,
    Unchanged,
    /// Accounts should have access but there is no repository (`MISSING_REPOSITORY=skip`).
    RepositoryMissing,
    Failed,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Granted => "granted",
            Outcome::Changed => "changed",
            Outcome::Revoked => "revoked",
            Outcome::Unchanged => "unchanged",
            Outcome::RepositoryMissing => "repository_missing",
            Outcome::Failed => "failed",
        }
    }
}

/// What happened to one repository.
#[derive(Debug, Clone)]
pub struct RepositoryReport {
    /// The user(s) whose rows decide it: one, or for an orphan repository
    /// every user id its name could stand for.
    pub users: Vec<String>,
    /// `None` when the user has no valid repository name.
    pub repository: Option<String>,
    pub outcome: Outcome,
    /// Accounts granted now (when it did not fail).
    pub accounts: Vec<String>,
    pub accounts_added: Vec<String>,
    pub accounts_removed: Vec<String>,
    /// Accounts the table grants that our statement does not hold, and why.
    pub left_out: Vec<(AccountId, LeftOut)>,
    /// Set when colliding user ids made the repository grant nothing.
    pub contest: Option<Contest>,
    pub created_repository: bool,
    /// Policy writes ECR accepted that changed the policy (more than one
    /// when the table changed under us or ECR refused a principal).
    pub writes: u32,
    pub skipped_rows: Vec<String>,
    pub error: Option<SyncError>,
    pub calls: CallStats,
    /// Access events the bus did not take (best effort: counted, no more).
    pub events_failed: u64,
}

impl RepositoryReport {
    pub(super) fn new(users: Vec<String>, repository: Option<String>) -> Self {
        RepositoryReport {
            users,
            repository,
            outcome: Outcome::Unchanged,
            accounts: Vec::new(),
            accounts_added: Vec::new(),
            accounts_removed: Vec::new(),
            left_out: Vec::new(),
            contest: None,
            created_repository: false,
            writes: 0,
            skipped_rows: Vec::new(),
            error: None,
            calls: CallStats::default(),
            events_failed: 0,
        }
    }

    pub fn is_retryable_failure(&self) -> bool {
        self.error.as_ref().is_some_and(SyncError::is_retryable)
    }

    pub(super) fn user_label(&self) -> String {
        self.users.join(",")
    }
}

/// Counts of outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub granted: usize,
    pub changed: usize,
    pub revoked: usize,
    pub unchanged: usize,
    pub missing: usize,
    pub created: usize,
    pub failed: usize,
    pub failed_transient: usize,
    pub rows_skipped: usize,
    /// Accounts left out of a policy (ECR refused them, or no room).
    pub principals_refused: usize,
    /// Repositories that grant nothing because user ids collide on them.
    pub escape_collisions: usize,
    /// Access events the bus did not take.
    pub events_failed: usize,
}

impl Tally {
    pub(super) fn add(&mut self, r: &RepositoryReport) {
        match r.outcome {
            Outcome::Granted => self.granted += 1,
            Outcome::Changed => self.changed += 1,
            Outcome::Revoked => self.revoked += 1,
            Outcome::Unchanged => self.unchanged += 1,
            Outcome::RepositoryMissing => self.missing += 1,
            Outcome::Failed => {
                self.failed += 1;
                if r.is_retryable_failure() {
                    self.failed_transient += 1;
                }
            }
        }
        self.created += usize::from(r.created_repository);
        self.events_failed += r.events_failed as usize;
        self.rows_skipped += r.skipped_rows.len();
        self.principals_refused += r.left_out.len();
        self.escape_collisions += usize::from(r.contest.is_some());
    }
}

/// A stream record reduced to what matters: whose rows changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamChange {
    pub user_id: String,
    /// Lambda's item identifier; `None` when the record had none.
    pub sequence_number: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct BatchReport {
    pub reports: Vec<RepositoryReport>,
    /// Records to hand back to Lambda: those of users that failed transiently.
    pub failed_sequence_numbers: Vec<String>,
    /// Users that failed transiently with no sequence number to report.
    pub unreportable: usize,
    pub tally: Tally,
    pub calls: CallStats,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcileReport {
    pub scan_pages: u32,
    pub rows: usize,
    pub malformed_rows: usize,
    pub users: usize,
    /// Repositories under the prefix.
    pub repositories: usize,
    /// Of those, the ones no scanned user maps to.
    pub orphans: usize,
    #[serde(flatten)]
    pub tally: Tally,
    pub calls: CallStats,
    pub duration_ms: u64,
    #[serde(skip)]
    pub reports: Vec<RepositoryReport>,
}

/// Fills in the outcome once the policy grants `granted`.
pub(super) fn finish(
    report: &mut RepositoryReport,
    before: BTreeSet<String>,
    granted: &BTreeSet<AccountId>,
) {
    let now: BTreeSet<String> = granted.iter().map(|a| a.to_string()).collect();
    report.accounts_added = now.difference(&before).cloned().collect();
    report.accounts_removed = before.difference(&now).cloned().collect();
    report.outcome = if report.writes == 0 {
        Outcome::Unchanged
    } else if now.is_empty() && !before.is_empty() {
        Outcome::Revoked
    } else if before.is_empty() && !now.is_empty() {
        Outcome::Granted
    } else {
        Outcome::Changed
    };
    report.accounts = now.into_iter().collect();
}

/// Skipped rows, left-out accounts and collisions: one line each.
pub(super) fn log_findings(r: &RepositoryReport) {
    let user_id = r.user_label();
    let repository = r.repository.as_deref().unwrap_or("");
    for row in &r.skipped_rows {
        tracing::warn!(user_id, repository, row = %row, "row skipped: it grants no account");
    }
    for (account, reason) in &r.left_out {
        let why = match reason {
            LeftOut::Refused => "ECR refuses a policy naming it (InvalidParameterException)",
            LeftOut::NoRoom => "the policy would be over ECR's 10,240 characters with it",
        };
        tracing::warn!(
            user_id,
            repository,
            account = %account,
            reason = reason.as_str(),
            "account left out of the repository policy: {why}; the rest is written"
        );
    }
    if let Some(c) = &r.contest {
        tracing::error!(
            repository,
            user_ids = %c.user_ids.join(","),
            error_kind = c.kind_str(),
            "{c}"
        );
    }
}

pub(super) fn log_report(r: &RepositoryReport, quiet_unchanged: bool) {
    log_findings(r);
    let user_id = r.user_label();
    let repository = r.repository.as_deref().unwrap_or("");
    let added = r.accounts_added.join(",");
    let removed = r.accounts_removed.join(",");
    let calls = r.calls.total();
    match (&r.error, r.outcome) {
        (Some(e), _) => {
            let retryable = e.is_retryable();
            if retryable {
                tracing::warn!(user_id, repository, outcome = "failed", error = %e, error_kind = e.kind(), retryable, calls, "access sync failed; Lambda will retry");
            } else {
                tracing::error!(user_id, repository, outcome = "failed", error = %e, error_kind = e.kind(), retryable, calls, "access sync failed permanently; not retried");
            }
        }
        (None, Outcome::Unchanged) if quiet_unchanged && r.left_out.is_empty() => {
            tracing::debug!(
                user_id,
                repository,
                outcome = "unchanged",
                calls,
                "access already in line"
            );
        }
        (None, Outcome::RepositoryMissing) => {
            tracing::warn!(user_id, repository, outcome = "repository_missing", accounts = %r.accounts.join(","), calls, "accounts should have access but the repository does not exist; skipped until the next full reconcile");
        }
        (None, outcome) => {
            tracing::info!(
                user_id,
                repository,
                accounts_added = %added,
                accounts_removed = %removed,
                accounts_left_out = r.left_out.len(),
                outcome = outcome.as_str(),
                writes = r.writes,
                created_repository = r.created_repository,
                calls,
                "access reconciled"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_before_and_after_when_finishing_then_the_outcome_names_the_change() {
        let ids = |ids: &[&str]| {
            ids.iter()
                .map(|a| a.parse().unwrap())
                .collect::<BTreeSet<AccountId>>()
        };
        let set = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let run = |before: &[&str], after: &[&str], writes| {
            let mut r = RepositoryReport::new(vec!["u".into()], Some("r".into()));
            r.writes = writes;
            finish(&mut r, set(before), &ids(after));
            r
        };
        assert_eq!(run(&[], &["111111111111"], 1).outcome, Outcome::Granted);
        assert_eq!(run(&["111111111111"], &[], 1).outcome, Outcome::Revoked);
        let changed = run(&["111111111111"], &["222222222222"], 1);
        assert_eq!(changed.outcome, Outcome::Changed);
        assert_eq!(changed.accounts_added, ["222222222222"]);
        assert_eq!(changed.accounts_removed, ["111111111111"]);
        assert_eq!(
            run(&["111111111111"], &["111111111111"], 0).outcome,
            Outcome::Unchanged
        );
    }
}
