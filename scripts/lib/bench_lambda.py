"""Lambda figures for scripts/bench.py: the image replicator's cold start
against a minimal runtime-API stand-in, and each function's zipped size as
`cargo lambda build --release --arm64 --output-format zip` makes it.

Cold start = from just before the process is spawned to the moment the
stand-in receives its first `GET /2018-06-01/runtime/invocation/next`. It
includes reading the environment, validating MAPPING_JSON, loading the AWS
SDK config and building the HTTP client (everything `main` does before the
runtime loop). A second listener stands in for the AWS API
(`AWS_ENDPOINT_URL`) and counts connections, which shows whether start-up
calls AWS (it must not: in Lambda that would be on the cold path).
"""

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench_copy import ROOT, TARGET, log

NEXT = "/2018-06-01/runtime/invocation/next"
REPLICATOR = os.path.join(TARGET, "release", "image-replicator")
LAMBDA_VENV_BIN = os.path.expanduser("~/.cache/ecr-bridge/lambda-venv/bin")
FUNCTIONS = ["image-replicator", "access-sync"]

# A valid mapping, inline: no SSM read is needed at start (MAPPING_PARAMETER
# would be read lazily on the first event anyway).
MAPPING = ('{"version":1,"rules":[{"name":"kuali-coeus","match":{"exact":"kuali-coeus"},'
           '"destinations":[{"account":"222222222222","region":"us-east-1",'
           '"role_arn":"arn:aws:iam::222222222222:role/ecr-bridge-push","external_id":"kuali-sync",'
           '"repository":"coeus"}]}]}')


class _StandIn:
    """Runtime API stand-in: records when /next is first asked for."""

    def __init__(self):
        standin = self
        self.first_next = None
        self.got_next = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                now = time.monotonic_ns()
                if self.path.startswith(NEXT):
                    if standin.first_next is None:
                        standin.first_next = now
                    standin.got_next.set()
                    # The function is killed next; never hand it an event.
                    time.sleep(2)
                try:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self):
        self.first_next = None
        self.got_next.clear()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class _AwsTrap:
    """Stands in for the AWS API endpoint: accepts, counts and drops connections."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            c.close()

    def close(self):
        self.sock.close()


def cold_start(starts, extra_env=None):
    """[(wall ms, CPU ms)] per start, and the AWS connections made before
    the first /next (summed over all starts)."""
    standin, trap = _StandIn(), _AwsTrap()
    home = tempfile.mkdtemp(prefix="ecr-bridge-coldstart-")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": home,  # no ~/.aws files, as in Lambda
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{standin.port}",
        "AWS_LAMBDA_FUNCTION_NAME": "image-replicator",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/image-replicator",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIDBENCH",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_SESSION_TOKEN": "bench",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{trap.port}",
        "MAPPING_JSON": MAPPING,
        **(extra_env or {}),
    }
    times = []
    aws_before_next = 0
    errlog = os.path.join(home, "stderr")
    try:
        for i in range(starts):
            standin.reset()
            before = trap.connections
            with open(errlog, "w") as err:
                t0 = time.monotonic_ns()
                p = subprocess.Popen([REPLICATOR], env=env, stdout=subprocess.DEVNULL, stderr=err)
                ok = standin.got_next.wait(timeout=10)
            aws_before_next += trap.connections - before
            p.kill()
            # The process is idle in its /next once it got there: its CPU time
            # is start-up alone, and far less noisy on a busy machine than wall time.
            _, _, usage = os.wait4(p.pid, 0)
            p.returncode = -9
            if not ok:
                raise SystemExit(f"image-replicator never asked for an event; stderr:\n{open(errlog).read()[-2000:]}")
            times.append(((standin.first_next - t0) / 1e6, (usage.ru_utime + usage.ru_stime) * 1e3))
    finally:
        standin.close()
        trap.close()
        shutil.rmtree(home, ignore_errors=True)
    return times, aws_before_next


def zip_sizes(workdir):
    """{function: (zip bytes, binary bytes)} from cargo lambda's arm64 release zips."""
    out_dir = os.path.join(workdir, "lambda")
    env = dict(os.environ, PATH=f"{LAMBDA_VENV_BIN}:{os.environ['PATH']}")
    cmd = ["cargo", "lambda", "build", "--release", "--arm64", "--output-format", "zip",
           "--lambda-dir", out_dir]
    for f in FUNCTIONS:
        cmd += ["-p", f]
    log("cargo lambda build --release --arm64 --output-format zip (a cold cross build takes minutes; "
        "BENCH_ZIP=0 skips it)")
    t0 = time.monotonic()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    log(f"  built in {time.monotonic() - t0:.0f} s")
    sizes = {}
    for f in FUNCTIONS:
        z = os.path.join(out_dir, f, "bootstrap.zip")
        with zipfile.ZipFile(z) as zf:
            unzipped = sum(i.file_size for i in zf.infolist())
        sizes[f] = (os.path.getsize(z), unzipped)
    return sizes
