//! Backfill past one invocation: a registry far larger than one short
//! invocation can list, through the AWS front paging DescribeRepositories
//! and DescribeImages as ECR does (pages capped small so every listing spans
//! several), every invocation given a short deadline so that listing must
//! hand on to continuation steps.
//!
//! Sizes: `BACKFILL_SCALE_IMAGES` image records (default 400) over
//! `BACKFILL_SCALE_REPOSITORIES` repositories (default 4), of which
//! `BACKFILL_SCALE_REAL` (default 3) are real images in the source
//! registry; `make scale` runs 20,000 / 200 / 50 with
//! `BACKFILL_SCALE_WORKERS` (default 4) at 16. The records are moto's
//! (what DescribeImages lists): their work items fail permanently at the
//! source (no such manifest). The first `HANDLED_RECORDS` of them go
//! through the handler to show that; the drain counts the rest in the run
//! itself, as the handler would, since what grows with size is listing and
//! enqueuing, and a handler call per record (about 0.5 s, most of it the
//! source's retries) would turn 20,000 into hours.
//!
//! Stand-in: moto cannot run Lambda, so the SQS event source mapping is
//! played by `drain` (as in tests/backfill.rs), each invocation with its
//! own deadline.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::stage::{role, Stage, REGION, SOURCE, TARGET};
use ecr_bridge_aws::backfill::ItemResult;
use ecr_bridge_aws::deadline::work_deadline;
use ecr_bridge_aws::replicator::Replicator;
use futures_util::StreamExt;
use image_replicator::config::Config;
use image_replicator::handler;
use rig::{assert_same_image, build_layout, skopeo_push, ImageSpec};
use serde_json::{json, Value};

/// A listing invocation's time: shorter than a repository's listing, so
/// that listing must continue itself. Each DescribeImages page is held
/// back `PAGE_DELAY` (as a slow ECR would answer), so a repository's 10
/// pages take at least 10 s on any machine, past this invocation's 6 s of
/// listing; the 2 s margin leaves room for pages slower than the slowest
/// so far on a loaded machine.
const LISTING_INVOCATION: Duration = Duration::from_secs(8);
const PAGE_DELAY: Duration = Duration::from_secs(1);
/// A work item's: enough for a first copy into a new repository.
const INVOCATION: Duration = Duration::from_secs(5);
const PAGE_CAP: usize = 10;
/// Records (work items without content) taken through the handler; the
/// rest are counted failed by the drain.
const HANDLED_RECORDS: usize = 200;
const RUN_TABLE: &str = "ecr-bridge-backfill-runs";

fn mapping() -> Value {
    json!({"version": 1, "rules": [{
        "name": "teams", "match": {"prefix": "team-"},
        "destinations": [{"account": TARGET, "region": REGION, "role_arn": role(TARGET), "repository": "mirror/{suffix}"}],
        "create_repository": true
    }]})
}

/// What the drain saw: per work item digest, the messages that carried it;
/// listing steps; redeliveries; the longest invocation.
#[derive(Default)]
struct Seen {
    items: HashMap<String, HashSet<String>>,
    steps: HashSet<String>,
    invocations: usize,
    /// Work items without content taken off the queue so far.
    records_handled: usize,
    retried: usize,
    longest: Duration,
    /// Invocations that ran past their time: (took, allowed).
    overran: Vec<(Duration, Duration)>,
}

async fn drain(
    replicator: &(Replicator, Config),
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    real: &HashSet<String>,
    workers: usize,
    seen: &Mutex<Seen>,
) {
    let workers = (0..workers).map(|_| async move {
        let mut idle = 0;
        while idle < 3 {
            let got = sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(1)
                .visibility_timeout(120)
                .send()
                .await
                .expect("receive");
            let Some(message) = got.messages().first() else {
                idle += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            idle = 0;
            let body = message.body().unwrap();
            let parsed: Value = serde_json::from_str(body).unwrap();
            let event = json!({"Records": [{
                "messageId": message.message_id().unwrap(),
                "receiptHandle": message.receipt_handle().unwrap(),
                "body": body, "attributes": {}, "messageAttributes": {},
                "eventSource": "aws:sqs", "awsRegion": REGION,
                "eventSourceARN": format!("arn:aws:sqs:{REGION}:{SOURCE}:ecr-bridge-backfill"),
            }]});
            let (r, c) = replicator;
            let digest = parsed["detail"]["image-digest"].as_str();
            let record_only = digest.is_some_and(|d| !real.contains(d)) && {
                let mut seen = seen.lock().unwrap();
                seen.records_handled += 1;
                seen.records_handled > HANDLED_RECORDS
            };
            if record_only {
                // What the handler records for a record without content.
                let run = ecr_bridge_aws::work_queue::run_of(&parsed)
                    .expect("run field")
                    .expect("a run's work item");
                r.backfill()
                    .record(&run, ItemResult::Failed)
                    .await
                    .expect("record");
            }
            let started = Instant::now();
            let allowed = if parsed.get("backfill_step").is_some() {
                LISTING_INVOCATION
            } else {
                INVOCATION
            };
            let deadline = work_deadline(started, allowed);
            let response = if record_only {
                json!({"batchItemFailures": []})
            } else {
                handler::handle_until(r, c, event, Some(deadline))
                    .await
                    .expect("sqs batch")
            };
            let took = started.elapsed();
            {
                let mut seen = seen.lock().unwrap();
                seen.invocations += usize::from(!record_only);
                seen.longest = seen.longest.max(took);
                if took > allowed {
                    seen.overran.push((took, allowed));
                }
                let id = message.message_id().unwrap().to_string();
                match parsed["detail"]["image-digest"].as_str() {
                    Some(d) => {
                        seen.items.entry(d.to_string()).or_default().insert(id);
                    }
                    None => {
                        seen.steps.insert(id);
                    }
                }
            }
            let handle = message.receipt_handle().unwrap();
            if response["batchItemFailures"] == json!([]) {
                sqs.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .expect("delete");
            } else {
                // As the event source mapping does: back to the queue. (A
                // first copy into a new target repository can outlast so
                // short an invocation; the retry finds its blobs there.)
                seen.lock().unwrap().retried += 1;
                sqs.change_message_visibility()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .send()
                    .await
                    .expect("visibility");
            }
        }
    });
    futures_util::future::join_all(workers).await;
}

/// A manifest record for moto: distinct per `i`, digest of its bytes.
fn record(i: usize) -> (String, String) {
    let config = ecr_bridge::Digest::sha256_of(format!("config {i}").as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": 2},
        "layers": []
    })
    .to_string();
    let digest = ecr_bridge::Digest::sha256_of(manifest.as_bytes()).to_string();
    (digest, manifest)
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_registry_larger_than_one_invocation_when_backfilled_with_short_deadlines_then_every_image_is_enqueued_once_and_the_real_ones_land(
) {
    let images = common::env_size("BACKFILL_SCALE_IMAGES", 400);
    let repositories = common::env_size("BACKFILL_SCALE_REPOSITORIES", 4);
    let real = common::env_size("BACKFILL_SCALE_REAL", 3);
    let workers = common::env_size("BACKFILL_SCALE_WORKERS", 4);
    let per_repository = images / repositories;
    assert!(
        per_repository > real,
        "the first repository holds the real images"
    );

    // Given: `images` records over `repositories` repositories, `real` of
    // them pushed to the source registry for real; one repository no rule
    // routes.
    let stage = Stage::builder()
        .accounts(&[SOURCE, TARGET])
        .ecr_page_cap(PAGE_CAP)
        .build();
    let sdk = stage.sdk().await;
    let ecr = aws_sdk_ecr::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    stage.aws().delay("DescribeImages", PAGE_DELAY);
    let queue_url = common::create_queue(&sdk, "ecr-bridge-backfill").await;
    common::backfill::create_run_table(&sdk, RUN_TABLE).await;
    let setup = Instant::now();
    for r in 0..repositories {
        ecr.create_repository()
            .repository_name(format!("team-{r:04}"))
            .send()
            .await
            .unwrap();
    }
    ecr.create_repository()
        .repository_name("other-unrouted")
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut real_images = Vec::new();
    for i in 0..real {
        let tag = format!("real-{i}");
        let layout = build_layout(
            &dir.path().join(&tag),
            &tag,
            &ImageSpec::single(&[1024 + i as u64]).with_seed(7000 + i as u64),
        );
        skopeo_push(&layout, stage.source(), &format!("team-0000:{tag}"));
        ecr.put_image()
            .repository_name("team-0000")
            .image_tag(&tag)
            .image_digest(&layout.digest)
            .image_manifest(String::from_utf8(layout.manifest_bytes()).unwrap())
            .image_manifest_media_type(&layout.media_type)
            .send()
            .await
            .expect("put_image");
        real_images.push((tag, layout.digest.clone()));
    }
    let mut expected: Vec<String> = real_images.iter().map(|(_, d)| d.clone()).collect();
    let fakes: Vec<(usize, usize)> = (0..repositories)
        .flat_map(|r| {
            let n = if r == 0 {
                per_repository - real
            } else {
                per_repository
            };
            (0..n).map(move |k| (r, k))
        })
        .collect();
    let recorded: Vec<String> = futures_util::stream::iter(fakes)
        .map(|(r, k)| {
            let ecr = ecr.clone();
            async move {
                let (digest, manifest) = record(r * 1_000_000 + k);
                ecr.put_image()
                    .repository_name(format!("team-{r:04}"))
                    .image_tag(format!("t{k}"))
                    .image_digest(&digest)
                    .image_manifest(manifest)
                    .image_manifest_media_type("application/vnd.oci.image.manifest.v1+json")
                    .send()
                    .await
                    .expect("put_image");
                digest
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    expected.extend(recorded);
    let total = expected.len();
    eprintln!(
        "setup: {total} image records in {repositories} repositories in {:?}",
        setup.elapsed()
    );

    let replicator = stage
        .replicator_with_env(&[
            ("MAPPING_JSON", &mapping().to_string()),
            ("BACKFILL_QUEUE_URL", &queue_url),
            ("BACKFILL_TABLE", RUN_TABLE),
            ("MAX_ATTEMPTS", "2"),
        ])
        .await;
    let (r, c) = (&replicator.0, &replicator.1);
    let request = |action: &str| json!({"backfill": {"action": action}});

    // When: started with a short deadline, joined by a second start, and
    // the queue drained by short invocations.
    let started = Instant::now();
    let start = handler::handle_until(
        r,
        c,
        request("start"),
        Some(work_deadline(Instant::now(), LISTING_INVOCATION)),
    )
    .await
    .expect("start")["summary"]
        .clone();
    let start_took = started.elapsed();
    let second = handler::handle(r, c, request("start"))
        .await
        .expect("second start")["summary"]
        .clone();
    assert_eq!(second["run"]["id"], start["run"]["id"], "{second}");
    assert_eq!(second["run"]["joined"], true, "{second}");

    let seen = Mutex::new(Seen::default());
    let real_digests: HashSet<String> = real_images.iter().map(|(_, d)| d.clone()).collect();
    drain(&replicator, &sqs, &queue_url, &real_digests, workers, &seen).await;
    let took = started.elapsed();
    let seen = seen.into_inner().unwrap();
    let mut histogram: std::collections::BTreeMap<String, usize> = Default::default();
    for call in stage.aws().calls_since(0) {
        *histogram.entry(call.operation.clone()).or_default() += 1;
    }
    eprintln!("AWS calls: {histogram:?}");
    let describe_pages = stage
        .aws()
        .calls_since(0)
        .iter()
        .filter(|c| c.operation.ends_with("DescribeImages"))
        .count();
    eprintln!(
        "backfill scale: {total} images in {repositories} repositories (pages of {PAGE_CAP}): start {start_took:?}; \
         {} listing steps + {} work items ({} counted by the drain) in {} invocations ({} retried; listing steps allowed {LISTING_INVOCATION:?}, work items {INVOCATION:?}; longest {:?}); {describe_pages} DescribeImages pages; \
         all done in {took:?} ({:.0} invocations/s with {workers} workers)",
        seen.steps.len(),
        seen.items.len(),
        seen.records_handled.saturating_sub(HANDLED_RECORDS),
        seen.invocations,
        seen.retried,
        seen.longest,
        seen.invocations as f64 / took.as_secs_f64()
    );

    // Then: every image enqueued exactly once, listing continued across
    // invocations, none past its deadline, and the run's counts add up.
    let mut missing = 0;
    for digest in &expected {
        match seen.items.get(digest).map(HashSet::len) {
            Some(1) => {}
            Some(n) => panic!("{digest} enqueued {n} times"),
            None => missing += 1,
        }
    }
    assert_eq!(missing, 0, "images never enqueued");
    assert_eq!(seen.items.len(), total, "nothing else enqueued");
    let pages_per_repository = per_repository.div_ceil(PAGE_CAP);
    assert!(
        seen.steps.len() > repositories,
        "listing continued itself: {} steps for {repositories} repositories of {pages_per_repository} pages",
        seen.steps.len()
    );
    assert_eq!(seen.overran, vec![], "invocations past their time");
    assert!(
        start_took < LISTING_INVOCATION,
        "the start took {start_took:?}"
    );

    let status = handler::handle(r, c, request("status"))
        .await
        .expect("status")["summary"]
        .clone();
    assert_eq!(status["run"]["state"], "finished", "{status}");
    assert_eq!(status["repositories_matched"], repositories, "{status}");
    assert_eq!(status["repositories_unmatched"], 1, "{status}");
    assert_eq!(status["repositories_listed"], repositories, "{status}");
    assert_eq!(status["listings_open"], 0, "{status}");
    assert_eq!(status["images_found"], total, "{status}");
    assert_eq!(status["enqueued"], total, "{status}");
    assert_eq!(status["copied"], real, "{status}");
    // The records without content fail for good at the source.
    assert_eq!(status["failed"], total - real, "{status}");

    for (tag, digest) in &real_images {
        assert_same_image(
            stage.source(),
            &format!("team-0000:{tag}"),
            stage.target(),
            &format!("mirror/0000:{tag}"),
        );
        let head = common::client(stage.target())
            .repository("mirror/0000")
            .manifest_head(&common::tag(tag))
            .await
            .unwrap()
            .expect("in the target");
        assert_eq!(
            head.digest.map(|d| d.to_string()).as_deref(),
            Some(digest.as_str())
        );
    }
}
