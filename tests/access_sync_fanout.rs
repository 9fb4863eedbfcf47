//! The full reconcile past one invocation: a users table and a registry
//! larger than one short invocation can reconcile, scanned in 4 parallel
//! segments and swept page by page, every step given a short deadline so
//! that segments and the sweep must hand on to continuation steps.
//!
//! Sizes: `RECONCILE_SCALE_USERS` users (default 240; `make scale` sets
//! more, with larger pages), each with 1-3 rows. Scan pages are capped by `SCAN_PAGE_SIZE`,
//! DescribeRepositories pages by the AWS front's ECR page cap, and both
//! calls are held back `PAGE_DELAY` a page (as a loaded table or ECR would
//! answer), so every segment and the sweep outlast one invocation on any
//! machine.
//!
//! Stand-in: moto cannot run Lambda, so the reconcile queue's event source
//! mapping is played by `drain`: 4 workers (the template's
//! `MaximumConcurrency`), one message an invocation, each with its deadline.

mod access_rig;
mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use access_rig::steps::gen3_policy;
use access_rig::{repo, row_with, s, AccessStage, PREFIX, TABLE};
use access_sync::config::Config;
use access_sync::handler::{self, Handled};
use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use ecr_bridge_aws::access_sync::AccessSync;
use ecr_bridge_aws::deadline::work_deadline;
use futures_util::StreamExt;
use serde_json::{json, Value};

/// A step's invocation: 4.5 s of work, shorter than any segment's scan (18
/// or more pages of at least `PAGE_DELAY`: 7.2 s) or the sweep (14 pages),
/// with 1.5 s for a page slower than the slowest so far on a loaded machine.
/// `RECONCILE_SCALE_INVOCATION` seconds for larger runs, whose pages are
/// larger.
const STEP_INVOCATION: Duration = Duration::from_secs(6);

fn step_invocation() -> Duration {
    let seconds = common::env_size(
        "RECONCILE_SCALE_INVOCATION",
        STEP_INVOCATION.as_secs() as usize,
    );
    Duration::from_secs(seconds as u64)
}

const PAGE_DELAY: Duration = Duration::from_millis(400);
/// Rows per Scan page and repositories per DescribeRepositories page
/// (`RECONCILE_SCALE_SCAN_PAGE`, `RECONCILE_SCALE_REPOSITORY_PAGE` for
/// larger runs).
const SCAN_PAGE: usize = 6;
const REPOSITORY_PAGE: usize = 20;
const WORKERS: usize = 4;
const RUN_TABLE: &str = "ecr-bridge-reconcile-runs";
const QUEUE: &str = "ecr-bridge-reconcile";

fn account(n: usize) -> String {
    format!("{:012}", 100_000_000_000u64 + n as u64)
}

/// What the table holds, and what the registry held before the run.
struct Seeded {
    users: Vec<String>,
    /// Repositories under the prefix whose users have no row.
    orphans: Vec<String>,
    /// Users whose rows grant nothing, but whose repository granted.
    lapsed: Vec<String>,
}

/// User i: 1-3 rows; every 5th has only a Trial row (grants nothing) and
/// a repository that still grants an old account; every 7th a repository
/// granting a stale account; one orphan for every 10 users, granting; every
/// 3rd a name two user ids share.
async fn seed(stage: &AccessStage, n: usize) -> Seeded {
    // ".com" escapes to "-2ecom", which "\u{2ec}om" escapes to as well: a
    // third of the names stand for two user ids (converged by Query).
    let users: Vec<String> = (0..n)
        .map(|i| {
            let domain = if i % 3 == 0 { "x.com" } else { "x.io" };
            format!("u{i:05}@{domain}")
        })
        .collect();
    let mut items = Vec::new();
    let mut lapsed = Vec::new();
    for (i, user) in users.iter().enumerate() {
        if i % 5 == 0 {
            items.push(row_with(user, "ws-0", Some(s(&account(i))), "Trial"));
            lapsed.push(user.clone());
            continue;
        }
        for w in 0..(i % 3 + 1) {
            items.push(row_with(
                user,
                &format!("ws-{w}"),
                Some(s(&account(i * 10 + w))),
                "Direct Pay",
            ));
        }
    }
    let ddb = stage.dynamodb().await;
    for chunk in items.chunks(25) {
        let writes = chunk
            .iter()
            .map(|item| {
                WriteRequest::builder()
                    .put_request(
                        PutRequest::builder()
                            .set_item(Some(item.clone()))
                            .build()
                            .unwrap(),
                    )
                    .build()
            })
            .collect();
        ddb.batch_write_item()
            .request_items(TABLE, writes)
            .send()
            .await
            .expect("batch write");
    }
    let orphans: Vec<String> = (0..n / 10)
        .map(|i| {
            format!(
                "{PREFIX}/gone{i:04}-40x-2e{}",
                if i % 2 == 0 { "com" } else { "io" }
            )
        })
        .collect();
    let repositories: Vec<(String, Option<String>)> = users
        .iter()
        .enumerate()
        .map(|(i, user)| {
            let policy = if i % 5 == 0 {
                Some(gen3_policy(&account(i)))
            } else if i % 7 == 0 {
                Some(gen3_policy("999999999999"))
            } else {
                None
            };
            (repo(user), policy)
        })
        .chain(
            orphans
                .iter()
                .map(|o| (o.clone(), Some(gen3_policy("777777777777")))),
        )
        .collect();
    futures_util::stream::iter(repositories)
        .for_each_concurrent(8, |(name, policy)| async move {
            stage.create_repository(&name).await;
            if let Some(p) = policy {
                stage.set_policy(&name, &p).await;
            }
        })
        .await;
    Seeded {
        users,
        orphans,
        lapsed,
    }
}

async fn create_queue(sqs: &aws_sdk_sqs::Client) -> String {
    sqs.create_queue()
        .queue_name(QUEUE)
        .send()
        .await
        .expect("create the reconcile queue")
        .queue_url()
        .expect("queue url")
        .to_string()
}

#[derive(Default)]
struct Drained {
    invocations: usize,
    segment_steps: usize,
    sweep_steps: usize,
    continued: usize,
    /// The longest a step took, against `STEP_INVOCATION`.
    longest: Duration,
    retried: usize,
    duplicates: usize,
}

/// Plays the reconcile queue's event source mapping until the queue is
/// empty: `WORKERS` at once, one message an invocation, each with a
/// deadline `STEP_INVOCATION` away. The first message is delivered twice
/// (SQS delivers at least once).
async fn drain(
    sync: &AccessSync,
    config: &Config,
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
) -> Drained {
    let drained = Mutex::new(Drained::default());
    let duplicated = Mutex::new(false);
    futures_util::stream::iter(0..WORKERS)
        .for_each_concurrent(WORKERS, |_| async {
            let mut idle_since: Option<Instant> = None;
            loop {
                let got = sqs
                    .receive_message()
                    .queue_url(queue_url)
                    .max_number_of_messages(1)
                    .visibility_timeout(60)
                    .send()
                    .await
                    .expect("receive");
                let Some(message) = got.messages().first() else {
                    // Another worker's step may still enqueue more.
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > step_invocation() + Duration::from_secs(2) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                idle_since = None;
                let body = message.body().unwrap().to_string();
                let event = json!({"Records": [{
                    "messageId": message.message_id().unwrap(),
                    "receiptHandle": message.receipt_handle().unwrap(),
                    "body": body,
                    "attributes": {}, "messageAttributes": {},
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ecr-bridge-reconcile",
                    "awsRegion": "us-east-1"
                }]});
                let twice = {
                    let mut d = duplicated.lock().unwrap();
                    !std::mem::replace(&mut *d, true)
                };
                for _ in 0..if twice { 2 } else { 1 } {
                    let started = Instant::now();
                    let deadline = work_deadline(started, step_invocation());
                    let (handled, metrics) =
                        handler::handle_measured_until(sync, config, event.clone(), Some(deadline))
                            .await;
                    let took = started.elapsed();
                    let Ok(Handled::Steps { response, reports }) = handled else {
                        panic!("a reconcile step batch answers: {handled:?}")
                    };
                    let failed = !response.batch_item_failures.is_empty();
                    let duplicate = reports.iter().any(|r| r.duplicate);
                    if reports.is_empty() {
                        println!("step without a report: {}", metrics.to_json());
                    }
                    let mut d = drained.lock().unwrap();
                    d.invocations += 1;
                    d.longest = d.longest.max(took);
                    if failed {
                        d.retried += 1;
                    }
                    if duplicate {
                        d.duplicates += 1;
                        continue;
                    }
                    if body.contains("\"segment\"") {
                        d.segment_steps += 1;
                        if body.contains("\"start\"") {
                            d.continued += 1;
                        }
                    } else {
                        d.sweep_steps += 1;
                        if body.contains("\"next_token\"") {
                            d.continued += 1;
                        }
                    }
                }
                sqs.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(message.receipt_handle().unwrap())
                    .send()
                    .await
                    .expect("delete");
            }
        })
        .await;
    drained.into_inner().unwrap()
}

async fn start(sync: &AccessSync, config: &Config) -> Value {
    handler::handle(sync, config, json!({"reconcile": {}}))
        .await
        .expect("a full reconcile starts")["reconcile_run"]
        .clone()
}

async fn run_item(stage: &AccessStage) -> HashMap<String, String> {
    let out = stage
        .dynamodb()
        .await
        .get_item()
        .table_name(RUN_TABLE)
        .key("run", s("reconcile"))
        .consistent_read(true)
        .send()
        .await
        .expect("get the run");
    out.item()
        .expect("a run item")
        .iter()
        .map(|(k, v)| {
            let text = v.as_s().or_else(|_| v.as_n()).cloned().unwrap_or_default();
            (k.clone(), text)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn given_a_table_and_registry_larger_than_one_invocation_when_fully_reconciled_in_segments_then_policies_equal_the_table_and_orphans_are_revoked(
) {
    let n = common::env_size("RECONCILE_SCALE_USERS", 240);
    let scan_page = common::env_size("RECONCILE_SCALE_SCAN_PAGE", SCAN_PAGE).to_string();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(ecr_bridge_aws::logging::filter("warn"))
        .with_test_writer()
        .try_init();
    let stage = AccessStage::with_page_cap(common::env_size(
        "RECONCILE_SCALE_REPOSITORY_PAGE",
        REPOSITORY_PAGE,
    ))
    .await;
    let seeding = Instant::now();
    let seeded = seed(&stage, n).await;
    let sdk = stage.sdk().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue_url = create_queue(&sqs).await;
    common::backfill::create_run_table(&sdk, RUN_TABLE).await;
    stage.aws().delay("Scan", PAGE_DELAY);
    stage.aws().delay("DescribeRepositories", PAGE_DELAY);
    let (sync, config) = stage
        .sync(&[
            ("SCAN_PAGE_SIZE", scan_page.as_str()),
            ("RECONCILE_QUEUE_URL", queue_url.as_str()),
            ("RECONCILE_TABLE", RUN_TABLE),
        ])
        .await;

    // When: a start, a second start while it runs, then every step.
    let first = start(&sync, &config).await;
    let joined = start(&sync, &config).await;
    assert_eq!(first["joined"], false, "{first}");
    assert_eq!(joined["joined"], true, "{joined}");
    assert_eq!(
        joined["run"], first["run"],
        "the second start joins the first"
    );
    println!(
        "{n} users seeded in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    let began = Instant::now();
    let drained = drain(&sync, &config, &sqs, &queue_url).await;
    println!(
        "{n} users: {} invocations ({} segment, {} sweep, {} continuations, {} retried) in {:.1} s, longest {:.2} s",
        drained.invocations,
        drained.segment_steps,
        drained.sweep_steps,
        drained.continued,
        drained.retried,
        began.elapsed().as_secs_f64(),
        drained.longest.as_secs_f64()
    );

    // Then: the run finished, having seen every user once (the step
    // delivered twice ran once).
    let run = run_item(&stage).await;
    println!("run: {run:?}");
    assert_eq!(run["state"], "finished", "{run:?}");
    assert_eq!(run["segments_open"], "0", "{run:?}");
    assert_eq!(run["users"], n.to_string(), "{run:?}");
    assert_eq!(drained.duplicates, 1, "the redelivered step was skipped");
    assert_eq!(run["failed"], "0", "{run:?}");
    assert_eq!(drained.retried, 0);
    assert!(
        drained.continued >= WORKERS,
        "every segment outlasts one invocation: {} continuations",
        drained.continued
    );
    assert!(drained.sweep_steps >= 2, "the sweep continued itself");

    // Every user's policy is what the table grants; lapsed users and
    // orphans are revoked.
    futures_util::stream::iter(&seeded.users)
        .for_each_concurrent(8, |user| {
            let stage = &stage;
            async move {
                let want = stage.desired(user).await;
                assert_eq!(stage.granted(&repo(user)).await, want, "{user}");
            }
        })
        .await;
    for user in &seeded.lapsed {
        assert!(stage.desired(user).await.is_empty());
    }
    let granting_orphans: BTreeSet<String> = futures_util::stream::iter(&seeded.orphans)
        .filter_map(|o| {
            let stage = &stage;
            async move { (!stage.granted(o).await.is_empty()).then(|| o.clone()) }
        })
        .collect()
        .await;
    assert!(granting_orphans.is_empty(), "{granting_orphans:?}");
    assert!(
        drained.longest < step_invocation(),
        "a step ran {:.2} s of a {:.0} s invocation",
        drained.longest.as_secs_f64(),
        step_invocation().as_secs_f64()
    );

    // When: a second full reconcile of the same table. Then: no write.
    let mark = stage.aws().mark();
    let second = start(&sync, &config).await;
    assert_eq!(second["joined"], false, "a finished run is not joined");
    assert_ne!(second["run"], first["run"]);
    let began = Instant::now();
    let again = drain(&sync, &config, &sqs, &queue_url).await;
    let run = run_item(&stage).await;
    println!(
        "second run: {} invocations in {:.1} s; run: {run:?}",
        again.invocations,
        began.elapsed().as_secs_f64()
    );
    assert_eq!(run["state"], "finished", "{run:?}");
    assert_eq!(run["writes"], "0", "{run:?}");
    for write in [
        "SetRepositoryPolicy",
        "DeleteRepositoryPolicy",
        "CreateRepository",
    ] {
        assert_eq!(stage.aws().count_since(mark, write), 0, "{write}");
    }
}
