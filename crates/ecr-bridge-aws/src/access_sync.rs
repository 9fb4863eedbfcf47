//! Access sync's use case: each user's ECR repository policy kept equal to
//! what the users table grants, on every stream batch and in a full
//! reconcile.
//!
//! Per repository: read the desired accounts from the table (consistent),
//! read the policy, write only when they differ, then read the table again.
//! ECR has no conditional write and the stream orders records per item, not
//! per user, so a writer that read the table before us may write after us;
//! the read after our write sees what it saw and we converge again (bounded).
//! An unchanged user costs a Query and a GetRepositoryPolicy and no write.

pub mod policies;
pub mod table;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Instant;

use aws_config::{Region, SdkConfig};
use ecr_bridge::access::naming::{escaped_part, repository_name, unescape_candidates, NamingError};
use ecr_bridge::access::{
    desired_accounts, plan, Desired, PolicyChange, PolicyError, PolicySpec, Row, Selection,
};
use futures_util::StreamExt;
use serde::Serialize;

use crate::error::AwsError;
use policies::{CurrentPolicy, RepositoryPolicies};
pub use table::{Attributes, UsersTable};

/// How many user ids an orphan repository's name may stand for before we
/// stop looking them up (each is a Query).
const MAX_CANDIDATES: usize = 16;

/// What to do when a user with access has no repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MissingRepository {
    /// Log and count it; the next full reconcile tries again.
    Skip,
    /// Create it (ECR defaults), then grant.
    Create,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub table: String,
    pub attributes: Attributes,
    /// Repositories are `<prefix>/<escaped user id>`.
    pub prefix: String,
    pub selection: Selection,
    pub policy: PolicySpec,
    pub missing_repository: MissingRepository,
    /// Repositories reconciled at once.
    pub concurrency: usize,
    /// Items per Scan page; `None` for DynamoDB's 1 MB pages.
    pub scan_page_size: Option<i32>,
    /// Policy writes for one repository in one pass before giving up
    /// (transiently) because the table keeps changing under us.
    pub converge_rounds: u32,
}

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

    /// Calls that change something in ECR.
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

/// Why a repository could not be brought in line.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Naming(#[from] NamingError),
    #[error("repository {repository}: {source}")]
    Policy {
        repository: String,
        #[source]
        source: PolicyError,
    },
    #[error("repository {repository}: ECR refused the policy: {source}")]
    PolicyRejected {
        repository: String,
        #[source]
        source: AwsError,
    },
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("repository {repository}: the users table kept changing; gave up after {writes} policy writes")]
    NotConverged { repository: String, writes: u32 },
}

/// Codes that say the function is misconfigured (permissions, table,
/// credentials) rather than that one user's data is bad. They hit every
/// user alike, so the records are handed back to Lambda: its retries and
/// on-failure destination keep them, where dropping them would lose access
/// changes until the next full reconcile.
const CONFIGURATION_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "ResourceNotFoundException",
];

impl SyncError {
    /// Whether the same records can succeed later, so Lambda should retry them.
    pub fn is_retryable(&self) -> bool {
        match self {
            SyncError::Naming(_) | SyncError::Policy { .. } | SyncError::PolicyRejected { .. } => {
                false
            }
            SyncError::NotConverged { .. } => true,
            SyncError::Aws(e) => {
                e.retryable
                    || e.code
                        .as_deref()
                        .is_some_and(|c| CONFIGURATION_CODES.contains(&c))
            }
        }
    }

    /// A short name for metrics and log filters.
    pub fn kind(&self) -> &'static str {
        match self {
            SyncError::Naming(_) => "invalid_name",
            SyncError::Policy {
                source: PolicyError::TooLarge { .. },
                ..
            } => "policy_too_large",
            SyncError::Policy { .. } => "invalid_current_policy",
            SyncError::PolicyRejected { .. } => "policy_rejected",
            SyncError::Aws(_) => "aws",
            SyncError::NotConverged { .. } => "not_converged",
        }
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
    pub created_repository: bool,
    /// Policy writes (more than one when the table changed under us).
    pub writes: u32,
    pub skipped_rows: Vec<String>,
    pub error: Option<SyncError>,
    pub calls: CallStats,
}

impl RepositoryReport {
    fn new(users: Vec<String>, repository: Option<String>) -> Self {
        RepositoryReport {
            users,
            repository,
            outcome: Outcome::Unchanged,
            accounts: Vec::new(),
            accounts_added: Vec::new(),
            accounts_removed: Vec::new(),
            created_repository: false,
            writes: 0,
            skipped_rows: Vec::new(),
            error: None,
            calls: CallStats::default(),
        }
    }

    pub fn is_retryable_failure(&self) -> bool {
        self.error.as_ref().is_some_and(SyncError::is_retryable)
    }

    fn user_label(&self) -> String {
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
}

impl Tally {
    fn add(&mut self, r: &RepositoryReport) {
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
        self.rows_skipped += r.skipped_rows.len();
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

/// One repository to reconcile and whose rows decide it.
struct Target {
    repository: String,
    users: Vec<String>,
    /// What the scan already read (the re-check after a write reads again).
    initial: Option<Desired>,
    /// Log "unchanged" at debug (a full reconcile touches every user).
    quiet: bool,
}

pub struct AccessSync {
    table: UsersTable,
    policies: RepositoryPolicies,
    settings: Settings,
}

/// An ECR client acting in the repositories' account and region: the
/// function's own credentials, or `role_arn` assumed with them. The SDK's
/// identity cache keeps the assumed credentials and refreshes them before
/// they expire (role chaining caps them at an hour), so the role is assumed
/// once per container, not per record.
pub async fn ecr_client(
    base: &SdkConfig,
    region: &str,
    role_arn: Option<&str>,
    external_id: Option<&str>,
    session_name: &str,
) -> aws_sdk_ecr::Client {
    let region = Region::new(region.to_string());
    let mut builder = base.to_builder().region(region.clone());
    if let Some(role) = role_arn {
        let mut provider = aws_config::sts::AssumeRoleProvider::builder(role)
            .session_name(session_name)
            .region(region)
            .configure(base);
        if let Some(id) = external_id {
            provider = provider.external_id(id);
        }
        builder = builder.credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(provider.build().await),
        );
    }
    aws_sdk_ecr::Client::new(&builder.build())
}

impl AccessSync {
    pub fn new(
        dynamodb: aws_sdk_dynamodb::Client,
        ecr: aws_sdk_ecr::Client,
        settings: Settings,
    ) -> Self {
        AccessSync {
            table: UsersTable::new(
                dynamodb,
                settings.table.clone(),
                settings.attributes.clone(),
            ),
            policies: RepositoryPolicies::new(ecr),
            settings,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Brings one user's repository in line with the table.
    pub async fn reconcile_user(&self, user_id: &str) -> RepositoryReport {
        match repository_name(&self.settings.prefix, user_id) {
            Ok(repository) => {
                self.converge(Target {
                    repository,
                    users: vec![user_id.to_string()],
                    initial: None,
                    quiet: false,
                })
                .await
            }
            Err(e) => {
                let mut report = RepositoryReport::new(vec![user_id.to_string()], None);
                report.outcome = Outcome::Failed;
                report.error = Some(e.into());
                log_report(&report, false);
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
                .scan_page(start.take(), self.settings.scan_page_size, &mut calls)
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

        let mut by_repository: BTreeMap<String, (Vec<String>, Vec<Row>)> = BTreeMap::new();
        let mut reports = Vec::new();
        for (user, rows) in rows_by_user {
            match repository_name(&self.settings.prefix, &user) {
                Ok(repo) => {
                    let entry = by_repository.entry(repo).or_default();
                    entry.0.push(user);
                    entry.1.extend(rows);
                }
                Err(e) => {
                    let mut r = RepositoryReport::new(vec![user], None);
                    r.outcome = Outcome::Failed;
                    r.error = Some(e.into());
                    log_report(&r, true);
                    reports.push(r);
                }
            }
        }

        let mut targets = Vec::new();
        for (repository, (users, rows)) in by_repository {
            let desired = desired_accounts(&rows, &self.settings.selection);
            if users.len() > 1 {
                tracing::warn!(repository = %repository, user_id = %users.join(","), "several user ids escape to this repository; it grants the union of their accounts");
            }
            if desired.accounts.is_empty() && !existing.contains(&repository) {
                // Nothing to grant and nowhere to grant it.
                let mut r = RepositoryReport::new(users, Some(repository));
                r.skipped_rows = desired.skipped.iter().map(ToString::to_string).collect();
                log_skipped(&r);
                reports.push(r);
                continue;
            }
            targets.push(Target {
                repository,
                users,
                initial: Some(desired),
                quiet: true,
            });
        }
        let mapped: HashSet<&str> = targets
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
        let orphan_targets: Vec<Target> = orphans
            .into_iter()
            .map(|repository| {
                let escaped = escaped_part(&self.settings.prefix, repository).unwrap_or_default();
                // A user added since the scan may own it: the re-check after
                // revoking reads every user id the name could stand for.
                let users = unescape_candidates(escaped, MAX_CANDIDATES).unwrap_or_else(|| {
                    tracing::warn!(repository = %repository, "name stands for too many user ids to re-check; revoking without the re-check");
                    Vec::new()
                });
                Target {
                    repository: repository.clone(),
                    users,
                    initial: Some(Desired::default()),
                    quiet: true,
                }
            })
            .collect();
        drop(mapped);
        targets.extend(orphan_targets);

        let done: Vec<RepositoryReport> = futures_util::stream::iter(targets)
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

    async fn converge(&self, target: Target) -> RepositoryReport {
        let mut report =
            RepositoryReport::new(target.users.clone(), Some(target.repository.clone()));
        let mut calls = CallStats::default();
        if let Err(e) = self.converge_inner(&target, &mut report, &mut calls).await {
            report.outcome = Outcome::Failed;
            report.error = Some(e);
        }
        report.calls = calls;
        log_report(&report, target.quiet);
        report
    }

    async fn converge_inner(
        &self,
        target: &Target,
        report: &mut RepositoryReport,
        calls: &mut CallStats,
    ) -> Result<(), SyncError> {
        let repository = target.repository.as_str();
        let mut desired = match &target.initial {
            Some(d) => d.clone(),
            None => self.read_desired(&target.users, calls).await?,
        };
        let mut before: Option<BTreeSet<String>> = None;
        loop {
            report.skipped_rows = desired.skipped.iter().map(ToString::to_string).collect();
            let current = match self.policies.get(repository, calls).await? {
                CurrentPolicy::Text(t) => Some(t),
                CurrentPolicy::None => None,
                CurrentPolicy::NoRepository if desired.accounts.is_empty() => {
                    finish(report, before.unwrap_or_default(), &desired);
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
            let plan = plan(current.as_deref(), &desired.accounts, &self.settings.policy).map_err(
                |source| SyncError::Policy {
                    repository: repository.to_string(),
                    source,
                },
            )?;
            let before = before.get_or_insert_with(|| plan.before.clone());
            if plan.change == PolicyChange::Keep {
                finish(report, before.clone(), &desired);
                return Ok(());
            }
            if report.writes >= self.settings.converge_rounds {
                return Err(SyncError::NotConverged {
                    repository: repository.to_string(),
                    writes: report.writes,
                });
            }
            match &plan.change {
                PolicyChange::Put(text) => {
                    let written = self
                        .policies
                        .set(repository, text, calls)
                        .await
                        .map_err(|e| rejected(repository, e))?;
                    if !written {
                        // Deleted under us: treat as never there.
                        report.writes += 1;
                        continue;
                    }
                }
                PolicyChange::Delete => self.policies.delete(repository, calls).await?,
                PolicyChange::Keep => unreachable!("handled above"),
            }
            report.writes += 1;
            let again = self.read_desired(&target.users, calls).await?;
            if again.accounts == desired.accounts {
                finish(report, before.clone(), &again);
                return Ok(());
            }
            tracing::info!(repository, user_id = %report.user_label(), "the users table changed while we wrote; converging again");
            desired = again;
        }
    }

    /// The union of the users' rows, each read consistently.
    async fn read_desired(
        &self,
        users: &[String],
        calls: &mut CallStats,
    ) -> Result<Desired, SyncError> {
        let mut desired = Desired::default();
        for user in users {
            let rows = self.table.user_rows(user, calls).await?;
            desired = desired.union(desired_accounts(&rows, &self.settings.selection));
        }
        Ok(desired)
    }
}

/// `InvalidParameterException` on a write is ECR refusing the document (a
/// principal that does not exist, a malformed policy): permanent.
fn rejected(repository: &str, e: AwsError) -> SyncError {
    if e.has_code("InvalidParameterException") {
        SyncError::PolicyRejected {
            repository: repository.to_string(),
            source: e,
        }
    } else {
        SyncError::Aws(e)
    }
}

fn finish(report: &mut RepositoryReport, before: BTreeSet<String>, desired: &Desired) {
    let now: BTreeSet<String> = desired.accounts.iter().map(|a| a.to_string()).collect();
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

/// Stream sequence numbers are decimal strings of varying length.
fn cmp_sequence(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn log_skipped(r: &RepositoryReport) {
    for row in &r.skipped_rows {
        tracing::warn!(user_id = %r.user_label(), repository = r.repository.as_deref().unwrap_or(""), row = %row, "row skipped: it grants no account");
    }
}

fn log_report(r: &RepositoryReport, quiet_unchanged: bool) {
    log_skipped(r);
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
        (None, Outcome::Unchanged) if quiet_unchanged => {
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
    fn given_sequence_numbers_of_different_lengths_when_sorted_then_numerically() {
        let mut s = vec!["900", "10000", "1000"];
        s.sort_by(|a, b| cmp_sequence(a, b));
        assert_eq!(s, ["900", "1000", "10000"]);
    }

    #[test]
    fn given_errors_when_classified_then_data_is_permanent_and_throttling_or_configuration_is_retried(
    ) {
        let aws = |code: &str, retryable| {
            SyncError::Aws(AwsError {
                operation: "x",
                code: Some(code.into()),
                message: "m".into(),
                retryable,
            })
        };
        assert!(aws("ThrottlingException", true).is_retryable());
        assert!(aws("AccessDeniedException", false).is_retryable());
        assert!(!aws("ValidationException", false).is_retryable());
        assert!(!SyncError::Naming(NamingError::EmptyUserId).is_retryable());
        assert!(!SyncError::Policy {
            repository: "r".into(),
            source: PolicyError::TooLarge {
                length: 1,
                limit: 0
            }
        }
        .is_retryable());
        assert!(SyncError::NotConverged {
            repository: "r".into(),
            writes: 3
        }
        .is_retryable());
        let rejected = rejected(
            "r",
            AwsError {
                operation: "ecr:SetRepositoryPolicy",
                code: Some("InvalidParameterException".into()),
                message: "Invalid repository policy provided".into(),
                retryable: false,
            },
        );
        assert_eq!(rejected.kind(), "policy_rejected");
        assert!(!rejected.is_retryable());
    }

    #[test]
    fn given_before_and_after_when_finishing_then_the_outcome_names_the_change() {
        let desired = |ids: &[&str]| Desired {
            accounts: ids.iter().map(|a| a.parse().unwrap()).collect(),
            ..Desired::default()
        };
        let set = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let run = |before: &[&str], after: &[&str], writes| {
            let mut r = RepositoryReport::new(vec!["u".into()], Some("r".into()));
            r.writes = writes;
            finish(&mut r, set(before), &desired(after));
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
