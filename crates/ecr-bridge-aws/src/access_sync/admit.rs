//! Writing a merged policy, and when ECR refuses it (or it is too long),
//! writing what can be written: removals always, then every account ECR
//! accepts, found by bisection (`ecr_bridge::access::admission`).

use std::collections::BTreeSet;

use ecr_bridge::access::{
    merge_policy, AccountId, Admission, AdmissionError, LeftOut, PolicyChange, PolicyError,
    PolicyMerge, Step, WriteVerdict,
};

use super::{AccessSync, CallStats, SyncError};
use crate::error::AwsError;

/// What a write left in ECR.
pub(super) enum Applied {
    /// The repository was deleted under us.
    Gone,
    Written {
        /// What our statement grants now.
        granted: BTreeSet<AccountId>,
        left_out: Vec<(AccountId, LeftOut)>,
        /// Writes ECR accepted that changed the policy.
        changes: u32,
    },
}

enum Wrote {
    Done,
    Gone,
    /// `InvalidParameterException`: ECR refused the document.
    Refused(AwsError),
}

impl AccessSync {
    /// Makes ECR's policy for `repository` (now `current`) grant `desired`,
    /// as `merged` says, or as much of it as ECR takes.
    pub(super) async fn apply(
        &self,
        repository: &str,
        current: Option<&str>,
        desired: &BTreeSet<AccountId>,
        merged: Result<PolicyMerge, PolicyError>,
        calls: &mut CallStats,
    ) -> Result<Applied, SyncError> {
        let policy_error = |source| SyncError::Policy {
            repository: repository.to_string(),
            source,
        };
        let failure = match merged {
            Ok(p) => match self.write(repository, &p.change, calls).await? {
                Wrote::Done => {
                    return Ok(Applied::Written {
                        granted: desired.clone(),
                        left_out: Vec::new(),
                        changes: 1,
                    })
                }
                Wrote::Gone => return Ok(Applied::Gone),
                // Nothing of ours left to leave out: a foreign statement
                // (or the document) is what ECR refuses.
                Wrote::Refused(source) if desired.is_empty() => {
                    return Err(SyncError::PolicyRejected {
                        repository: repository.to_string(),
                        source,
                    })
                }
                Wrote::Refused(e) => {
                    tracing::info!(repository, error = %e, "ECR refused the policy; finding the principals it refuses");
                    LeftOut::Refused
                }
            },
            Err(PolicyError::TooLarge { .. }) => LeftOut::NoRoom,
            Err(e) => return Err(policy_error(e)),
        };

        let spec = &self.settings.policy;
        // What our statement grants (merging nothing in never overflows
        // unless the foreign statements alone do).
        let before: BTreeSet<AccountId> = merge_policy(current, &BTreeSet::new(), spec)
            .map_err(policy_error)?
            .before
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect();
        let kept: BTreeSet<AccountId> = desired.intersection(&before).cloned().collect();
        let in_place =
            matches!(merge_policy(current, &kept, spec), Ok(p) if p.change == PolicyChange::Keep);
        let mut admission = Admission::new(desired, &before, in_place, failure);
        // The document ECR holds, as far as we know: each step is merged
        // against it, so foreign statements stay as they were.
        let mut held = current.map(str::to_string);
        let mut changes = 0;
        let mut refusal: Option<AwsError> = None;
        let mut too_large: Option<PolicyError> = None;
        loop {
            let (set, force) = match admission.next_step() {
                Step::Done => break,
                Step::Write(set) => (set, false),
                Step::Confirm(set) => (set, true),
            };
            let verdict = match merge_policy(held.as_deref(), &set, spec) {
                Err(e @ PolicyError::TooLarge { .. }) => {
                    too_large = Some(e);
                    WriteVerdict::TooLarge
                }
                Err(e) => return Err(policy_error(e)),
                Ok(p) => {
                    let identical = p.change == PolicyChange::Keep;
                    let change = match (p.change, &held) {
                        // A confirmation rewrites the document as it is.
                        (PolicyChange::Keep, Some(text)) if force => {
                            PolicyChange::Put(text.clone())
                        }
                        (change, _) => change,
                    };
                    match self.write(repository, &change, calls).await? {
                        Wrote::Gone => return Ok(Applied::Gone),
                        Wrote::Refused(e) => {
                            refusal = Some(e);
                            WriteVerdict::Refused
                        }
                        Wrote::Done if change == PolicyChange::Keep => WriteVerdict::InPlace,
                        Wrote::Done => {
                            changes += u32::from(!identical);
                            held = match change {
                                PolicyChange::Put(text) => Some(text),
                                _ => None,
                            };
                            WriteVerdict::Accepted
                        }
                    }
                }
            };
            if let Err(e) = admission.answer(verdict) {
                return Err(match (e, refusal, too_large) {
                    (AdmissionError::Refused, Some(source), _) => SyncError::PolicyRejected {
                        repository: repository.to_string(),
                        source,
                    },
                    (_, _, Some(source)) => policy_error(source),
                    (e, _, None) => SyncError::Aws(AwsError::permanent(
                        "ecr:SetRepositoryPolicy",
                        e.to_string(),
                    )),
                });
            }
        }
        Ok(Applied::Written {
            granted: admission.granted().clone(),
            left_out: admission.left_out().to_vec(),
            changes,
        })
    }

    async fn write(
        &self,
        repository: &str,
        change: &PolicyChange,
        calls: &mut CallStats,
    ) -> Result<Wrote, SyncError> {
        match change {
            PolicyChange::Keep => Ok(Wrote::Done),
            PolicyChange::Delete => {
                self.policies.delete(repository, calls).await?;
                Ok(Wrote::Done)
            }
            PolicyChange::Put(text) => match self.policies.set(repository, text, calls).await {
                Ok(true) => Ok(Wrote::Done),
                Ok(false) => Ok(Wrote::Gone),
                // ECR's answer to a principal it does not accept (and to
                // any other document it refuses); it does not say which.
                Err(e) if e.has_code("InvalidParameterException") => Ok(Wrote::Refused(e)),
                Err(e) => Err(e.into()),
            },
        }
    }
}
