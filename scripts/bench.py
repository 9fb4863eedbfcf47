#!/usr/bin/env python3
"""Issue 7's benchmark: one table, each row against its goal.

Copies (rows 1-6): two docker-registry instances on loopback (two
"accounts"), started by the rig. Each row is the median of N alternating runs
(ours, skopeo, floor, ours, ...); wall time and peak RSS from /usr/bin/time.
The floor is the same blobs pushed by parallel monolithic curl PUTs: the most
this registry can take. skopeo runs `copy --all --preserve-digests` with its
blob-info cache wiped first (a fresh Lambda has none). Request counts and
bytes moved are read back from the target registry's own request log.

  1  fresh copy: the 352 MB image (1/50/300 MiB layers) and a 1 GiB single layer;
     the 352 MB image again over HTTPS (section tls: each registry with a CA
     of its own, which ours trusts through SSL_CERT_FILE, skopeo through
     --*-cert-dir, curl through --cacert), with CPU seconds
  2  target already complete: wall time and registry requests per target
  3  one layer changed since the last copy: what moved
  4  same registry, new name (blob mount)
  5  multi-arch index, 4 platforms sharing 2 of 3 layers
  6  peak RSS against skopeo's, and at a 1 GiB vs a 1 MiB layer
  7  the replicator's cold start (runtime-API stand-in) and each function's
     zipped size (cargo lambda build --release --arm64 --output-format zip)
  8  access sync: AWS calls per distinct user (the access_sync test's figures)
  9  20 concurrent `ecr-bridge copy` processes of a 3-platform image under
     ECR's PutImage quota of 10/s (section quota: the ecr_quotas test's
     figures): how many complete, and the wall time against the quota's floor
 10  backfill listing (section backfill): the release image-replicator under a
     runtime-API stand-in lists moto registries of 1,000 / 10,000 / 50,000
     image records (--backfill-sizes) over 100 repositories, start event and
     every listing step, work items only counted: images enqueued, Lambda
     time, images/s, invocations, peak RSS; at 10,000 again with 1 s
     invocations (scripts/lib/bench_backfill.py)
 11  full reconcile (section reconcile): the release access-sync under the
     same stand-in reconciles moto users tables of 1,000 / 10,000 / 50,000
     users (--reconcile-sizes; 1.2 rows a user) and their repositories (plus
     N/10 orphans) in 4 segments and a sweep, start event and every step on
     the reconcile queue, twice: changed (grants and revokes to write), then
     unchanged (no write). Users, Lambda time, users/s, AWS calls per user,
     writes, peak RSS, CPU (scripts/lib/bench_reconcile.py)

Usage: scripts/bench.py [--runs 5] [--starts 10] [--quick]
                       [--only copy,tls,cold,zip,access,quota,backfill,reconcile]
                       [--backfill-sizes 1000,10000,50000] [--reconcile-sizes 1000,10000,50000]
       (make bench; BENCH_ZIP=0 skips the arm64 cross build of the zips)
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))

from bench_copy import (Registry, after_auth, blob_mounts, blob_puts, build_image, floor, log,  # noqa: E402
                        ours, push_layout, skopeo)
import bench_lambda  # noqa: E402
import bench_access  # noqa: E402
import bench_quota  # noqa: E402
import bench_backfill  # noqa: E402
import bench_reconcile  # noqa: E402

MIB = 1024 * 1024
PLATFORMS = ["linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/s390x"]


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def load():
    return open("/proc/loadavg").read().split()[:3]


class Table:
    def __init__(self):
        self.rows = []

    def add(self, num, case, ours="-", skopeo="-", floor="-", ratio="-", rss="-", goal="-", met=None, why="",
            order=0):
        result = "-" if met is None else ("met" if met else "NOT MET")
        if why:
            result += f" ({why})"
        self.rows.append(((num, order), (num, case, ours, skopeo, floor, ratio, rss, goal, result)))
        log(f"row {num} {case}: ours {ours} skopeo {skopeo} floor {floor} {ratio} -> {result}")

    def print(self):
        print()
        print("| # | case | ours | skopeo | floor | ratio | peak RSS MB ours / skopeo | goal | result |")
        print("|---|---|---|---|---|---|---|---|---|")
        for _, r in sorted(self.rows, key=lambda r: r[0]):
            print("| " + " | ".join(str(c) for c in r) + " |")


def s(x):
    return f"{x:.3f} s"


def copy_rows(t, args, work):
    quick = args.quick
    runs = args.runs
    a = Registry("111111111111", work)
    b = Registry("222222222222", work)
    try:
        big = "1M,50M,300M" if not quick else "1M,5M,30M"
        big_v2 = "1M,51M,300M" if not quick else "1M,6M,30M"  # only the middle layer differs
        gib = "1G" if not quick else "100M"
        multi = "50M,30M,20M" if not quick else "5M,3M,2M"
        big_name = "352 MB (1/50/300 MiB layers)" if not quick else "37 MB (1/5/30 MiB, quick)"
        gib_name = "1 GiB single layer" if not quick else "100 MiB single layer (quick)"

        layouts = {
            "big": build_image(os.path.join(work, "img-big"), "v1", big, 1),
            "gib": build_image(os.path.join(work, "img-gib"), "v1", gib, 2),
            "mib": build_image(os.path.join(work, "img-mib"), "v1", "1M", 3),
            # v2 in the same layout: the same seed and sizes but one, so the
            # other layers are byte-identical.
            "big2": build_image(os.path.join(work, "img-big"), "v2", big_v2, 1),
            "multi": build_image(os.path.join(work, "img-multi"), "v1", multi, 4, PLATFORMS, shared=2),
        }
        src = {"big": "src-big:v1", "gib": "src-gib:v1", "mib": "src-mib:v1", "big2": "src-big:v2",
               "multi": "src-multi:v1"}
        for k, layout in layouts.items():
            push_layout(layout, a, src[k])
            log(f"source {src[k]}: {layout['total_blob_bytes'] / 1e6:.1f} MB in {len(layout['blobs'])} blobs pushed")

        rss_pairs = []  # (case, ours rss, skopeo rss)

        def rss_cell(o, sk):
            return f"{median([x[1] for x in o]):.1f} / {median([x[1] for x in sk]):.1f}"

        def fresh(key, label, num=1):
            o, sk, fl = [], [], []
            layout = layouts[key]
            for i in range(runs):
                o.append(ours(a, src[key], b, f"ours-{key}-{i}:v1"))
                sk.append(skopeo(a, src[key], b, f"sk-{key}-{i}:v1"))
                if key != "mib":
                    fl.append(floor(layout, b, f"floor-{key}-{i}"))
            ow, sw = median([x[0] for x in o]), median([x[0] for x in sk])
            moved = median([x[2]["bytes_uploaded"] for x in o])
            rss_pairs.append((label, median([x[1] for x in o]), median([x[1] for x in sk])))
            if key == "mib":
                return o
            fw = median(fl)
            ok = ow <= 0.8 * sw and ow <= 1.2 * fw
            why = "" if ok else ", ".join(
                w for w, bad in (("vs skopeo", ow > 0.8 * sw), ("vs floor", ow > 1.2 * fw)) if bad)
            extra = ""
            if key == "multi":
                distinct = layout["total_blob_bytes"]
                extra = f"; moved {moved / 1e6:.1f} MB = the {len(layout['blobs'])} distinct blobs once" \
                    if moved == distinct else f"; moved {moved / 1e6:.1f} MB vs {distinct / 1e6:.1f} MB distinct"
                ok = ok and moved == distinct
            t.add(num, label, s(ow) + extra, s(sw), s(fw), f"{ow / sw:.2f}x skopeo, {ow / fw:.2f}x floor",
                  rss_cell(o, sk), "<=0.8x skopeo, <=1.2x floor", ok, why)
            return o

        # 1: fresh copies
        fresh("big", f"fresh copy, {big_name}")
        fresh("gib", f"fresh copy, {gib_name}")
        mib_runs = fresh("mib", "fresh copy, 1 MiB single layer (RSS baseline)")

        # 2: target complete: copy again into the repositories just filled.
        o, sk, oreq, sreq, oall = [], [], [], [], []
        for i in range(runs):
            m = b.mark()
            o.append(ours(a, src["big"], b, f"ours-big-{i}:v1"))
            reqs = b.since(m)
            oall.append(len(reqs))
            oreq.append(len(after_auth(reqs)))
            m = b.mark()
            sk.append(skopeo(a, src["big"], b, f"sk-big-{i}:v1"))
            sreq.append(len(after_auth(b.since(m))))
        ow, sw = median([x[0] for x in o]), median([x[0] for x in sk])
        nreq = median(oreq)
        rss_pairs.append(("target complete", median([x[1] for x in o]), median([x[1] for x in sk])))
        t.add(2, f"target complete, {big_name.split(' (')[0]}: wall, target requests after auth",
              f"{s(ow)}, {nreq:.0f} req ({median(oall):.0f} with auth)", f"{s(sw)}, {median(sreq):.0f} req", "-",
              f"{ow / sw:.2f}x skopeo", rss_cell(o, sk), "<=3 req/target, <= skopeo's time",
              nreq <= 3 and ow <= sw)

        # 3: one layer changed since the last copy (v1 is in every target from row 1).
        v1 = dict(layouts["big"]["blobs"])
        new = {d: n for d, n in layouts["big2"]["blobs"] if d not in v1}
        layer = max(new, key=new.get)
        config = {d: n for d, n in new.items() if d != layer}
        expected = new[layer] + sum(config.values())
        o, sk, oputs, sputs = [], [], [], []
        for i in range(runs):
            m = b.mark()
            o.append(ours(a, src["big2"], b, f"ours-big-{i}:v2"))
            oputs.append(sorted(blob_puts(b.since(m))))
            m = b.mark()
            sk.append(skopeo(a, src["big2"], b, f"sk-big-{i}:v2"))
            sputs.append(sorted(blob_puts(b.since(m))))
        ow, sw = median([x[0] for x in o]), median([x[0] for x in sk])
        reported = [x[2]["bytes_uploaded"] for x in o]
        put_bytes = [sum(new.get(d, v1.get(d, 0)) for d in p) for p in oputs]
        sk_bytes = [sum(new.get(d, v1.get(d, 0)) for d in p) for p in sputs]
        exact = all(set(p) == set(new) for p in oputs) and all(r == expected for r in reported)
        rss_pairs.append(("one layer changed", median([x[1] for x in o]), median([x[1] for x in sk])))
        t.add(3, f"one layer changed ({new[layer] / MIB:.0f} MiB of {layouts['big2']['total_blob_bytes'] / 1e6:.0f} MB)"
                 f": wall, bytes moved (report / target's blob PUTs)",
              f"{s(ow)}, {median(reported):,.0f} / {median(put_bytes):,.0f} B",
              f"{s(sw)}, - / {median(sk_bytes):,.0f} B", "-", f"{ow / sw:.2f}x skopeo", rss_cell(o, sk),
              f"moved = the layer ({new[layer]:,} B) + its new config ({sum(config.values())} B)", exact)

        # 4: same registry, new name: mount vs upload.
        o, sk, mounts, puts = [], [], [], []
        for i in range(runs):
            m = a.mark()
            o.append(ours(a, src["big"], a, f"ours-mount-{i}:v1"))
            reqs = a.since(m)
            mounts.append(len(blob_mounts(reqs)))
            puts.append(len(blob_puts(reqs)))
            sk.append(skopeo(a, src["big"], a, f"sk-mount-{i}:v1"))
        ow, sw = median([x[0] for x in o]), median([x[0] for x in sk])
        rss_pairs.append(("same registry", median([x[1] for x in o]), median([x[1] for x in sk])))
        t.add(4, f"same registry, new name, {big_name.split(' (')[0]} (skopeo cold: no blob-info cache)",
              f"{s(ow)}, {median(mounts):.0f} mounted, {median(puts):.0f} uploaded", s(sw), "-",
              f"{ow / sw:.3f}x skopeo", rss_cell(o, sk), "<=0.05x skopeo", ow <= 0.05 * sw)

        # 5: multi-arch index.
        ml = layouts["multi"]
        fresh("multi", f"multi-arch index, 4 platforms, layers {multi.replace('M', ' MiB').replace(',', '/')} "
                       f"(2 shared), {ml['total_blob_bytes'] / 1e6:.0f} MB distinct", num=5)

        # 6: memory.
        worst = max(rss_pairs, key=lambda p: p[1] / p[2])
        t.add(6, "peak RSS, every copy above (worst ratio shown)", f"{worst[1]:.1f} MB", f"{worst[2]:.1f} MB", "-",
              f"{worst[1] / worst[2]:.2f}x skopeo ({worst[0]})", "-", "<= skopeo's on the same copy",
              all(p[1] <= p[2] for p in rss_pairs))
        g = next(p for p in rss_pairs if p[0].startswith(f"fresh copy, {gib_name}"))
        m1 = median([x[1] for x in mib_runs])
        t.add(6, f"peak RSS, {gib_name.split(' single')[0]} layer vs 1 MiB layer", f"+{g[1] - m1:.1f} MB "
              f"({g[1]:.1f} vs {m1:.1f})", "-", "-", "-", "-", "<=5 MB more", g[1] - m1 <= 5)
    finally:
        a.stop()
        b.stop()


def tls_rows(t, args, work):
    """Row 1 over TLS: the 352 MB image between two HTTPS registries."""
    quick, runs = args.quick, args.runs
    big = "1M,50M,300M" if not quick else "1M,5M,30M"
    big_name = "352 MB" if not quick else "37 MB (quick)"
    a = Registry("111111111111", work, tls=True)
    b = Registry("222222222222", work, tls=True)
    try:
        layout = build_image(os.path.join(work, "img-tls"), "v1", big, 1)
        push_layout(layout, a, "src-big:v1")
        log(f"TLS source src-big:v1: {layout['total_blob_bytes'] / 1e6:.1f} MB pushed to {a.url}")
        o, sk, fl = [], [], []
        for i in range(runs):
            o.append(ours(a, "src-big:v1", b, f"ours-tls-{i}:v1"))
            sk.append(skopeo(a, "src-big:v1", b, f"sk-tls-{i}:v1"))
            fl.append(floor(layout, b, f"floor-tls-{i}"))
        ow, sw, fw = median([x[0] for x in o]), median([x[0] for x in sk]), median(fl)
        oc, sc = median([x[3] for x in o]), median([x[3] for x in sk])
        ok = ow <= 0.8 * sw and ow <= 1.2 * fw
        why = "" if ok else ", ".join(
            w for w, bad in (("vs skopeo", ow > 0.8 * sw), ("vs floor", ow > 1.2 * fw)) if bad)
        spread = lambda xs: f"{min(xs):.2f}-{max(xs):.2f}"  # noqa: E731
        t.add(1, f"fresh copy, {big_name}, over TLS (rig CA); wall and CPU (user+sys) ranges over the runs",
              f"{s(ow)} ({spread([x[0] for x in o])}), {oc:.2f} CPU-s ({spread([x[3] for x in o])})",
              f"{s(sw)} ({spread([x[0] for x in sk])}), {sc:.2f} CPU-s ({spread([x[3] for x in sk])})",
              s(fw), f"{ow / sw:.2f}x skopeo, {ow / fw:.2f}x floor; CPU {oc / sc:.2f}x skopeo",
              f"{median([x[1] for x in o]):.1f} / {median([x[1] for x in sk]):.1f}",
              "<=0.8x skopeo, <=1.2x floor", ok, why, order=1)
    finally:
        a.stop()
        b.stop()


def cold_rows(t, args):
    times, aws_calls = bench_lambda.cold_start(args.starts)
    wall, cpu = [x[0] for x in times], [x[1] for x in times]
    med = median(wall)
    t.add(7, f"replicator cold start: spawn to first /next, x86_64 release (median of {len(times)}, "
             f"min {min(wall):.1f}, max {max(wall):.1f} ms)",
          f"{med:.1f} ms wall, {median(cpu):.1f} ms CPU; {aws_calls} AWS connections before /next",
          "-", "-", "-", "-", "<=20 ms", med <= 20 and aws_calls == 0,
          "" if aws_calls == 0 else "start-up calls AWS")
    # Where the time goes: rustls-native-certs reads the CA bundle *and* every
    # file of the CA directory, once for the SDK's client and once for ours.
    empty = tempfile.mkdtemp(prefix="ecr-bridge-certs-")
    try:
        times, _ = bench_lambda.cold_start(args.starts, {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
                                                         "SSL_CERT_DIR": empty})
    finally:
        shutil.rmtree(empty, ignore_errors=True)
    t.add(7, "  the same with SSL_CERT_DIR empty (CA bundle only; for comparison)",
          f"{median([x[0] for x in times]):.1f} ms wall, {median([x[1] for x in times]):.1f} ms CPU",
          "-", "-", "-", "-", "-", None, order=1)


def zip_rows(t, work):
    for fn, (zipped, unzipped) in bench_lambda.zip_sizes(work).items():
        t.add(7, f"{fn} zip, arm64 (cargo lambda build --release --arm64 --output-format zip)",
              f"{zipped:,} B = {zipped / 1e6:.2f} MB (bootstrap {unzipped / 1e6:.2f} MB)", "-", "-", "-", "-",
              "<=8 MB", zipped <= 8e6, order=2)


def access_rows(t):
    figs = bench_access.calls_per_user()
    for name, f in figs.items():
        noop = name.startswith("nothing")
        goal = "<=3 calls/user, 0 writes" if noop else "<=3 calls/user"
        ok = f["per_user"] <= 3 and (not noop or f["writes"] == 0)
        why = ""
        if not ok and f["per_user"] > 3:
            why = "4th call/user: the re-Query after each write that catches a concurrent table change"
        t.add(8, f"access sync, 1,000 records over 100 users: {name}",
              f"{f['per_user']:.2f} calls/user, {f['writes']} writes (+{f['assume_role']} AssumeRole; {f['ops']})",
              "-", "-", "-", "-", goal, ok, why)


def quota_rows(t):
    f = bench_quota.concurrent_copies()
    copies, completed = f["copies"], f["completed"]
    wall, floor, puts = f["wall_s"], f["floor_s"], f["puts"]
    ratio = wall / floor if floor else float("inf")
    # From the first manifest PUT to the last: the part the quota governs.
    # Before it the blobs move (20 copies on this machine at once).
    put_phase = f["last_put_s"] - f["first_put_s"]
    # The floor counted 5 PutImages a copy (the index by digest, then
    # by tag): 100 PUTs, 10 s. The copies now need 4 (the index by its tag).
    old_floor = 5 * copies / 10
    ok = completed == copies and ratio <= 1.5 and f["test_passed"]
    why = ""
    if not ok:
        why = ", ".join(w for w, bad in ((f"{copies - completed} failed", completed < copies),
                                         (f"wall > 1.5x floor; blobs until the first PUT at {f['first_put_s']:.1f} s",
                                          ratio > 1.5),
                                         ("test failed", not f["test_passed"])) if bad)
    t.add(9, f"{copies} concurrent `ecr-bridge copy` processes (debug build), 3-platform image, target enforcing "
             f"PutImage 10/s: completed, wall vs the quota's floor",
          f"{completed}/{copies} in {s(wall)}; {puts} PUTs, {f['throttled']} 429s; PUTs from "
          f"{f['first_put_s']:.1f} to {f['last_put_s']:.1f} s ({puts / max(put_phase, 1e-3):.1f} per s)",
          "-", f"{s(floor)} ({puts} PUTs / 10 per s; {old_floor:.0f} s for the issue's 100)",
          f"{ratio:.2f}x floor ({wall / old_floor:.2f}x the 100-PUT floor); PUT phase {put_phase / floor:.2f}x", "-",
          f"{copies}/{copies}, <=1.5x floor", ok, why)


def backfill_rows(t, sizes):
    for order, (n, full, short) in enumerate(bench_backfill.listing_figures(sizes)):
        for f in (full, short):
            if f is None:
                continue
            deadline = f is short
            label = f" with {f['seconds']:g} s invocations" if deadline else ""
            if f["enqueued"] != n:
                print(f"FAIL: backfill of {n:,} image records{label}: {f['enqueued']:,} images enqueued", flush=True)
            steps = f["steps"]
            how = [f"start {f['start_s']:.2f} s + {steps.get('images', 0)} image steps, median "
                   f"{f['step_median_s'] * 1000:.0f} ms"]
            if steps.get("repositories"):
                how.append(f"{steps['repositories']} repository steps")
            how.append(f"{f['continuations']} continuations; longest {f['longest_s']:.2f} s")
            if deadline:
                how.append(f"{f['over']} past {f['seconds']:g} s")
            ours = (f"{f['enqueued']:,} enqueued ({f['distinct']:,} distinct) in {f['lambda_s']:.2f} s "
                    f"({f['per_s']:,.0f} images/s; CPU {f['cpu_s']:.2f} s); {f['invocations']} invocations "
                    f"({', '.join(how)})" + ("" if deadline else f"; seeding {f['seed_s']:.0f} s"))
            goal = f"{n:,} enqueued, each once" + (f"; none past {f['seconds']:g} s" if deadline else "")
            ok = not f["problems"] and not (deadline and f["over"])
            why = "; ".join(f["problems"] + ([f"{f['over']} invocations past their time"] if deadline and f["over"]
                                             else []))
            t.add(10, f"backfill listing, {n:,} image records over {f['repositories']} repositories (moto){label}: "
                      f"enqueued, Lambda time of the listing invocations, images/s",
                  ours, "-", "-", "-", f"{f['rss_mb']:.1f}", goal, ok, why, order=2 * order + deadline)


def reconcile_rows(t, sizes):
    for order, (n, seeded, passes) in enumerate(bench_reconcile.reconcile_figures(sizes)):
        for k, f in enumerate(passes):
            changed = f["pass"] == "changed"
            if f["state"] != "finished":
                print(f"FAIL: full reconcile of {n:,} users ({f['pass']}): the run is {f['state']!r}", flush=True)
            steps = f["steps"]
            how = (f"start {f['start_s']:.2f} s + {steps.get('segment', 0)} segment and {steps.get('sweep', 0)} "
                   f"sweep steps, median {f['step_median_s']:.2f} s, longest {f['longest_s']:.2f} s; "
                   f"{f['continuations']} continuations")
            ours = (f"{f['run_users']:,} users in {f['lambda_s']:.2f} s of Lambda time ({f['per_s']:,.0f} users/s; "
                    f"CPU {f['cpu_s']:.2f} s, moto's {f['moto_cpu_s']:.1f} s); {f['invocations']} invocations ({how}); "
                    f"{f['calls_per_user']:.2f} calls/user ({f['calls']:,} calls), {f['writes']:,} writes "
                    f"(granted {f['granted']:,}, changed {f['changed']:,}, revoked {f['revoked']:,}); "
                    f"run {f['state']}"
                    + (f"; {f['sampled']} policies checked; seeding {seeded['seed_s']:.0f} s" if changed else ""))
            goal = ("run finished, every user once, none failed; grants and revokes as the table says" if changed
                    else "run finished, every user once, 0 writes")
            t.add(11, f"full reconcile, {n:,} users ({seeded['rows']:,} rows), {seeded['repositories']:,} repositories "
                      f"({seeded['orphans']:,} orphans; moto), {f['pass']}: users, Lambda time, users/s, "
                      f"calls/user, writes",
                  ours, "-", "-", "-", f"{f['rss_mb']:.1f}", goal, not f["problems"], "; ".join(f["problems"]),
                  order=2 * order + k)


def sizes_arg(ap, name, value):
    """A comma-separated list of sizes, each 1 or more (`_` allowed: 10_000)."""
    try:
        sizes = [int(x.replace("_", "")) for x in value.split(",") if x.strip()]
    except ValueError:
        ap.error(f"{name}: comma-separated numbers, got {value!r}")
    if not sizes or min(sizes) < 1:
        ap.error(f"{name}: at least one size, each 1 or more")
    return sizes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="alternating runs per copy row (median)")
    ap.add_argument("--starts", type=int, default=10, help="cold starts (median)")
    ap.add_argument("--quick", action="store_true",
                    help="small images, 3 runs, 5 starts: checks the script, not the numbers")
    ap.add_argument("--only", default="copy,tls,cold,zip,access,quota,backfill,reconcile",
                    help="sections to run: copy,tls,cold,zip,access,quota,backfill,reconcile (tls: row 1's 352 MB "
                         "copy over HTTPS; quota: row 9, 20 copies under a 10/s PutImage quota; backfill: row 10; "
                         "reconcile: row 11)")
    ap.add_argument("--backfill-sizes", default=None,
                    help="image records per backfill run, comma-separated (default 1000,10000,50000; "
                         "--quick: 1000); seeding 50,000 in moto takes about 27 minutes")
    ap.add_argument("--reconcile-sizes", default=None,
                    help="users per full reconcile, comma-separated (default 1000,10000,50000; --quick: 1000)")
    args = ap.parse_args()
    if args.quick:
        args.runs = min(args.runs, 3)
        args.starts = min(args.starts, 5)
    if args.backfill_sizes is None:
        args.backfill_sizes = "1000" if args.quick else "1000,10000,50000"
    if args.reconcile_sizes is None:
        args.reconcile_sizes = "1000" if args.quick else "1000,10000,50000"
    backfill_sizes = sizes_arg(ap, "--backfill-sizes", args.backfill_sizes)
    reconcile_sizes = sizes_arg(ap, "--reconcile-sizes", args.reconcile_sizes)
    sections = set(args.only.split(","))
    if os.environ.get("BENCH_ZIP", "1") == "0":
        sections.discard("zip")

    load_before = load()
    started = time.monotonic()
    work = tempfile.mkdtemp(prefix="ecr-bridge-bench-", dir=os.environ.get("BENCH_DIR"))
    t = Table()
    try:
        # Builds first, so no compiler competes with the timed runs. A section
        # that cannot run (say the tree does not build) is a row, not the end.
        for name, num, run in (("zip", 7, lambda: zip_rows(t, work)), ("access", 8, lambda: access_rows(t)),
                               ("quota", 9, lambda: quota_rows(t)),
                               ("cold", 7, lambda: cold_rows(t, args)), ("copy", 1, lambda: copy_rows(t, args, work)),
                               ("tls", 1, lambda: tls_rows(t, args, work)),
                               ("backfill", 10, lambda: backfill_rows(t, backfill_sizes)),
                               ("reconcile", 11, lambda: reconcile_rows(t, reconcile_sizes))):
            if name not in sections:
                continue
            try:
                run()
            except (SystemExit, subprocess.CalledProcessError, OSError) as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                log(f"section {name} failed: {e}")
                t.add(num, f"section '{name}' could not run", first[:160], met=False, why="see the log above",
                      order=9)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    t.print()
    print()
    print(f"copy rows: median of {args.runs} alternating runs; cold start: median of {args.starts} starts; "
          f"{os.cpu_count()} cores; load average (1/5/15 min) {' '.join(load_before)} at start, "
          f"{' '.join(load())} at end; {time.monotonic() - started:.0f} s in all"
          + (" (--quick: sizes and runs reduced)" if args.quick else ""))


if __name__ == "__main__":
    main()
