//! ECR's own answers where they differ from docker-registry 2.8, given by
//! [`FaultProxy`](crate::FaultProxy) in front of a rig registry, one module
//! a behaviour. Each is off in
//! [`ProxyOptions::default`](crate::ProxyOptions);
//! [`ProxyOptions::ecr`](crate::ProxyOptions::ecr) turns on PATCH 201,
//! listed repositories and long tags. Sources are those named in
//! `ecr-production-facts.md` (the team's notes).
//!
//! * **PATCH answered 201** and not forwarded (here): ECR's answer to an
//!   intermediate chunk, where the spec says 202 (aws/containers-roadmap#2831).
//! * **`NAME_UNKNOWN`** for repositories that were not created
//!   ([`Repositories`], `repositories.rs`): ECR has no implicit creation on
//!   push...
//! * ...unless a repository creation template with `CREATE_ON_PUSH` covers the
//!   name (since 2025-12;
//!   [`ProxyOptions::create_on_push`](crate::ProxyOptions::create_on_push)).
//!   A template's prefix is a namespace with an implied trailing `/` (`prod` covers
//!   `prod/app`, not `production`), `ROOT` covers every name (AWS API
//!   reference, `CreateRepositoryCreationTemplate`). The first upload POST or
//!   manifest PUT creates the repository, mutable; reads still get
//!   `NAME_UNKNOWN`.
//! * **Immutable tags** refused with 400 `TAG_INVALID`, even at the digest
//!   the tag already names (moby/buildkit#3776, aws/containers-roadmap#2380).
//! * **Short-lived tokens** ([`TokenRotation`], `tokens.rs`): rotated by
//!   request count and then refused with 401, or expiring on a clock and then
//!   refused with **403** `DENIED` "Your authorization token has expired",
//!   which is what ECR answers (deis/builder#426, CircleCI-Public/aws-ecr-orb#277,
//!   awslabs/amazon-ecr-credential-helper#7 and #679, flipt-io/flipt#3043):
//!   a client that refreshes only on 401 never recovers. [`crate::AwsFront`]
//!   hands such tokens out through `ecr:GetAuthorizationToken`.
//! * **Per-API rate quotas** ([`EcrQuotas`], `quotas.rs`; per account and
//!   region, Service Quotas "Amazon ECR"): a token bucket per API shared by
//!   all connections, burst equal to the rate. Over it: 429 `TOOMANYREQUESTS`
//!   "Rate exceeded" with **no `Retry-After`** (google/go-containerregistry#750,
//!   containerd/containerd#10447), not forwarded, and no token spent.
//! * **Referrer refusals** (`referrers.rs`): media types with parameters
//!   (`application/vnd.dev.sigstore.bundle+json;version=0.2`) are refused
//!   (aws/containers-roadmap#2306, sigstore/sigstore-js#1058), and some OCI 1.1
//!   referrer manifests (with `subject`) get 405 (aws/containers-roadmap#2783);
//!   ECR's validation failures come back as 405 `UNSUPPORTED` (openai/tart#890).
//! * **Tags of 129–300 characters** aliased to short ones upstream, and
//!   over 300 refused with `TAG_INVALID`
//!   ([`ProxyOptions::long_tags`](crate::ProxyOptions::long_tags), on in
//!   `ecr()`): see `long_tags.rs`.
//! * **Blob mounts** ([`MountBehaviour`], `mounts.rs`): off until the account
//!   setting `BLOB_MOUNTING` is enabled, and while off the client gets a plain
//!   upload session (202) instead of a mount; a caller without
//!   `ecr:GetDownloadUrlForLayer` on the source may get 403 (inferred;
//!   aws/containers-roadmap#2860).
//! * **Layers not seen yet** (`layer_lag.rs`): a manifest PUT refused with
//!   400 `BLOB_UPLOAD_UNKNOWN` "Layers with digests ... do not exist" just
//!   after its layers were uploaded, as under concurrent pushes.

mod layer_lag;
mod long_tags;
mod mounts;
mod quotas;
mod referrers;
mod repositories;
mod tokens;

use std::collections::HashMap;
use std::io;
use std::sync::Mutex;

pub use long_tags::long_tag_alias;
pub use mounts::MountBehaviour;
pub use quotas::{EcrApi, EcrQuotas};
pub use repositories::Repositories;
pub use tokens::{TokenHandle, TokenRotation};

pub(crate) use tokens::TokenState;

use super::{bump, error_json, split_repo, Shared};
use crate::wire::{respond, Head};
use quotas::QuotaState;

/// An answer the proxy gives itself.
pub(crate) struct Answer {
    pub(crate) status: &'static str,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    /// A registry error: `{"errors": [{"code": ..., "message": ...}]}`.
    pub(crate) fn error(status: &'static str, code: &str, message: &str) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: error_json(code, message),
        }
    }

    /// A plain-text body.
    pub(crate) fn text(status: &'static str, text: &str) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: text.as_bytes().to_vec(),
        }
    }

    /// Writes it whole (a HEAD gets the headers only); a JSON body is said
    /// to be JSON.
    pub(crate) fn send(&self, out: &mut impl io::Write, head: &Head) -> io::Result<()> {
        let mut headers = self.headers.clone();
        if self.body.first() == Some(&b'{') {
            headers.push(("Content-Type", "application/json".to_string()));
        }
        respond(out, head, self.status, &headers, &self.body)
    }
}

/// Quota buckets and long-tag aliases, one per proxy.
pub(crate) struct EcrState {
    pub(crate) quotas: QuotaState,
    /// Alias -> long tag, for every long tag this front aliased.
    long_tags: Mutex<HashMap<String, String>>,
}

impl EcrState {
    pub(crate) fn new(quotas: &EcrQuotas) -> Self {
        EcrState {
            quotas: QuotaState::new(quotas),
            long_tags: Mutex::new(HashMap::new()),
        }
    }
}

impl Shared {
    /// ECR's own answers, where they differ from docker-registry's. May
    /// rewrite the request (a long tag aliased, a mount made a plain
    /// upload) before it goes on.
    pub(crate) fn ecr_answer(
        &self,
        head: &mut Head,
        body: &[u8],
        auth: Option<&str>,
    ) -> io::Result<Option<Answer>> {
        if head.method == "PATCH" {
            bump(&self.counters.patches);
            if self.opts.patch_201 {
                return Ok(Some(Answer::text("201 Created", "")));
            }
        }
        if let Some(refusal) = self.alias_long_tag(head) {
            return Ok(Some(refusal));
        }
        let Some((repo, rest)) = split_repo(head.path()) else {
            return Ok(None);
        };
        let (repo, rest) = (repo.to_string(), rest.to_string());
        let manifest_put = head.method == "PUT" && rest.starts_with("manifests/");
        let upload_post = head.method == "POST" && rest.trim_end_matches('/') == "blobs/uploads";
        let existing = self.repository(&repo);
        let create =
            existing.is_none() && (manifest_put || upload_post) && self.template_for(&repo);
        if existing.is_none() && !create {
            return Ok(Some(self.name_unknown(&repo)));
        }
        if manifest_put {
            if let Some(refusal) = self.manifest_refusal(head, body) {
                bump(&self.counters.referrers_refused);
                return Ok(Some(refusal));
            }
        }
        if create {
            self.create_on_push(&repo);
        }
        if manifest_put {
            if let Some(refusal) = self.layers_not_found(&repo, body) {
                return Ok(Some(refusal));
            }
        }
        if upload_post {
            return Ok(self.mount_answer(head, &repo));
        }
        let Some(reference) = rest.strip_prefix("manifests/") else {
            return Ok(None);
        };
        if !manifest_put || !existing.unwrap_or(false) || reference.starts_with("sha256:") {
            return Ok(None);
        }
        self.immutable_tag_refusal(head, body, auth, &repo, reference)
    }

    /// The account ECR would name: moto's, else a placeholder.
    fn account(&self) -> String {
        match &self.opts.repositories {
            Repositories::Moto { account, .. } => account.clone(),
            _ => "000000000000".into(),
        }
    }

    fn region(&self) -> String {
        match &self.opts.repositories {
            Repositories::Moto { region, .. } => region.clone(),
            _ => "us-east-1".into(),
        }
    }
}
