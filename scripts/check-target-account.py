#!/usr/bin/env python3
"""Scenarios for deploy/target-account.yaml's push role (issue 13, point 5).

    check-target-account.py [TEMPLATE]     default deploy/target-account.yaml

Offline, without AWS, with scripts/lib/cfn_eval.py (shared with
check-source-account.py): parameters are checked the way CloudFormation
checks them at deploy time (a value for every parameter without a Default,
MinLength, MaxLength, AllowedPattern as a whole-value match, AllowedValues,
the template's Rules), the push role's policy is rendered for those values
(Ref, Fn::Sub, Fn::If, conditions), and requests are decided the way IAM
decides within one identity policy: an explicit Deny wins, then an Allow,
else denied.

What it proves: PushRepositoryPrefix is required and cannot be empty (an
empty prefix granted repository/*); the push role is explicitly denied the
user repositories whatever its prefix covers, in every region, under
PushDeniedRepositoryPrefix or else PolicyRepositoryPrefix, also without the
policy role. The last scenario removes the Deny from a copy of the template
and expects the check to fail, so the check can fail.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))

from cfn_eval import REGION, Renderer, decide, load_template, parameters, refused, report  # noqa: E402

ACCOUNT = "222222222222"
BASE = {  # what every scenario deploys with
    "ReplicatorRoleArn": "arn:aws:iam::111111111111:role/ecr-bridge-replicator",
    "PushExternalId": "kuali-sync",
    "AccessSyncRoleArn": "arn:aws:iam::111111111111:role/ecr-bridge-access-sync",
    "PolicyExternalId": "gen3-access",
}
USER_REPOSITORY = "nextflow-approved/jane-2edoe-40x-2eio"


def push_policy(template: dict, given: dict) -> list[dict]:
    """The push role's statements for a deploy with `given` parameters."""
    r = Renderer(template, parameters(template, {**BASE, **given}), ACCOUNT)
    role = template["Resources"]["PushRole"]
    if not r.condition(role["Condition"]):
        return []
    return r.render(role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"])


def repo(name: str, region: str = REGION) -> str:
    return f"arn:aws:ecr:{region}:{ACCOUNT}:repository/{name}"


PUSH_ACTIONS = ["ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload",
                "ecr:BatchGetImage", "ecr:BatchCheckLayerAvailability", "ecr:DescribeRepositories",
                "ecr:CreateRepository", "ecr:BatchDeleteImage"]
ALLOW_ALL = {"PushAllowCreateRepository": "true", "PushAllowDeletes": "true"}


def scenarios(t: dict):
    """(name, passed, detail) for each scenario."""
    missing = refused(t, BASE)
    yield ("given no PushRepositoryPrefix when deploying then CloudFormation refuses the stack",
           missing is not None and "PushRepositoryPrefix" in missing, missing)
    for bad in ["", "*", "Coeus", "/coeus"]:
        why = refused(t, {**BASE, "PushRepositoryPrefix": bad})
        yield (f"given PushRepositoryPrefix {bad!r} when deploying then refused", why is not None, why)
    for good in ["coeus", "team/", "mirror/kuali-"]:
        why = refused(t, {**BASE, "PushRepositoryPrefix": good})
        yield (f"given PushRepositoryPrefix {good!r} when deploying then accepted", why is None, why)

    coeus = push_policy(t, {"PushRepositoryPrefix": "coeus", **ALLOW_ALL})
    got = [decide(coeus, a, repo("coeus-feature")) for a in PUSH_ACTIONS]
    yield ("given prefix coeus when pushing coeus-feature then every push action is allowed",
           set(got) == {"Allow"}, got)
    got = decide(coeus, "ecr:PutImage", repo(USER_REPOSITORY))
    yield ("given prefix coeus when pushing a user repository then it is denied", got != "Allow", got)

    for wide in ["n", "nextflow-approved/"]:
        policy = push_policy(t, {"PushRepositoryPrefix": wide, **ALLOW_ALL})
        got = {a: decide(policy, a, repo(USER_REPOSITORY)) for a in PUSH_ACTIONS}
        yield (f"given prefix {wide!r} covering the user repositories when pushing into one then "
               "every action is explicitly denied", set(got.values()) == {"Deny"}, got)
    got = decide(policy, "ecr:PutImage", repo(USER_REPOSITORY, "eu-west-1"))
    yield ("given the deny when pushing a user repository of another region then denied too", got == "Deny", got)
    got = decide(policy, "ecr:GetAuthorizationToken", "*")
    yield ("given the deny when asking for a registry token then still allowed", got == "Allow", got)

    alone = push_policy(t, {"PushRepositoryPrefix": "n", "EnablePolicyRole": "false",
                            "PolicyRepositoryPrefix": "users"})
    got = (decide(alone, "ecr:PutImage", repo("users/jane")), decide(alone, "ecr:PutImage", repo("nx")))
    yield ("given no policy role when no PushDeniedRepositoryPrefix is set then PolicyRepositoryPrefix is denied",
           got == ("Deny", "Allow"), got)
    own = push_policy(t, {"PushRepositoryPrefix": "n", "PushDeniedRepositoryPrefix": "nb/users"})
    got = (decide(own, "ecr:PutImage", repo("nb/users/jane")), decide(own, "ecr:PutImage", repo(USER_REPOSITORY)))
    yield ("given PushDeniedRepositoryPrefix when pushing under it then denied, and under the policy prefix not",
           got == ("Deny", "Allow"), got)

    # The check must be able to fail: without the Deny, the wide prefix reaches the user.
    mutant = copy.deepcopy(t)
    stmts = mutant["Resources"]["PushRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    stmts[:] = [s for s in stmts if not (isinstance(s, dict) and s.get("Effect") == "Deny")]
    got = decide(push_policy(mutant, {"PushRepositoryPrefix": "n"}), "ecr:PutImage", repo(USER_REPOSITORY))
    yield ("given the template without its Deny (self-test) when pushing a user repository then allowed",
           got == "Allow", got)


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent / "deploy/target-account.yaml"
    return report("check-target-account", scenarios(load_template(path)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
