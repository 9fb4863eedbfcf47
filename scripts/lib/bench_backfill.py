"""Backfill listing at scale, for scripts/bench.py (row 10): the image
replicator's fan-out over registries of N image records.

Per size, a moto of its own (moto_server from the project's venv) holds N
image records (PutImage of small distinct OCI manifests, no blobs: listing
reads only the records) spread over up to 100 repositories that one prefix
rule routes, plus one repository no rule routes; the SQS work queue, the
backfill run table and the mapping (SSM, MAPPING_PARAMETER) are made as
scripts/lib/local_aws.py makes them. The release image-replicator runs
against a Lambda Runtime API stand-in (as bench_lambda's cold start does,
but this one hands out events and takes the answers): first the backfill
start event (events/backfill-request.json with action "start", every routed
repository), then every listing step (`{"backfill_step": ...}`) it put on
the queue, each as an SQS event of one record, until no step remains. The
queue is read back after each invocation: steps are kept to be fed next,
work items (one per image) are only counted, then the queue is purged. One
invocation at a time and nothing else running meanwhile, so the time an
invocation took (event handed out to answer received: what Lambda bills) is
the function's and moto's alone.

Figures per size: images enqueued (each digest once, = N), Lambda time
summed over the listing invocations (the start and every step), images
enqueued per second of it, the invocations, the longest, continuation steps
(steps with a next_token), the process's peak RSS (VmHWM) and CPU time, and
the run's own counts (a `status` invocation afterwards, not timed). At the
size given as `short_at`, a second run in a fresh run table with 1 s
invocations shows how listing fares with a short deadline.

Most of the Lambda time is waiting for moto: a step sends its work items in
SendMessageBatch calls of 10, one after another, so N images are N / 10
round trips; the process's CPU time is the function's own share. moto
answers DescribeImages and DescribeRepositories in one page whatever
maxResults asks (ECR pages at 1,000), so every listing step here is one
page (as a repository of up to 1,000 images is in ECR), and a step
continues itself only between pages: none is needed. Its PutImage scans
the repository (slower as a repository grows): seeding, not listing, is what
takes time at 50,000 (about 27 minutes here).
"""

import hashlib
import http.client
import json
import os
import queue
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench_copy import ROOT, log
from bench_lambda import NEXT, REPLICATOR

TOOLS = os.environ.get("ECR_BRIDGE_TOOLS", os.path.expanduser("~/.cache/ecr-bridge"))
MOTO_SERVER = os.path.join(TOOLS, "venv", "bin", "moto_server")
VENV_PYTHON = os.path.join(TOOLS, "venv", "bin", "python")
MOTO_INDEXED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "moto_server.py")
LOCAL_AWS = os.path.join(ROOT, "scripts", "lib", "local_aws.py")
START_EVENT = os.path.join(ROOT, "events", "backfill-request.json")

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account: the source registry
TARGET = "222222222222"
QUEUE = "ecr-bridge-backfill"
RUN_TABLE = "ecr-bridge-backfill-runs"
MAPPING_PARAMETER = "/ecr-bridge/mapping"
PREFIX = "bench-"
REPOSITORIES = 100
SEED_THREADS = 8
# The template's ReplicatorTimeout and ReplicatorMemorySize defaults.
INVOCATION_S = 900
MEMORY_MB = 1024
RUNTIME = "/2018-06-01/runtime/"
MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"

MAPPING = {"version": 1, "rules": [{
    "name": "bench", "match": {"prefix": PREFIX},
    "destinations": [{"account": TARGET, "region": REGION,
                      "role_arn": f"arn:aws:iam::{TARGET}:role/ecr-bridge-push", "repository": "mirror/{suffix}"}],
}]}

# service: (X-Amz-Target prefix, JSON protocol version)
SERVICES = {
    "ecr": ("AmazonEC2ContainerRegistry_V20150921", "1.1"),
    "sqs": ("AmazonSQS", "1.0"),
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    """moto_server on a free port, with a keep-alive connection per thread
    for the calls this module makes itself (AWS JSON protocol, unsigned:
    moto checks no signature)."""

    def __init__(self, workdir):
        if not os.access(MOTO_SERVER, os.X_OK):
            raise SystemExit(f"{MOTO_SERVER} missing: run scripts/setup.sh")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(workdir, f"moto-{self.port}.log")
        # Strict purges (one a minute, as SQS) would stall the drain after each invocation.
        env = dict(os.environ, MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR="false")
        self.log_file = open(self.log_path, "w")
        # moto_server with DynamoDB's Query by hash key (see moto_server.py).
        self.proc = subprocess.Popen([VENV_PYTHON, MOTO_INDEXED, "-H", "127.0.0.1", "-p", str(self.port)], env=env,
                                     stdout=self.log_file, stderr=subprocess.STDOUT)
        self.local = threading.local()
        for _ in range(300):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        self.stop()
        raise SystemExit(f"moto did not start: {open(self.log_path).read()[-1000:]}")

    def call(self, service, op, payload):
        """One call; the answer's JSON, or SystemExit naming moto's error."""
        prefix, version = SERVICES[service]
        body = json.dumps(payload)
        headers = {
            "Content-Type": f"application/x-amz-json-{version}",
            "X-Amz-Target": f"{prefix}.{op}",
            "Authorization": f"AWS4-HMAC-SHA256 Credential=AKIDBENCH/20250101/{REGION}/{service}/aws4_request, "
                             "SignedHeaders=host, Signature=0",
        }
        for attempt in (1, 2):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
            try:
                conn.request("POST", "/", body, headers)
                r = conn.getresponse()
                data = r.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
        answer = json.loads(data) if data.strip() else {}
        if r.status >= 300:
            kind = str(answer.get("__type", "")).split("#")[-1]
            raise MotoError(kind, f"{service} {op}: {r.status} {kind}: {answer.get('message', data[:300])}")
        return answer

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


class MotoError(SystemExit):
    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


def local_aws(moto, *args):
    """scripts/lib/local_aws.py against this moto (boto3 from the venv); its stdout."""
    env = dict(os.environ, AWS_ACCESS_KEY_ID="AKIDLOCAL", AWS_SECRET_ACCESS_KEY="local-secret",
               PYTHONDONTWRITEBYTECODE="1")
    p = subprocess.run([VENV_PYTHON, LOCAL_AWS, moto.url, *args], env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"local_aws.py {args[0]}: {p.stderr.strip()[-500:]}")
    return p.stdout.strip()


def record(i):
    """A small distinct OCI manifest and its digest (moto is told the digest,
    as ECR derives it from the bytes)."""
    config = "sha256:" + hashlib.sha256(f"config {i}".encode()).hexdigest()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MEDIA_TYPE,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": config, "size": 2},
                           "layers": []}, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(manifest.encode()).hexdigest(), manifest


def seed(moto, images):
    """`images` records over min(REPOSITORIES, images) routed repositories
    (round robin, so they grow evenly) and one unrouted, empty repository;
    returns (repository count, the set of digests)."""
    repos = [f"{PREFIX}{r:04d}" for r in range(min(REPOSITORIES, images))]
    for name in repos + ["other-unrouted"]:
        moto.call("ecr", "CreateRepository", {"repositoryName": name})
    digests = set()
    done = [0]
    lock = threading.Lock()
    started = time.monotonic()
    step = max(images // 10, 5000)

    def put(i):
        digest, manifest = record(i)
        args = {"repositoryName": repos[i % len(repos)], "imageTag": f"t{i}", "imageManifest": manifest,
                "imageManifestMediaType": MEDIA_TYPE, "imageDigest": digest}
        try:
            moto.call("ecr", "PutImage", args)
        except MotoError as e:  # a retried call that had landed
            if e.kind != "ImageAlreadyExistsException":
                raise
        with lock:
            digests.add(digest)
            done[0] += 1
            if done[0] % step == 0:
                took = time.monotonic() - started
                log(f"  seeded {done[0]:,}/{images:,} in {took:.0f} s ({done[0] / took:.0f}/s)")

    with ThreadPoolExecutor(SEED_THREADS) as pool:
        list(pool.map(put, range(images)))
    if len(digests) != images:
        raise SystemExit(f"seeding made {len(digests)} distinct digests for {images} records")
    return len(repos), digests


class Runtime:
    """Lambda Runtime API stand-in that hands out events one at a time:
    `invoke` queues an event with its deadline and waits for the function's
    answer (POST .../response or .../error)."""

    def __init__(self):
        rt = self
        self.events = queue.Queue()
        self.cond = threading.Condition()
        self.handed = {}
        self.results = {}
        self.init_error = None

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def reply(self, status, body=b"", headers=()):
                try:
                    self.send_response(status)
                    for k, v in headers:
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the function was killed
                    pass

            def body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        chunk = self.rfile.read(size + 2)[:size]
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return out
                        out += chunk
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self):
                if not self.path.startswith(NEXT):
                    return self.reply(404)
                item = rt.events.get()
                if item is None:  # shutting down: the process is killed next
                    rt.events.put(None)
                    return self.reply(503)
                request_id, payload, deadline_ms = item
                headers = [("Content-Type", "application/json"),
                           ("Lambda-Runtime-Aws-Request-Id", request_id),
                           ("Lambda-Runtime-Deadline-Ms", str(deadline_ms)),
                           ("Lambda-Runtime-Invoked-Function-Arn",
                            f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:image-replicator"),
                           ("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000;Sampled=0")]
                with rt.cond:
                    rt.handed[request_id] = time.monotonic()
                self.reply(200, payload, headers)

            def do_POST(self):
                body = self.body()
                now = time.monotonic()
                parts = self.path[len(RUNTIME):].split("/") if self.path.startswith(RUNTIME) else []
                with rt.cond:
                    if parts[:2] == ["init", "error"]:
                        rt.init_error = body.decode(errors="replace")
                    elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                        rt.results[parts[1]] = (parts[2] == "response", body.decode(errors="replace"), now)
                    rt.cond.notify_all()
                self.reply(202, b'{"status":"OK"}', [("Content-Type", "application/json")])

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a connection the killed function left half-done

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def invoke(self, proc, event, seconds):
        """(ok, answer text, seconds from hand-out to answer) of one invocation."""
        request_id = str(uuid.uuid4())
        self.events.put((request_id, json.dumps(event).encode(), int((time.time() + seconds) * 1000)))
        give_up = time.monotonic() + seconds + 60
        with self.cond:
            while request_id not in self.results:
                if self.init_error is not None:
                    raise SystemExit(f"image-replicator failed to start: {self.init_error[:500]}")
                if proc.poll() is not None:
                    raise SystemExit(f"image-replicator exited ({proc.returncode}) during an invocation")
                if time.monotonic() > give_up:
                    raise SystemExit(f"image-replicator did not answer within {seconds + 60:.0f} s")
                self.cond.wait(0.2)
            ok, body, done = self.results.pop(request_id)
            return ok, body, done - self.handed.pop(request_id)

    def close(self):
        self.events.put(None)
        self.server.shutdown()
        self.server.server_close()


def proc_figures(pid):
    """(peak RSS MiB, CPU seconds user+system) of a live process."""
    hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return hwm / 1024.0, cpu


def drain(moto, queue_url):
    """Everything on the queue (one invocation's output), then purged:
    ([listing step messages], Counter of work item digests)."""
    steps, items = [], Counter()
    while True:
        got = moto.call("sqs", "ReceiveMessage", {"QueueUrl": queue_url, "MaxNumberOfMessages": 10,
                                                  "VisibilityTimeout": 3600, "WaitTimeSeconds": 0}).get("Messages", [])
        if not got:
            break
        for m in got:
            body = json.loads(m["Body"])
            if "backfill_step" in body:
                steps.append(m)
            else:
                items[body["detail"]["image-digest"]] += 1
    moto.call("sqs", "PurgeQueue", {"QueueUrl": queue_url})
    return steps, items


def sqs_event(m):
    """A listing step as the event source mapping delivers it (batch size 1)."""
    return {"Records": [{
        "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(int(time.time() * 1000))},
        "messageAttributes": {}, "md5OfBody": m.get("MD5OfBody", ""), "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{QUEUE}", "awsRegion": REGION}]}


def listing_pass(moto, queue_url, table, digests, seconds, workdir):
    """One backfill run, start to the last listing step, every invocation
    given `seconds`; its figures."""
    rt = Runtime()
    home = tempfile.mkdtemp(prefix="ecr-bridge-backfill-", dir=workdir)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": home,
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{rt.port}",
        "AWS_LAMBDA_FUNCTION_NAME": "image-replicator",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(MEMORY_MB),
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/image-replicator",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "AKIDBENCH",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_SESSION_TOKEN": "bench",
        "AWS_ENDPOINT_URL": moto.url,
        "MAPPING_PARAMETER": MAPPING_PARAMETER,
        "BACKFILL_QUEUE_URL": queue_url,
        "BACKFILL_TABLE": table,
    }
    errlog = os.path.join(workdir, f"replicator-{table}.log")
    proc = subprocess.Popen([REPLICATOR], env=env, stdout=open(errlog, "w"), stderr=subprocess.STDOUT)
    try:
        event = json.load(open(START_EVENT))
        event["backfill"].update(action="start", repositories=[])
        ok, answer, took = rt.invoke(proc, event, seconds)
        if not ok:
            raise SystemExit(f"backfill start failed: {answer[:500]}")
        start = json.loads(answer)["summary"]
        times = [took]
        pending, items = drain(moto, queue_url)
        pending = deque(pending)
        kinds, continuations, retried = Counter(), 0, 0
        while pending:
            m = pending.popleft()
            listing = json.loads(m["Body"])["backfill_step"]["listing"]
            kinds[listing["list"]] += 1
            continuations += "next_token" in listing
            ok, answer, took = rt.invoke(proc, sqs_event(m), seconds)
            times.append(took)
            if not ok or json.loads(answer).get("batchItemFailures"):
                retried += 1  # back to the queue, as the event source mapping does
                if retried > 10:
                    raise SystemExit(f"listing steps keep failing; last: {answer[:500]}")
                pending.append(m)
            steps, new = drain(moto, queue_url)
            pending.extend(steps)
            items.update(new)
        rss, cpu = proc_figures(proc.pid)
        ok, answer, _ = rt.invoke(proc, {"backfill": {"action": "status"}}, 60)
        status = json.loads(answer)["summary"] if ok else {"error": answer[:300]}
    except SystemExit:
        log(f"image-replicator's log (last lines):\n{open(errlog).read()[-3000:]}")
        raise
    finally:
        proc.kill()
        proc.wait()
        rt.close()
        shutil.rmtree(home, ignore_errors=True)
    n = len(digests)
    enqueued = sum(items.values())
    problems = []
    if set(items) != digests or enqueued != n:
        problems.append(f"{enqueued:,} work items for {n:,} images ({len(digests - set(items)):,} never enqueued, "
                        f"{sum(1 for c in items.values() if c > 1):,} more than once, "
                        f"{len(set(items) - digests):,} unknown)")
    if retried:
        problems.append(f"{retried} listing invocations failed and were retried")
    repos = min(REPOSITORIES, n)
    for key, got, want in (("enqueued", status.get("enqueued"), n), ("images_found", status.get("images_found"), n),
                           ("listings_open", status.get("listings_open"), 0),
                           ("repositories_matched", start.get("repositories_matched"), repos),
                           ("repositories_unmatched", start.get("repositories_unmatched"), 1)):
        if got != want:
            problems.append(f"the run's {key} is {got}, not {want}")
    listing_s = sum(times)
    return {
        "images": n, "enqueued": enqueued, "distinct": len(items), "lambda_s": listing_s,
        "per_s": enqueued / listing_s if listing_s else float("nan"), "invocations": len(times),
        "start_s": times[0], "longest_s": max(times), "step_median_s": statistics.median(times[1:] or [0]),
        "over": sum(1 for t in times if t > seconds),
        "steps": dict(kinds), "continuations": continuations, "rss_mb": rss, "cpu_s": cpu,
        "matched": start.get("repositories_matched"), "unmatched": start.get("repositories_unmatched"),
        "seconds": seconds, "problems": problems,
    }


def listing_figures(sizes, short_at=10_000, short_s=1.0):
    """[(size, figures, short-deadline figures or None)], one moto per size."""
    if not os.access(REPLICATOR, os.X_OK):
        raise SystemExit(f"{REPLICATOR} missing: cargo build --release -p image-replicator")
    out = []
    workdir = tempfile.mkdtemp(prefix="ecr-bridge-bench-backfill-", dir=os.environ.get("BENCH_DIR"))
    try:
        for n in sizes:
            moto = Moto(workdir)
            try:
                queue_url = local_aws(moto, "create-queue", QUEUE)
                local_aws(moto, "create-backfill-table", RUN_TABLE)
                local_aws(moto, "put-mapping", MAPPING_PARAMETER, json.dumps(MAPPING))
                log(f"backfill: seeding {n:,} image records in moto (PutImage, {SEED_THREADS} at a time)")
                t0 = time.monotonic()
                repos, digests = seed(moto, n)
                seeded = time.monotonic() - t0
                log(f"  {n:,} records over {repos} repositories in {seeded:.0f} s")
                f = listing_pass(moto, queue_url, RUN_TABLE, digests, INVOCATION_S, workdir)
                f.update(repositories=repos, seed_s=seeded)
                log(f"  listed: {f}")
                short = None
                if n == short_at:
                    table = RUN_TABLE + "-short"
                    local_aws(moto, "create-backfill-table", table)
                    short = listing_pass(moto, queue_url, table, digests, short_s, workdir)
                    short.update(repositories=repos)
                    log(f"  listed with {short_s:g} s invocations: {short}")
                out.append((n, f, short))
            finally:
                moto.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return out
