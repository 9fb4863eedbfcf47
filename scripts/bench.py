#!/usr/bin/env python3
"""ecr-bridge copy vs skopeo copy vs the registry's floor, side by side.

Two docker-registry instances on loopback (two "accounts"). Each row is the
median of N alternating runs (ours, skopeo, floor, ours, ...). Wall time and
peak RSS come from /usr/bin/time. The floor is the same blobs pushed by
parallel monolithic curl PUTs: the most this registry can take.

skopeo's blob-info cache is wiped before each of its runs: a fresh Lambda has
no warm cache, and a warm one lets skopeo mount blobs it saw in earlier runs.

Usage: scripts/bench.py [--runs 5] [--quick]   (make bench)
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
OURS = os.path.join(TARGET, "release", "ecr-bridge")
RIG = os.path.join(TARGET, "release", "rig")
SKOPEO_CACHES = [
    "/var/lib/containers/cache",
    os.path.expanduser("~/.local/share/containers/cache"),
]


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


class Registry:
    def __init__(self, account, workdir):
        self.out = os.path.join(workdir, f"reg-{account}.json")
        self.proc = subprocess.Popen(
            [RIG, "registry", "--account", account, "--dir", os.path.join(workdir, f"reg-{account}")],
            stdout=open(self.out, "w"),
            stderr=subprocess.DEVNULL,
        )
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
        self.creds = info["creds"]
        self.log_path = info["log"]

    def completed_requests(self):
        time.sleep(0.3)  # the registry logs a request after answering it
        with open(self.log_path, errors="replace") as f:
            return sum(1 for line in f if '"response completed' in line or "error authorizing" in line)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)


def timed(cmd, env=None):
    """(wall seconds, peak RSS MiB) of one command, which must succeed."""
    full = ["/usr/bin/time", "-f", "%e %M"] + cmd
    t0 = time.monotonic()
    p = subprocess.run(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        raise SystemExit(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}")
    last = p.stderr.strip().splitlines()[-1].split()
    return wall, int(last[1]) / 1024.0


def ours(src_reg, src, dst_reg, dst):
    env = dict(os.environ, SRC_CREDS=src_reg.creds, DST_CREDS=dst_reg.creds)
    return timed(
        [OURS, "copy", f"{src_reg.host}/{src}", f"{dst_reg.host}/{dst}", "--src-creds-env", "SRC_CREDS",
         "--dest-creds-env", "DST_CREDS", "--plain-http-loopback"],
        env,
    )


def skopeo(src_reg, src, dst_reg, dst):
    for c in SKOPEO_CACHES:
        shutil.rmtree(c, ignore_errors=True)
    return timed(
        ["skopeo", "copy", "--all", "--preserve-digests", "--quiet", "--src-tls-verify=false",
         "--dest-tls-verify=false", "--src-creds", src_reg.creds, "--dest-creds", dst_reg.creds,
         f"docker://{src_reg.host}/{src}", f"docker://{dst_reg.host}/{dst}"]
    )


def floor(layout, dst_reg, repo):
    """Every blob of the layout pushed to a fresh repository by parallel monolithic curl PUTs."""
    auth = ["-u", dst_reg.creds]

    def put(blob):
        digest, _size = blob
        path = os.path.join(layout["dir"], "blobs", "sha256", digest.split(":")[1])
        hdrs = subprocess.run(
            ["curl", "-sS", "-D", "-", "-o", "/dev/null", "-X", "POST", *auth,
             f"http://{dst_reg.host}/v2/{repo}/blobs/uploads/"],
            capture_output=True, text=True, check=True,
        ).stdout
        loc = next(l.split(":", 1)[1].strip() for l in hdrs.splitlines() if l.lower().startswith("location:"))
        if loc.startswith("/"):
            loc = f"http://{dst_reg.host}{loc}"
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


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="small images, 3 runs: checks the script, not the numbers")
    args = ap.parse_args()
    runs = 3 if args.quick else args.runs

    work = tempfile.mkdtemp(prefix="ecr-bridge-bench-", dir=os.environ.get("BENCH_DIR"))
    regs = []
    try:
        a = Registry("111111111111", work)
        b = Registry("222222222222", work)
        regs = [a, b]
        sizes = {
            "352MB": "1M,50M,300M" if not args.quick else "1M,5M,30M",
            "1GiB": "1G" if not args.quick else "100M",
            "1MiB": "1M",
        }
        layouts = {}
        for name, layers in sizes.items():
            out = subprocess.run(
                [RIG, "build-image", "--out", os.path.join(work, f"img-{name}"), "--tag", "v1", "--layers", layers,
                 "--seed", str(len(layouts) + 1)],
                capture_output=True, text=True, check=True,
            ).stdout
            layouts[name] = json.loads(out.strip().splitlines()[-1])
            subprocess.run(
                ["skopeo", "copy", "--all", "--preserve-digests", "--quiet", "--dest-tls-verify=false",
                 "--dest-creds", a.creds, f"oci:{layouts[name]['dir']}:v1", f"docker://{a.host}/src-{name.lower()}:v1"],
                check=True,
            )
            log(f"source image {name}: {layouts[name]['total_blob_bytes'] / 1e6:.0f} MB pushed")

        rows = []

        def row(shape, o, s, f=None, note=""):
            ow, orss = median([x[0] for x in o]), median([x[1] for x in o])
            sw, srss = median([x[0] for x in s]), median([x[1] for x in s])
            fw = median(f) if f else None
            rows.append((shape, ow, sw, fw, orss, srss, note))
            log(f"{shape}: ours {ow:.3f}s skopeo {sw:.3f}s" + (f" floor {fw:.3f}s" if fw else ""))

        for name in ("352MB", "1GiB", "1MiB"):
            src = f"src-{name.lower()}:v1"
            o, s, f = [], [], []
            for i in range(runs):
                o.append(ours(a, src, b, f"ours-{name.lower()}-{i}"))
                s.append(skopeo(a, src, b, f"sk-{name.lower()}-{i}"))
                if name != "1MiB":
                    f.append(floor(layouts[name], b, f"floor-{name.lower()}-{i}"))
            row(f"fresh copy, {name}", o, s, f or None)
            if name == "352MB":
                # Target complete: copy again into the repositories just filled.
                o2, s2, reqs = [], [], []
                for i in range(runs):
                    before = b.completed_requests()
                    o2.append(ours(a, src, b, f"ours-{name.lower()}-{i}:v1"))
                    reqs.append(b.completed_requests() - before)
                    s2.append(skopeo(a, src, b, f"sk-{name.lower()}-{i}:v1"))
                row("target complete, 352MB", o2, s2, note=f"target requests (ours): {int(median(reqs))}")
                # Same registry, new name: mount vs upload.
                o3, s3 = [], []
                for i in range(runs):
                    o3.append(ours(a, src, a, f"ours-mount-{i}"))
                    s3.append(skopeo(a, src, a, f"sk-mount-{i}"))
                row("same registry, new name, 352MB", o3, s3)

        print()
        print("| shape | ours s | skopeo s | floor s | ours/skopeo | ours/floor | ours peak RSS MB | skopeo peak RSS MB | note |")
        print("|---|---|---|---|---|---|---|---|---|")
        for shape, ow, sw, fw, orss, srss, note in rows:
            f_s = f"{fw:.3f}" if fw else "-"
            f_r = f"{ow / fw:.2f}" if fw else "-"
            print(f"| {shape} | {ow:.3f} | {sw:.3f} | {f_s} | {ow / sw:.2f} | {f_r} | {orss:.1f} | {srss:.1f} | {note} |")
        rss = {shape: orss for shape, _, _, _, orss, _, _ in rows}
        print()
        print(f"peak RSS of ours, 1 GiB layer vs 1 MiB layer: {rss['fresh copy, 1GiB']:.1f} MB vs "
              f"{rss['fresh copy, 1MiB']:.1f} MB (+{rss['fresh copy, 1GiB'] - rss['fresh copy, 1MiB']:.1f} MB)")
        print(f"runs per row: {runs} (median), machine: {os.cpu_count()} cores")
    finally:
        for r in regs:
            r.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
