"""Full reconcile at scale, for scripts/bench.py (row 11): access sync's
fanned-out full reconcile over a users table of N users.

Per size, a moto of its own (bench_backfill's Moto: moto_server from the
project's venv) holds the users table as tests/access_rig/stage.rs makes it
(`gen3-pay-models`, hash `user_id`, range `bmh_workspace_id`; made by
scripts/lib/local_aws.py create-users-table), seeded with BatchWriteItem, 25
rows a call: users `u00000@x.io`, `u00001@x.io`, ...; 4 in 5 have one
"Direct Pay" row (`ws-0`, a 12-digit account, request_status "active"), and
one in 5 of all users also a "Trial" row (`ws-1`); the other 1 in 5 have only
a "Trial" row, which grants nothing. That is 1.2 rows a user. In the same
(moto's default) account, the function's own (no ECR_ROLE_ARN), there is a
repository `nextflow-approved/<escape(user_id)>` for every user, plus N / 10
orphans under the prefix (`gone00000-40x-2eio`, ...: user ids with no row).
The Trial-only users' repositories still grant their old account and the
orphans grant 777777777777, in Gen3's statement (Sid AllowCrossAccountPull,
as tests/access_rig/steps.rs `gen3_policy`). CreateRepository and
SetRepositoryPolicy go through moto's HTTP API 8 at a time, as
bench_backfill seeds. The reconcile queue (SQS) and the run table
(local_aws.py create-backfill-table: key `run`, string) are made in moto.

The release access-sync runs against bench_backfill's Lambda Runtime API
stand-in with RECONCILE_QUEUE_URL, RECONCILE_TABLE and RECONCILE_SEGMENTS=4,
each invocation given the template's default AccessSyncTimeout (300 s) and
memory (256 MB). A pass is the start event `{"reconcile": {}}`, then every
message on the reconcile queue (`{"reconcile_step": ...}`), one at a time, as
an SQS event of one record (the shape of tests/access_sync_fanout.rs
`drain`), each deleted after its invocation (or made visible again when it
failed, as the event source mapping does), until the queue is empty. Then the
run item (GetItem, `run` = "reconcile") gives the run's own counts. One
invocation at a time and nothing else running, so the time an invocation
took (event handed out to answer received: what Lambda bills) is the
function's and moto's alone. Each pass is a fresh process (a cold container):
its peak RSS (VmHWM) and CPU time are that pass's. moto's CPU time over the
pass is taken too: most of the Lambda time is moto answering, on the same
cores.

Two passes per size: "changed" (every granting user's repository has no
policy yet: granted; the Trial-only users' and the orphans' still grant:
revoked by the sweep), then "unchanged" (the same table again: no write). A
pass whose run is not "finished", that saw another number of users, failed
a user or a step, or ran an invocation past its 300 s is NOT MET; so is the
changed pass when its granted / revoked counts or a sample of policies read
back afterwards are not what the table says, and the unchanged pass when it
wrote anything.

moto runs as scripts/lib/moto_server.py: a Query reads the user's own rows
(stock moto 5.2 sorted the whole table for each, which made this row's time
grow as N squared), and DescribeRepositories answers pages of `maxResults`
(1,000, what the sweep asks) as ECR does. moto's Scan pages are DynamoDB's
1 MB (about 3,000 rows of these a segment page from 10,000 users on), so a
segment step holds at most one such page. moto is still the bottleneck: its
CPU time over a pass is most of the Lambda time. The calls, writes, peak RSS
and the function's CPU time are the function's own.

The run's `calls` counts every call, the sweep's look-up Queries included.
"""

import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import bench_backfill
from bench_backfill import Moto, MotoError, Runtime, local_aws, proc_figures
from bench_copy import ROOT, TARGET, log

ACCESS_SYNC = os.path.join(TARGET, "release", "access-sync")
REGION = bench_backfill.REGION
ACCOUNT = bench_backfill.ACCOUNT  # moto's default account: the function's own, holding the repositories
TABLE = "gen3-pay-models"
QUEUE = "ecr-bridge-reconcile"
RUN_TABLE = "ecr-bridge-reconcile-runs"
PREFIX = "nextflow-approved"
SID = "AllowCrossAccountPull"
SEGMENTS = 4
SEED_THREADS = bench_backfill.SEED_THREADS
ORPHAN_ACCOUNT = "777777777777"
# The template's AccessSyncTimeout and AccessSyncMemorySize defaults.
INVOCATION_S = 300
MEMORY_MB = 256
GEN3_ACTIONS = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetAuthorizationToken",
                "ecr:GetDownloadUrlForLayer"]
KEPT = set("abcdefghijklmnopqrstuvwxyz0123456789")

# bench_backfill's Moto speaks ECR and SQS; the users and run tables need DynamoDB too.
bench_backfill.SERVICES.setdefault("dynamodb", ("DynamoDB_20120810", "1.0"))


def escape(user_id):
    """Gen3's escape (crates/ecr-bridge/src/access/naming.rs): [a-z0-9] kept,
    every other code point `-` and its lowercase hex, at least 2 digits."""
    return "".join(c if c in KEPT else f"-{ord(c):02x}" for c in user_id)


def account(i):
    return f"{100_000_000_000 + i:012d}"


def gen3_policy(acct):
    """The policy Gen3's ecr-access-job wrote (tests/access_rig/steps.rs)."""
    return json.dumps({"Version": "2008-10-17", "Statement": [{
        "Sid": SID, "Effect": "Allow", "Principal": {"AWS": [f"arn:aws:iam::{acct}:root"]},
        "Action": GEN3_ACTIONS}]}, indent=2)


def row(user, workspace, acct, kind):
    return {"user_id": {"S": user}, "bmh_workspace_id": {"S": workspace}, "account_id": {"S": acct},
            "workspace_type": {"S": kind}, "request_status": {"S": "active"}}


def seed(moto, n):
    """The table and the registry (see the module's doc); what they hold."""
    width = max(5, len(str(n - 1)))
    users = [f"u{i:0{width}}@x.io" for i in range(n)]
    rows, granting, lapsed = [], {}, []
    for i, user in enumerate(users):
        if i % 5 == 0:
            rows.append(row(user, "ws-0", account(i), "Trial"))
            lapsed.append(i)
            continue
        rows.append(row(user, "ws-0", account(i), "Direct Pay"))
        granting[i] = account(i)
        if i % 5 == 1:
            rows.append(row(user, "ws-1", account(n + i), "Trial"))
    started = time.monotonic()

    def write(chunk):
        request = {TABLE: [{"PutRequest": {"Item": item}} for item in chunk]}
        for _ in range(20):
            left = moto.call("dynamodb", "BatchWriteItem", {"RequestItems": request}).get("UnprocessedItems") or {}
            if not left.get(TABLE):
                return
            request = left
            time.sleep(0.05)
        raise SystemExit("BatchWriteItem keeps leaving items unprocessed")

    with ThreadPoolExecutor(SEED_THREADS) as pool:
        list(pool.map(write, [rows[k:k + 25] for k in range(0, len(rows), 25)]))
    log(f"  {len(rows):,} rows for {n:,} users written in {time.monotonic() - started:.0f} s (BatchWriteItem of 25)")

    orphans = [f"{PREFIX}/gone{i:0{width}}-40x-2eio" for i in range(n // 10)]
    repos = [(f"{PREFIX}/{escape(u)}", gen3_policy(account(i)) if i % 5 == 0 else None)
             for i, u in enumerate(users)]
    repos += [(o, gen3_policy(ORPHAN_ACCOUNT)) for o in orphans]
    done = [0]
    lock = threading.Lock()
    started = time.monotonic()
    step = max(len(repos) // 10, 2000)

    def create(item):
        name, policy = item
        try:
            moto.call("ecr", "CreateRepository", {"repositoryName": name})
        except MotoError as e:  # a retried call that had landed
            if e.kind != "RepositoryAlreadyExistsException":
                raise
        if policy is not None:
            moto.call("ecr", "SetRepositoryPolicy", {"repositoryName": name, "policyText": policy})
        with lock:
            done[0] += 1
            if done[0] % step == 0:
                took = time.monotonic() - started
                log(f"  repositories {done[0]:,}/{len(repos):,} in {took:.0f} s ({done[0] / took:.0f}/s)")

    with ThreadPoolExecutor(SEED_THREADS) as pool:
        list(pool.map(create, repos))
    return {"users": users, "rows": len(rows), "granting": granting, "lapsed": lapsed, "orphans": orphans,
            "repositories": len(repos)}


def sqs_event(m, queue_url):
    """A reconcile step as the event source mapping delivers it (batch size 1;
    the shape of tests/access_sync_fanout.rs `drain`)."""
    return {"Records": [{
        "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(int(time.time() * 1000))},
        "messageAttributes": {}, "md5OfBody": m.get("MD5OfBody", ""), "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue_url.rsplit('/', 1)[-1]}", "awsRegion": REGION}]}


def invoke(rt, proc, event):
    """bench_backfill's Runtime.invoke, its errors naming this function."""
    try:
        return rt.invoke(proc, event, INVOCATION_S)
    except SystemExit as e:
        raise SystemExit(str(e).replace("image-replicator", "access-sync")) from None


def run_item(moto):
    """The run item's attributes (numbers as int)."""
    item = moto.call("dynamodb", "GetItem", {"TableName": RUN_TABLE, "Key": {"run": {"S": "reconcile"}},
                                             "ConsistentRead": True}).get("Item") or {}
    out = {}
    for k, v in item.items():
        if "N" in v:
            out[k] = int(v["N"])
        elif "S" in v:
            out[k] = v["S"]
    return out


def granted(moto, repository):
    """The accounts our statement grants on `repository` (a set)."""
    try:
        text = moto.call("ecr", "GetRepositoryPolicy", {"repositoryName": repository})["policyText"]
    except MotoError as e:
        if e.kind == "RepositoryPolicyNotFoundException":
            return set()
        raise
    out = set()
    for st in json.loads(text).get("Statement", []):
        if st.get("Sid") == SID:
            principals = st.get("Principal", {}).get("AWS", [])
            principals = [principals] if isinstance(principals, str) else principals
            out |= {p.split(":")[4] for p in principals}
    return out


def spot_check(moto, seeded, samples=40):
    """Problems found in a sample of repositories after the changed pass:
    each granting user's repository grants exactly their account, the
    Trial-only users' and the orphans' grant nothing."""
    users, problems = seeded["users"], []
    picks = [(f"{PREFIX}/{escape(users[i])}", {seeded['granting'][i]})
             for i in sorted(seeded["granting"])[::max(1, len(seeded["granting"]) // samples)]]
    picks += [(f"{PREFIX}/{escape(users[i])}", set())
              for i in seeded["lapsed"][::max(1, len(seeded["lapsed"]) // (samples // 2))]]
    picks += [(o, set()) for o in seeded["orphans"][::max(1, len(seeded["orphans"]) // (samples // 2))]]
    wrong = [(r, sorted(granted(moto, r)), sorted(want)) for r, want in picks if granted(moto, r) != want]
    if wrong:
        r, got, want = wrong[0]
        problems.append(f"{len(wrong)} of {len(picks)} sampled policies wrong (e.g. {r} grants {got}, not {want})")
    return problems, len(picks)


def reconcile_pass(moto, queue_url, seeded, label, workdir):
    """One full reconcile, start to the last step; its figures."""
    n = len(seeded["users"])
    rt = Runtime()
    home = tempfile.mkdtemp(prefix="ecr-bridge-reconcile-", dir=workdir)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": home,
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{rt.port}",
        "AWS_LAMBDA_FUNCTION_NAME": "access-sync",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(MEMORY_MB),
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/access-sync",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "AKIDBENCH",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_ENDPOINT_URL": moto.url,
        "TABLE_NAME": TABLE,
        "ECR_REGION": REGION,
        "RECONCILE_QUEUE_URL": queue_url,
        "RECONCILE_TABLE": RUN_TABLE,
        "RECONCILE_SEGMENTS": str(SEGMENTS),
    }
    _, moto_cpu = proc_figures(moto.proc.pid)
    errlog = os.path.join(workdir, f"access-sync-{n}-{label}.log")
    with open(errlog, "w") as out:
        proc = subprocess.Popen([ACCESS_SYNC], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        ok, answer, took = invoke(rt, proc, {"reconcile": {}})
        if not ok:
            raise SystemExit(f"full reconcile start failed: {answer[:500]}")
        started = json.loads(answer).get("reconcile_run") or {}
        if started.get("joined") is not False:
            raise SystemExit(f"the start did not begin a new run: {answer[:500]}")
        times = [took]
        kinds, continuations, retried = Counter(), 0, 0
        while True:
            got = moto.call("sqs", "ReceiveMessage", {"QueueUrl": queue_url, "MaxNumberOfMessages": 1,
                                                      "VisibilityTimeout": 3600,
                                                      "WaitTimeSeconds": 0}).get("Messages", [])
            if not got:
                break
            m = got[0]
            step = json.loads(m["Body"]).get("reconcile_step") or {}
            kind = "segment" if "segment" in step else "sweep" if "sweep" in step else "other"
            kinds[kind] += 1
            continuations += "start" in (step.get("segment") or {}) or "next_token" in (step.get("sweep") or {})
            ok, answer, took = invoke(rt, proc, sqs_event(m, queue_url))
            times.append(took)
            if not ok or json.loads(answer).get("batchItemFailures"):
                retried += 1  # back to the queue, as the event source mapping does
                if retried > 10:
                    raise SystemExit(f"reconcile steps keep failing; last: {answer[:500]}")
                moto.call("sqs", "ChangeMessageVisibility", {"QueueUrl": queue_url, "ReceiptHandle": m["ReceiptHandle"],
                                                             "VisibilityTimeout": 0})
            else:
                moto.call("sqs", "DeleteMessage", {"QueueUrl": queue_url, "ReceiptHandle": m["ReceiptHandle"]})
            if len(times) > 10_000:
                raise SystemExit("more than 10,000 invocations: the reconcile does not end")
        rss, cpu = proc_figures(proc.pid)
        moto_cpu = proc_figures(moto.proc.pid)[1] - moto_cpu
    except SystemExit:
        log(f"access-sync's log (last lines):\n{open(errlog).read()[-3000:]}")
        raise
    finally:
        proc.kill()
        proc.wait()
        rt.close()
        shutil.rmtree(home, ignore_errors=True)
    run = run_item(moto)
    if run.get("id") != started.get("run"):
        raise SystemExit(f"the run item is {run.get('id')}, not the run started ({started.get('run')})")
    problems = []
    if run.get("state") != "finished":
        problems.append(f"the run is {run.get('state')!r}, not finished")
    if run.get("users") != n:
        problems.append(f"the run saw {run.get('users')} users, not {n:,}")
    if run.get("failed"):
        problems.append(f"{run['failed']} users failed")
    if retried:
        problems.append(f"{retried} step invocations failed and were retried")
    over = sum(1 for t in times if t > INVOCATION_S)
    if over:
        problems.append(f"{over} invocations past {INVOCATION_S} s")
    if label == "changed":
        want = {"granted": len(seeded["granting"]), "revoked": len(seeded["lapsed"]) + len(seeded["orphans"])}
    else:
        want = {"granted": 0, "changed": 0, "revoked": 0, "writes": 0}
    for key, value in want.items():
        if run.get(key, 0) != value:
            problems.append(f"the run's {key} is {run.get(key, 0):,}, not {value:,}")
    lambda_s = sum(times)
    calls = run.get("calls", 0)
    return {
        "pass": label, "users": n, "run_users": run.get("users"), "state": run.get("state"),
        "granted": run.get("granted", 0), "changed": run.get("changed", 0), "revoked": run.get("revoked", 0),
        "unchanged": run.get("unchanged", 0), "failed": run.get("failed", 0), "calls": calls,
        "writes": run.get("writes", 0), "scan_pages": run.get("scan_pages", 0),
        "sweep_pages": run.get("sweep_pages", 0), "repositories_swept": run.get("repositories_swept", 0),
        "calls_per_user": calls / n, "lambda_s": lambda_s, "per_s": n / lambda_s if lambda_s else float("nan"),
        "invocations": len(times), "start_s": times[0], "longest_s": max(times),
        "step_median_s": statistics.median(times[1:] or [0]), "steps": dict(kinds), "continuations": continuations,
        "retried": retried, "over": over, "rss_mb": rss, "cpu_s": cpu, "moto_cpu_s": moto_cpu, "problems": problems,
    }


def build():
    """The release access-sync, fresh (cargo's no-op when it is): bench.sh builds the other binaries."""
    cmd = ["cargo", "build", "--release", "-q", "-p", "access-sync", "--bin", "access-sync"]
    log("reconcile: " + " ".join(cmd))
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0 or not os.access(ACCESS_SYNC, os.X_OK):
        raise SystemExit(f"cargo build -p access-sync failed ({p.returncode}): {p.stderr.strip()[-1500:]}")


def reconcile_figures(sizes):
    """[(size, seeding figures, [changed pass, unchanged pass])], one moto per size."""
    build()
    out = []
    workdir = tempfile.mkdtemp(prefix="ecr-bridge-bench-reconcile-", dir=os.environ.get("BENCH_DIR"))
    try:
        for n in sizes:
            moto = Moto(workdir)
            try:
                local_aws(moto, "create-users-table")
                queue_url = local_aws(moto, "create-queue", QUEUE)
                local_aws(moto, "create-backfill-table", RUN_TABLE)
                log(f"reconcile: seeding {n:,} users and {n + n // 10:,} repositories in moto "
                    f"({SEED_THREADS} at a time)")
                t0 = time.monotonic()
                seeded = seed(moto, n)
                seed_s = time.monotonic() - t0
                log(f"  seeded in {seed_s:.0f} s")
                passes = []
                for label in ("changed", "unchanged"):
                    f = reconcile_pass(moto, queue_url, seeded, label, workdir)
                    if label == "changed":
                        found, sampled = spot_check(moto, seeded)
                        f["problems"] += found
                        f["sampled"] = sampled
                    log(f"  {label}: {f}")
                    passes.append(f)
                out.append((n, {"rows": seeded["rows"], "repositories": seeded["repositories"],
                                "orphans": len(seeded["orphans"]), "seed_s": seed_s}, passes))
            finally:
                moto.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return out
