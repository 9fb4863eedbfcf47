//! Cross-repository blob mounts as ECR answers them: off until the account
//! setting `BLOB_MOUNTING` is on (then the client gets a plain upload
//! session), or refused with 403 for a caller who may not read the source.

use super::Answer;
use crate::fault_proxy::{bump, Shared};
use crate::wire::Head;

/// What a cross-repository blob mount (`POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<repo>`) gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MountBehaviour {
    /// Passed to the registry, which mounts and answers 201.
    #[default]
    Forward,
    /// ECR with `BLOB_MOUNTING` off: `mount` and `from` are dropped and the
    /// registry sees a plain upload POST, so the client gets 202 and an
    /// upload session.
    Disabled,
    /// 403 `DENIED` (not authorized to perform `ecr:GetDownloadUrlForLayer`
    /// on the source repository), not forwarded.
    Denied,
}

impl Shared {
    /// With a mount (`?mount=&from=`) and [`MountBehaviour`] other than
    /// `Forward`: makes it a plain upload, or refuses it.
    pub(super) fn mount_answer(&self, head: &mut Head, repo: &str) -> Option<Answer> {
        if self.opts.mount == MountBehaviour::Forward {
            return None;
        }
        let (path, query) = head.target.split_once('?')?;
        let params: Vec<&str> = query.split('&').collect();
        params.iter().find(|p| p.starts_with("mount="))?;
        bump(&self.counters.mounts_refused);
        match self.opts.mount {
            MountBehaviour::Forward => None,
            MountBehaviour::Disabled => {
                let kept: Vec<&str> = params
                    .iter()
                    .copied()
                    .filter(|p| {
                        !p.starts_with("mount=") && !p.starts_with("from=") && !p.is_empty()
                    })
                    .collect();
                head.target = if kept.is_empty() {
                    path.to_string()
                } else {
                    format!("{path}?{}", kept.join("&"))
                };
                None
            }
            MountBehaviour::Denied => {
                let from = params
                    .iter()
                    .find_map(|p| p.strip_prefix("from="))
                    .unwrap_or(repo)
                    .replace("%2F", "/")
                    .replace("%2f", "/");
                let (account, region) = (self.account(), self.region());
                let msg = format!(
                    "User: arn:aws:sts::{account}:assumed-role/ecr-bridge-replicator/rig is not authorized to perform: ecr:GetDownloadUrlForLayer on resource: arn:aws:ecr:{region}:{account}:repository/{from} because no identity-based policy allows the ecr:GetDownloadUrlForLayer action"
                );
                Some(Answer::error("403 Forbidden", "DENIED", &msg))
            }
        }
    }
}
