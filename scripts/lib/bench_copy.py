"""Copy benchmark pieces for scripts/bench.py: loopback registries started by
the `rig` binary (plain HTTP, or HTTPS with a CA of its own), the three
contenders (ecr-bridge copy, skopeo copy, the curl-PUT floor) timed with
/usr/bin/time, and the registry's own request log read back so request
counts and bytes moved are the server's facts.

Over TLS everyone verifies: ours trusts the registries' CAs through
SSL_CERT_FILE (its normal root store), skopeo through --src-cert-dir and
--dest-cert-dir, curl through --cacert.
"""

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
OURS = os.path.join(TARGET, "release", "ecr-bridge")
RIG = os.path.join(TARGET, "release", "rig")
SKOPEO_CACHES = [
    "/var/lib/containers/cache",
    os.path.expanduser("~/.local/share/containers/cache"),
]
# The rig's registry log parser leaves out requests under this prefix (its
# own barrier requests); ours use it too.
BARRIER = "/v2/?rig-bench-sync="


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


class Request:
    __slots__ = ("method", "uri", "status")

    def __init__(self, method, uri, status):
        self.method, self.uri, self.status = method, uri, status

    def __repr__(self):
        return f"{self.method} {self.uri} {self.status}"


def parse_log(text):
    """One Request per answered request, as tests/rig/registry.rs parses it:
    a "response completed[ with error]" line, or an "error authorizing
    context" line (a 401 from the auth layer, which logs nothing else)."""
    out = []
    for line in text.splitlines():
        try:
            v = json.loads(line)
        except ValueError:
            continue
        msg = v.get("msg", "")
        if msg in ("response completed", "response completed with error"):
            status = v.get("http.response.status")
        elif msg.startswith("error authorizing context"):
            status = 401
        else:
            continue
        method, uri = v.get("http.request.method"), v.get("http.request.uri")
        if status is None or method is None or uri is None:
            continue
        out.append(Request(method, uri, int(status)))
    return out


class Registry:
    """A docker-registry on 127.0.0.1 run by `rig registry` (killed on stop);
    with tls, over HTTPS with a certificate from that rig process's own CA."""

    def __init__(self, account, workdir, tls=False):
        name = f"{'tls-' if tls else ''}{account}"
        self.out = os.path.join(workdir, f"reg-{name}.json")
        cmd = [RIG, "registry", "--account", account, "--dir", os.path.join(workdir, f"reg-{name}")]
        if tls:
            cmd.append("--tls")
        self.proc = subprocess.Popen(cmd, stdout=open(self.out, "w"), stderr=subprocess.DEVNULL)
        deadline = time.time() + 15
        while time.time() < deadline:
            try:
                info = json.load(open(self.out))
                break
            except (ValueError, OSError):
                time.sleep(0.05)
        else:
            raise SystemExit(f"registry {account} did not start")
        self.host = info["host"]
        self.url = info["url"]
        self.creds = info["creds"]
        self.log_path = info["log"]
        self.tls = tls
        self.ca = info.get("ca")  # PEM of the CA (TLS only)
        self.cert_dir = info.get("cert_dir")  # holds ca.crt, for skopeo
        self.syncs = 0

    def requests(self):
        """Every request answered so far, oldest first (barrier requests left
        out). A request's line is written after its answer, so first send an
        unauthenticated barrier request and wait for its (401) line."""
        self.syncs += 1
        marker = f"{BARRIER}{self.syncs}"
        ctx = ssl.create_default_context(cafile=self.ca) if self.tls else None
        try:
            urllib.request.urlopen(f"{self.url}{marker}", timeout=5, context=ctx)
        except urllib.error.HTTPError:
            pass
        deadline = time.time() + 5
        while True:
            with open(self.log_path, errors="replace") as f:
                text = f.read()
            if f'"{marker}"' in text:
                return [r for r in parse_log(text) if not r.uri.startswith(BARRIER)]
            if time.time() > deadline:
                raise SystemExit(f"barrier {marker} never reached {self.log_path}")
            time.sleep(0.01)

    def mark(self):
        return len(self.requests())

    def since(self, mark):
        return self.requests()[mark:]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)


def after_auth(requests):
    """Requests that did work: not 401 challenges, not the `GET /v2/` ping."""
    return [r for r in requests if r.status != 401 and r.uri.split("?")[0] != "/v2/"]


def blob_puts(requests):
    """Digests of blobs committed by a PUT (monolithic or the last of a chunked upload)."""
    out = []
    for r in requests:
        if r.method == "PUT" and "/blobs/uploads/" in r.uri and r.status == 201 and "digest=" in r.uri:
            q = r.uri.split("?", 1)[1]
            for part in q.split("&"):
                if part.startswith("digest="):
                    out.append(urllib.request.unquote(part[len("digest="):]))
    return out


def blob_mounts(requests):
    return [r for r in requests if r.method == "POST" and "mount=" in r.uri and r.status == 201]


def timed(cmd, env=None):
    """(wall seconds, peak RSS MiB, stdout, CPU seconds user+system) of one
    command, which must succeed."""
    full = ["/usr/bin/time", "-f", "%e %M %U %S"] + cmd
    t0 = time.monotonic()
    p = subprocess.run(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        raise SystemExit(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}")
    last = p.stderr.strip().splitlines()[-1].split()
    return wall, int(last[1]) / 1024.0, p.stdout, float(last[2]) + float(last[3])


def trust_file(*regs):
    """A PEM file with the CAs of the TLS registries among `regs` and the
    system's bundle, for SSL_CERT_FILE (which replaces the system's roots)."""
    cas = [r.ca for r in regs if r.tls]
    path = os.path.join(os.path.dirname(regs[0].out), "trust-" + "-".join(
        os.path.basename(os.path.dirname(c)) for c in cas) + ".pem")
    if not os.path.exists(path):
        parts = [open(c).read() for c in cas]
        if os.path.exists("/etc/ssl/certs/ca-certificates.crt"):
            parts.append(open("/etc/ssl/certs/ca-certificates.crt").read())
        with open(path, "w") as f:
            f.write("".join(parts))
    return path


def ours(src_reg, src, dst_reg, dst):
    """`ecr-bridge copy`; returns (wall, rss, report dict, cpu). Plain HTTP
    needs --plain-http-loopback; over TLS (both registries) the registries'
    CAs come through SSL_CERT_FILE, as a private CA would in production."""
    env = dict(os.environ, SRC_CREDS=src_reg.creds, DST_CREDS=dst_reg.creds)
    cmd = [OURS, "copy", f"{src_reg.host}/{src}", f"{dst_reg.host}/{dst}", "--src-creds-env", "SRC_CREDS",
           "--dest-creds-env", "DST_CREDS"]
    if src_reg.tls or dst_reg.tls:
        if not (src_reg.tls and dst_reg.tls):
            raise SystemExit("ours: both registries TLS or neither")
        env["SSL_CERT_FILE"] = trust_file(src_reg, dst_reg)
    else:
        cmd.append("--plain-http-loopback")
    wall, rss, out, cpu = timed(cmd, env)
    return wall, rss, json.loads(out.strip().splitlines()[-1]), cpu


def skopeo_tls(reg, side):
    """skopeo's TLS flags for one side ("src", "dest"): verify against the
    registry's CA, or (plain HTTP) no TLS verification, so it falls back to HTTP."""
    return [f"--{side}-cert-dir", reg.cert_dir] if reg.tls else [f"--{side}-tls-verify=false"]


def skopeo(src_reg, src, dst_reg, dst):
    """`skopeo copy --all` with its blob-info cache wiped first (a fresh
    Lambda has none; a warm one lets skopeo mount blobs seen in earlier runs).
    Returns (wall, rss, None, cpu)."""
    for c in SKOPEO_CACHES:
        shutil.rmtree(c, ignore_errors=True)
    wall, rss, _, cpu = timed(
        ["skopeo", "copy", "--all", "--preserve-digests", "--quiet", *skopeo_tls(src_reg, "src"),
         *skopeo_tls(dst_reg, "dest"), "--src-creds", src_reg.creds, "--dest-creds", dst_reg.creds,
         f"docker://{src_reg.host}/{src}", f"docker://{dst_reg.host}/{dst}"]
    )
    return wall, rss, None, cpu


def push_layout(layout, reg, ref):
    subprocess.run(
        ["skopeo", "copy", "--all", "--preserve-digests", "--quiet", *skopeo_tls(reg, "dest"),
         "--dest-creds", reg.creds, f"oci:{layout['dir']}:{layout['tag']}", f"docker://{reg.host}/{ref}"],
        check=True,
    )


def build_image(out, tag, layers, seed, platforms=None, shared=0):
    cmd = [RIG, "build-image", "--out", out, "--tag", tag, "--layers", layers, "--seed", str(seed)]
    if platforms:
        cmd += ["--platforms", ",".join(platforms), "--shared", str(shared)]
    stdout = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(stdout.strip().splitlines()[-1])


def floor(layout, dst_reg, repo):
    """Every distinct blob of the layout pushed to a fresh repository by
    parallel monolithic curl PUTs (POST for a session, then one PUT ?digest=):
    the most this registry can take (over TLS when it serves TLS, verified
    against its CA). Returns wall seconds."""
    auth = ["-u", dst_reg.creds] + (["--cacert", dst_reg.ca] if dst_reg.tls else [])

    def put(blob):
        digest, _size = blob
        path = os.path.join(layout["dir"], "blobs", "sha256", digest.split(":")[1])
        hdrs = subprocess.run(
            ["curl", "-sS", "-D", "-", "-o", "/dev/null", "-X", "POST", *auth,
             f"{dst_reg.url}/v2/{repo}/blobs/uploads/"],
            capture_output=True, text=True, check=True,
        ).stdout
        loc = next(l.split(":", 1)[1].strip() for l in hdrs.splitlines() if l.lower().startswith("location:"))
        if loc.startswith("/"):
            loc = f"{dst_reg.url}{loc}"
        sep = "&" if "?" in loc else "?"
        subprocess.run(
            ["curl", "-sS", "-f", "-o", "/dev/null", "-X", "PUT", *auth, "-H", "Content-Type: application/octet-stream",
             "-T", path, f"{loc}{sep}digest={digest}"],
            check=True,
        )

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(layout["blobs"])) as pool:
        list(pool.map(put, layout["blobs"]))
    return time.monotonic() - t0
