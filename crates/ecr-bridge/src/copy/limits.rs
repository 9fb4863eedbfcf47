//! Caps on what one copy takes on, against a broken or hostile source. A
//! manifest may be 4 MiB (ECR's `PutImage` limit), room for an index that
//! lists ~30,000 manifests, or one manifest 20,000 times; and every
//! manifest's bytes wait in memory until they are pushed. Each cap is far
//! above real images (a multi-arch index with attestations holds two
//! manifests per platform; Docker, and ECR's older documented quota, allow
//! 127 layers per image), so reaching one is a permanent error naming it.

use std::collections::{HashMap, HashSet};

use crate::digest::Digest;

/// Distinct manifests (indexes, images, artifacts) one copy may visit.
pub const DEFAULT_MAX_MANIFESTS: usize = 1_000;
/// Distinct blobs (configs and layers) one copy may plan to copy: about 78
/// images at 127 layers each.
pub const DEFAULT_MAX_BLOBS: usize = 10_000;
/// Manifest bytes one copy may hold in memory: eight manifests at ECR's
/// 4 MiB limit, where real ones are a few KiB.
pub const DEFAULT_MAX_MANIFEST_BYTES: u64 = 32 * 1024 * 1024;

/// A cap of [`super::CopyOptions`] that a copy reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Manifests,
    Blobs,
    ManifestBytes,
}

impl Limit {
    /// The [`super::CopyOptions`] field that sets it.
    pub fn option(self) -> &'static str {
        match self {
            Limit::Manifests => "max_manifests",
            Limit::Blobs => "max_blobs",
            Limit::ManifestBytes => "max_manifest_bytes",
        }
    }

    /// What it counts, for the error message.
    pub fn counts(self) -> &'static str {
        match self {
            Limit::Manifests => "distinct manifests",
            Limit::Blobs => "distinct blobs",
            Limit::ManifestBytes => "bytes of manifests held in memory",
        }
    }
}

/// What one copy's plan has taken on so far, each thing counted once.
pub(super) struct Tally {
    max_manifests: usize,
    max_blobs: usize,
    max_manifest_bytes: u64,
    /// Each distinct manifest's slot: its place in discovery order.
    manifests: HashMap<Digest, usize>,
    blobs: HashSet<Digest>,
    manifest_bytes: u64,
}

impl Tally {
    pub(super) fn new(options: &super::CopyOptions) -> Tally {
        Tally {
            max_manifests: options.max_manifests,
            max_blobs: options.max_blobs,
            max_manifest_bytes: options.max_manifest_bytes,
            manifests: HashMap::new(),
            blobs: HashSet::new(),
            manifest_bytes: 0,
        }
    }

    /// The cap's value, for the error message.
    pub(super) fn max(&self, limit: Limit) -> u64 {
        match limit {
            Limit::Manifests => self.max_manifests as u64,
            Limit::Blobs => self.max_blobs as u64,
            Limit::ManifestBytes => self.max_manifest_bytes,
        }
    }

    /// The manifest's slot, and whether it is new to this copy.
    pub(super) fn manifest(&mut self, digest: &Digest) -> Result<(usize, bool), Limit> {
        if let Some(&slot) = self.manifests.get(digest) {
            return Ok((slot, false));
        }
        if self.manifests.len() >= self.max_manifests {
            return Err(Limit::Manifests);
        }
        let slot = self.manifests.len();
        self.manifests.insert(digest.clone(), slot);
        Ok((slot, true))
    }

    /// Whether the blob is new to this copy.
    pub(super) fn blob(&mut self, digest: &Digest) -> Result<bool, Limit> {
        if self.blobs.contains(digest) {
            return Ok(false);
        }
        if self.blobs.len() >= self.max_blobs {
            return Err(Limit::Blobs);
        }
        Ok(self.blobs.insert(digest.clone()))
    }

    /// A manifest's bytes, now held until it is pushed.
    pub(super) fn hold(&mut self, bytes: usize) -> Result<(), Limit> {
        let total = self.manifest_bytes.saturating_add(bytes as u64);
        if total > self.max_manifest_bytes {
            return Err(Limit::ManifestBytes);
        }
        self.manifest_bytes = total;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::copy::plan::Plan;
    use crate::copy::{CopyError, CopyOptions, ImageCopier, Stats};
    use crate::manifest::{OCI_INDEX, OCI_MANIFEST};
    use crate::registry::{self, test_server, Endpoint, RegistryClient, Repository, RetryPolicy};

    fn tally(max_manifests: usize, max_blobs: usize, max_manifest_bytes: u64) -> Tally {
        Tally::new(&CopyOptions {
            max_manifests,
            max_blobs,
            max_manifest_bytes,
            ..CopyOptions::default()
        })
    }

    #[test]
    fn given_the_same_manifest_many_times_when_counted_then_it_takes_one_slot() {
        let mut t = tally(2, 1, 10);
        let d = Digest::sha256_of(b"child");

        let first = t.manifest(&d).unwrap();
        let again: Vec<_> = (0..20_000).map(|_| t.manifest(&d).unwrap()).collect();

        assert_eq!(first, (0, true));
        assert!(again.iter().all(|&a| a == (0, false)));
    }

    #[test]
    fn given_more_distinct_things_than_a_cap_when_counted_then_that_cap_is_named() {
        let mut t = tally(2, 1, 10);
        t.manifest(&Digest::sha256_of(b"a")).unwrap();
        t.manifest(&Digest::sha256_of(b"b")).unwrap();
        t.blob(&Digest::sha256_of(b"x")).unwrap();
        t.hold(10).unwrap();

        assert_eq!(t.manifest(&Digest::sha256_of(b"c")), Err(Limit::Manifests));
        assert_eq!(
            t.blob(&Digest::sha256_of(b"x")),
            Ok(false),
            "a blob seen before is no new one"
        );
        assert_eq!(t.blob(&Digest::sha256_of(b"y")), Err(Limit::Blobs));
        assert_eq!(t.hold(1), Err(Limit::ManifestBytes));
        assert_eq!(Limit::ManifestBytes.option(), "max_manifest_bytes");
    }

    /// Manifests by digest, as a source registry serves them.
    struct Source(Vec<(Digest, &'static str, Vec<u8>)>);

    impl Source {
        fn add(&mut self, media_type: &'static str, json: String) -> Digest {
            let d = Digest::sha256_of(json.as_bytes());
            self.0.push((d.clone(), media_type, json.into_bytes()));
            d
        }

        fn image(&mut self, blobs: &[&[u8]]) -> Digest {
            let desc = |b: &[u8]| {
                format!(
                    r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}"#,
                    Digest::sha256_of(b),
                    b.len()
                )
            };
            let layers: Vec<String> = blobs[1..].iter().map(|b| desc(b)).collect();
            self.add(
                OCI_MANIFEST,
                format!(
                    r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{}]}}"#,
                    desc(blobs[0]),
                    layers.join(",")
                ),
            )
        }

        fn index(&mut self, children: &[Digest]) -> Digest {
            let listed: Vec<String> = children
                .iter()
                .map(|c| format!(r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{c}","size":1}}"#))
                .collect();
            self.add(
                OCI_INDEX,
                format!(
                    r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
                    listed.join(",")
                ),
            )
        }

        /// Serves `src`'s manifests; `dst` has none.
        async fn serve(self) -> test_server::TestServer {
            test_server::start(move |method, target| {
                let found = self.0.iter().find(|(d, _, _)| target == format!("/v2/src/manifests/{d}"));
                let (status, media_type, body): (&str, &str, &[u8]) = match found {
                    Some((_, mt, bytes)) => ("200 OK", mt, bytes),
                    None => ("404 Not Found", "application/json", b""),
                };
                let body = if method == "HEAD" { &b""[..] } else { body };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {media_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                [head.as_bytes(), body].concat()
            })
            .await
        }
    }

    fn at(url: &str, repository: &str) -> Repository {
        let timeouts = registry::Timeouts::default();
        let client = RegistryClient::new(
            registry::http_client(&timeouts).unwrap(),
            Endpoint::parse(url, true).unwrap(),
            Arc::new(registry::StaticCredentials(None)),
            RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            },
            timeouts,
        );
        Repository::new(client, repository)
    }

    async fn plan(
        options: CopyOptions,
        server: &test_server::TestServer,
        top: &Digest,
    ) -> Result<Plan, CopyError> {
        let copier = ImageCopier::new(options);
        let (src, dst) = (at(&server.url, "src"), at(&server.url, "dst"));
        copier
            .plan(&src, &dst, top.clone(), 0, &Stats::default())
            .await
    }

    #[tokio::test]
    async fn given_an_index_listing_one_child_20000_times_when_planned_then_the_child_is_asked_for_and_planned_once(
    ) {
        let mut source = Source(Vec::new());
        let child = source.image(&[b"config", b"layer", b"layer"]);
        let top = source.index(&vec![child.clone(); 20_000]);
        let server = source.serve().await;

        let plan = plan(CopyOptions::default(), &server, &top).await.unwrap();

        let planned = digests_and_depths(&plan);
        assert_eq!(planned, vec![(child.clone(), 1), (top, 0)]);
        assert_eq!(plan.blobs.len(), 2, "config and one layer");
        assert_eq!(server.count(&format!("HEAD /v2/dst/manifests/{child}")), 1);
        assert_eq!(server.count(&format!("GET /v2/src/manifests/{child}")), 1);
    }

    #[tokio::test]
    async fn given_more_distinct_children_than_max_manifests_when_planned_then_refused_naming_the_cap_before_any_child_is_read(
    ) {
        let mut source = Source(Vec::new());
        let children: Vec<Digest> = (0..10u8).map(|i| source.image(&[&[i], b"layer"])).collect();
        let top = source.index(&children);
        let server = source.serve().await;
        let options = CopyOptions {
            max_manifests: 10,
            ..CopyOptions::default()
        };

        let err = plan(options, &server, &top).await.err().expect("refused");

        assert_refused_at(&err, Limit::Manifests, 10);
        assert!(!err.is_retryable());
        assert!(
            err.to_string().contains("limit max_manifests = 10"),
            "{err}"
        );
        assert_eq!(server.count("GET /v2/src/manifests/"), 1, "only the index");
        assert_eq!(server.count("HEAD /v2/dst/"), 0);
    }

    #[tokio::test]
    async fn given_images_with_more_distinct_blobs_or_bytes_than_allowed_when_planned_then_refused_naming_that_cap(
    ) {
        let mut source = Source(Vec::new());
        let a = source.image(&[b"config", b"shared"]);
        let b = source.image(&[b"config", b"shared", b"other"]);
        let top = source.index(&[a, b]);
        let server = source.serve().await;
        let blobs = CopyOptions {
            max_blobs: 2,
            ..CopyOptions::default()
        };
        let bytes = CopyOptions {
            max_manifest_bytes: 300,
            ..CopyOptions::default()
        };

        let too_many_blobs = plan(blobs, &server, &top).await.err().expect("refused");
        let too_many_bytes = plan(bytes, &server, &top).await.err().expect("refused");

        assert_refused_at(&too_many_blobs, Limit::Blobs, 2);
        assert_refused_at(&too_many_bytes, Limit::ManifestBytes, 300);
        assert!(
            too_many_bytes.to_string().contains("max_manifest_bytes"),
            "{too_many_bytes}"
        );
    }

    #[tokio::test]
    async fn given_an_image_listed_by_the_top_index_and_by_a_nested_one_when_planned_then_it_is_planned_once_below_both(
    ) {
        let mut source = Source(Vec::new());
        let image = source.image(&[b"config", b"layer"]);
        let nested = source.index(std::slice::from_ref(&image));
        let top = source.index(&[image.clone(), nested.clone()]);
        let server = source.serve().await;

        let plan = plan(CopyOptions::default(), &server, &top).await.unwrap();

        // Pushed deepest first: the image before the nested index that lists it.
        let planned = digests_and_depths(&plan);
        assert_eq!(planned, vec![(image.clone(), 2), (nested, 1), (top, 0)]);
        assert_eq!(server.count(&format!("GET /v2/src/manifests/{image}")), 1);
    }

    /// Asserts that `err` is the refusal for reaching `limit`, set to `max`.
    fn assert_refused_at(err: &CopyError, limit: Limit, max: u64) {
        assert!(
            matches!(
                err,
                CopyError::LimitExceeded { limit: l, max: m, .. } if *l == limit && *m == max
            ),
            "{err:?}"
        );
    }

    /// The planned manifests in push order, as (digest, depth).
    fn digests_and_depths(plan: &Plan) -> Vec<(Digest, usize)> {
        plan.manifests
            .iter()
            .map(|m| (m.digest.clone(), m.depth))
            .collect()
    }
}
