//! Which repositories exist ([`Repositories`]): `NAME_UNKNOWN` for one
//! nobody created, unless a creation template with `CREATE_ON_PUSH` covers
//! it (then the first push creates it, mutable); and tags of an immutable
//! repository refused with `TAG_INVALID`, even at the digest they name.

use std::io;

use super::Answer;
use crate::fault_proxy::{bump, FaultProxy, Shared};
use crate::image::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use crate::moto::{moto_create_repository, moto_repository};
use crate::wire::{self, Head};

/// Which repositories exist, for `NAME_UNKNOWN` and tag immutability.
#[derive(Debug, Clone)]
pub enum Repositories {
    /// All of them, mutable (docker-registry's own behaviour).
    Any,
    /// Only those added with [`FaultProxy::create_repository`] (or created
    /// on push).
    Listed,
    /// Those moto's ECR holds for this account and region, with their
    /// `imageTagMutability`, asked of moto on every request (and created in
    /// moto on push).
    Moto {
        url: String,
        account: String,
        region: String,
    },
}

impl FaultProxy {
    /// With [`Repositories::Listed`]: the repository exists from now on.
    pub fn create_repository(&self, name: &str, immutable_tags: bool) {
        self.shared
            .listed
            .lock()
            .expect("repositories")
            .insert(name.to_string(), immutable_tags);
    }

    pub fn delete_repository(&self, name: &str) {
        self.shared
            .listed
            .lock()
            .expect("repositories")
            .remove(name);
    }
}

impl Shared {
    /// Whether a creation template covers `repo`.
    pub(super) fn template_for(&self, repo: &str) -> bool {
        self.opts
            .create_on_push
            .iter()
            .any(|p| template_covers(p, repo))
    }

    /// ECR's 404 for a repository that does not exist.
    pub(super) fn name_unknown(&self, repo: &str) -> Answer {
        bump(&self.counters.name_unknown);
        let msg = format!(
            "The repository with name '{repo}' does not exist in the registry with id '{}'",
            self.account()
        );
        Answer::error("404 Not Found", "NAME_UNKNOWN", &msg)
    }

    /// Creates a missing repository (mutable) for a push a template covers.
    pub(super) fn create_on_push(&self, repo: &str) {
        let created = match &self.opts.repositories {
            Repositories::Any => false,
            Repositories::Listed => {
                let mut listed = self.listed.lock().expect("repositories");
                let new = !listed.contains_key(repo);
                listed.entry(repo.to_string()).or_insert(false);
                new
            }
            Repositories::Moto {
                url,
                account,
                region,
            } => {
                // One creation at a time: concurrent blob POSTs all meet the
                // missing repository, and moto's CreateRepository is
                // check-then-insert, so two racing calls can both "create".
                let _one_at_a_time = self.listed.lock().expect("repositories");
                moto_repository(url, account, region, repo).is_none()
                    && moto_create_repository(url, account, region, repo)
            }
        };
        if created {
            bump(&self.counters.created_on_push);
        }
    }

    /// ECR refuses any PUT to an existing tag of an immutable repository,
    /// even one naming the digest the tag already has.
    pub(super) fn immutable_tag_refusal(
        &self,
        head: &Head,
        body: &[u8],
        auth: Option<&str>,
        repo: &str,
        reference: &str,
    ) -> io::Result<Option<Answer>> {
        let exists = self.upstream_has_manifest(repo, reference, auth)?;
        if !exists && self.opts.tag_race {
            // A concurrent writer gets there first.
            self.forward(head, body, auth)?;
        } else if !exists {
            return Ok(None);
        }
        bump(&self.counters.tag_refusals);
        let msg = format!(
            "The image tag '{reference}' already exists in the '{repo}' repository and cannot be overwritten because the repository is immutable."
        );
        Ok(Some(Answer::error("400 Bad Request", "TAG_INVALID", &msg)))
    }

    /// `Some(immutable)` when the repository exists.
    pub(super) fn repository(&self, name: &str) -> Option<bool> {
        match &self.opts.repositories {
            Repositories::Any => Some(false),
            Repositories::Listed => self.listed.lock().expect("repositories").get(name).copied(),
            Repositories::Moto {
                url,
                account,
                region,
            } => moto_repository(url, account, region, name),
        }
    }

    fn upstream_has_manifest(
        &self,
        repo: &str,
        reference: &str,
        auth: Option<&str>,
    ) -> io::Result<bool> {
        let accept = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].join(", ");
        let mut headers = vec![("Accept", accept.as_str())];
        if let Some(a) = auth {
            headers.push(("Authorization", a));
        }
        let r = wire::request(
            &self.upstream,
            "HEAD",
            &format!("/v2/{repo}/manifests/{reference}"),
            &headers,
            b"",
        )?;
        Ok(r.status == 200)
    }
}

/// Whether a creation template with `prefix` covers repository `name`.
fn template_covers(prefix: &str, name: &str) -> bool {
    let p = prefix.trim_end_matches('/');
    p.is_empty()
        || p == "ROOT"
        || name
            .strip_prefix(p)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_template_prefixes_when_matched_then_they_cover_whole_namespaces_only() {
        assert!(template_covers("", "app"));
        assert!(template_covers("ROOT", "team/app"));
        assert!(template_covers("prod", "prod/app"));
        assert!(template_covers("prod/", "prod/team/app"));
        assert!(template_covers("prod/team", "prod/team/app"));
        assert!(!template_covers("prod", "production/app"));
        assert!(!template_covers("prod", "prod"));
        assert!(!template_covers("prod/team", "prod/app"));
    }
}
