"""20 concurrent copies under ECR's PutImage quota, for scripts/bench.py.

The figures come from the test
given_a_put_image_quota_of_10_per_second_when_twenty_concurrent_cli_copies_...
in tests/ecr_quotas.rs: 20 `ecr-bridge copy` processes (the debug build the
tests use; separate processes, as Lambda containers are) copy a 3-platform
image (about 2 MB, 10 blobs) from a docker-registry into 20 repositories of
another one behind the rig's ECR front, which answers PutImage over 10/s with
ECR's 429 TOOMANYREQUESTS (no Retry-After). The test prints one line:

    quota-bench: completed=20 copies=20 wall_s=9.87 floor_s=8.00 puts=80 throttled=123 first_put_s=1.20 last_put_s=9.80

floor_s is the manifest PUTs the target received divided by the quota, the
least time those PutImages can take; the test asserts that every copy
completed with the source's digests and that puts is 4 per copy.
"""

import re
import subprocess

from bench_copy import ROOT, log

TEST = "twenty_concurrent"
LINE = re.compile(r"^quota-bench: (?P<fields>.*)$")


def concurrent_copies():
    """{completed, copies, wall_s, floor_s, puts, throttled, first_put_s, last_put_s} as the test printed them."""
    # The test runs target/debug/ecr-bridge: build it first, or it may be stale.
    build = ["cargo", "build", "-q", "-p", "ecr-bridge-cli", "--bin", "ecr-bridge"]
    log("quota: " + " ".join(build))
    subprocess.run(build, cwd=ROOT, check=True)
    cmd = ["cargo", "nextest", "run", "-p", "ecr-bridge-tests", "--test", "ecr_quotas",
           "-E", f"test(/{TEST}/)", "--no-capture"]
    log("quota: " + " ".join(cmd))
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    figures = None
    for line in (p.stdout + "\n" + p.stderr).splitlines():
        m = LINE.match(line.strip())
        if m:
            figures = {}
            for kv in m["fields"].split():
                k, _, v = kv.partition("=")
                figures[k] = float(v) if "." in v else int(v)
    if figures is None:
        raise SystemExit(f"quota test printed no quota-bench line ({p.returncode}):\n"
                         f"{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    # A failed test still printed its figures: the row shows them as not met.
    figures["test_passed"] = p.returncode == 0
    if p.returncode != 0:
        log(f"quota: the test failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return figures
