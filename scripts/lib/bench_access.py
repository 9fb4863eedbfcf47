"""Access sync's AWS calls per distinct user, for scripts/bench.py.

The figures come from the test
given_batches_of_1000_records_over_100_users_... in tests/access_sync_operations.rs:
it streams real DynamoDB Streams batches of 1,000 records over 100 users out
of moto, runs them through the use case, and counts what moto received
(through the rig's counting AWS front). It prints one line per batch:

      every user granted   4.00 calls/user (GetRepositoryPolicy 100, ...), writes 100, plus 1 AssumeRole
"""

import os
import re
import subprocess

from bench_copy import ROOT, log

TEST = "batches_of_1000"
LINE = re.compile(
    r"^\s*(?P<name>.+?)\s+(?P<per_user>[0-9.]+) calls/user \((?P<ops>[^)]*)\), writes (?P<writes>\d+), "
    r"plus (?P<assume>\d+) AssumeRole\s*$"
)


def calls_per_user():
    """{batch name: {per_user, ops, writes, assume_role}} as the test printed them."""
    cmd = ["cargo", "nextest", "run", "-p", "ecr-bridge-tests", "--test", "access_sync_operations",
           "-E", f"test(/{TEST}/)", "--no-capture"]
    log("access sync: " + " ".join(cmd))
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"access sync test failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    out = {}
    for line in (p.stdout + "\n" + p.stderr).splitlines():
        m = LINE.match(line)
        if m:
            out[m["name"]] = {
                "per_user": float(m["per_user"]),
                "ops": m["ops"],
                "writes": int(m["writes"]),
                "assume_role": int(m["assume"]),
            }
    if not out:
        raise SystemExit(f"no calls/user lines in the test's output:\n{p.stdout[-3000:]}")
    return out
