#!/usr/bin/env python3
"""Scenarios for hub and spoke: deploy/source-account.yaml (a spoke) and
template.yaml's hub parts (SpokeAccountIds, SpokeOrganizationId,
SourceRoleArns).

    check-source-account.py                    the scenarios below
    check-source-account.py --hub-lint CFN_LINT
        cfn-lint of template.yaml deployed as a hub: the template expanded by
        SAM first (cfn-lint 1.x drops --parameters on a SAM template after
        its own transform, so linting template.yaml itself would not see
        them), list parameters passed as lists (a parameter file); and one
        deploy that must be refused, so that the parameters are seen at all

Offline, without AWS, with check-target-account.py's evaluator
(scripts/lib/cfn_eval.py): parameters are checked the way CloudFormation
checks them at deploy time (a value for every parameter without a Default,
MinLength, MaxLength, AllowedPattern per value or per list item,
AllowedValues, and the template's Rules), resources are rendered for those
values (Ref, Fn::Sub, Fn::If, Fn::Join, Fn::Split, Fn::Select, conditions),
and requests are decided as IAM decides within one policy.

What it proves. Spoke: the hub's bus, the replicator's role and an
ExternalId are required; the read role trusts only the replicator's role
with that ExternalId, may only read (pull and list) repositories under its
prefixes, and list repository names; the forward role may only put events
on the hub's bus and is only EventBridge's of this account; the forward
rule has template.yaml's ImageActionRule pattern. Hub: the replicator may
assume exactly TargetRoleArns, SourceRoleArn and SourceRoleArns for every
combination of the last two being empty (never an empty ARN); the bus
admits the listed accounts and/or the organisation, and its rule feeds the
replicator. The last scenario checks a copy of the spoke template whose read
role lost its ExternalId, expecting failure, so the check can fail.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))

from cfn_eval import REGION, Renderer, check_iam, decide, load_template, parameters, refused, report  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HUB = "111111111111"
SPOKE = "333333333333"
SPOKE_B = "444444444444"
TARGET = "222222222222"

REPLICATOR = f"arn:aws:iam::{HUB}:role/ecr-bridge-replicator"
HUB_BUS = f"arn:aws:events:{REGION}:{HUB}:event-bus/ecr-bridge-hub"
PUSH_ROLE = f"arn:aws:iam::{TARGET}:role/ecr-bridge-push"
READ_A = f"arn:aws:iam::{SPOKE}:role/ecr-bridge-source-read"
READ_B = f"arn:aws:iam::{SPOKE_B}:role/ecr-bridge-source-read"
SPOKE_BASE = {"HubEventBusArn": HUB_BUS, "ReplicatorRoleArn": REPLICATOR, "ReadExternalId": "read-333333333333"}
HUB_BASE = {"DeployAccessSync": "false", "TargetRoleArns": PUSH_ROLE,
            "MappingDocument": '{"version":1,"rules":[]}'}


def load(path: str) -> dict:
    return load_template(ROOT / path)


def spoke(template: dict, given: dict) -> Renderer:
    return Renderer(template, parameters(template, {**SPOKE_BASE, **given}), SPOKE)


def hub(template: dict, given: dict) -> Renderer:
    return Renderer(template, parameters(template, {**HUB_BASE, **given}), HUB)


def policy(props: dict) -> list[dict]:
    return props["Policies"][0]["PolicyDocument"]["Statement"]


def repo(name: str, account: str = SPOKE) -> str:
    return f"arn:aws:ecr:{REGION}:{account}:repository/{name}"


READ_ACTIONS = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability",
                "ecr:DescribeImages", "ecr:ListImages"]
WRITE_ACTIONS = ["ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload",
                 "ecr:BatchDeleteImage", "ecr:CreateRepository", "ecr:SetRepositoryPolicy", "ecr:DeleteRepository"]


def spoke_scenarios(t: dict, hub_template: dict):
    for name in SPOKE_BASE:
        why = refused(t, {k: v for k, v in SPOKE_BASE.items() if k != name})
        yield (f"spoke: given no {name} when deploying then refused", why is not None and name in why, why)
    for name, bad in [("HubEventBusArn", "*"), ("HubEventBusArn", f"arn:aws:events:{REGION}:*:event-bus/x"),
                      ("ReplicatorRoleArn", f"arn:aws:iam::{HUB}:role/*"), ("ReadExternalId", "x"),
                      ("SourceRepositoryPrefixes", "*"), ("SourceRepositoryPrefixes", "team-a,,team-b"),
                      ("SourceRepositoryPrefixes", "a,b,c,d,e,f")]:
        why = refused(t, {**SPOKE_BASE, name: bad})
        yield f"spoke: given {name} {bad!r} when deploying then refused", why is not None, why
    why = refused(t, {**SPOKE_BASE, "SourceRepositoryPrefixes": "team-a,team-b,c,d,e"})
    yield "spoke: given 5 prefixes when deploying then accepted", why is None, why

    r = spoke(t, {"SourceRepositoryPrefixes": "team-a,team-b"})
    read = r.resource("ReadRole")
    trust = read["AssumeRolePolicyDocument"]["Statement"]
    want = [{"Sid": "ImageReplicatorOnly", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{HUB}:root"},
             "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": "read-333333333333"},
                                                       "ArnEquals": {"aws:PrincipalArn": REPLICATOR}}}]
    yield ("spoke: the read role trusts only the hub's replicator role, with the ExternalId",
           trust == want, trust)
    stmts = policy(read)
    got = {a: decide(stmts, a, repo("team-a-api")) for a in READ_ACTIONS}
    yield "spoke: given prefixes when reading team-a-api then every read action is allowed", set(got.values()) == {"Allow"}, got
    got = {a: decide(stmts, a, repo("other")) for a in READ_ACTIONS}
    yield "spoke: given prefixes when reading a repository outside them then denied", "Allow" not in got.values(), got
    got = {a: decide(stmts, a, repo(n)) for a in WRITE_ACTIONS for n in ("team-a-api", "other")}
    yield "spoke: the read role may write nothing", "Allow" not in got.values(), got
    got = (decide(stmts, "ecr:DescribeRepositories", repo("*")), decide(stmts, "ecr:GetAuthorizationToken", "*"),
           decide(stmts, "ecr:BatchGetImage", repo("team-a-api", HUB)))
    yield ("spoke: backfill may list this registry's repositories, get a token, and read no other account",
           got == ("Allow", "Allow", "ImplicitDeny"), got)
    stmts = policy(spoke(t, {}).resource("ReadRole"))
    got = decide(stmts, "ecr:BatchGetImage", repo("anything/at-all"))
    yield "spoke: given no prefixes when reading any repository of this account then allowed", got == "Allow", got

    fwd = r.resource("ForwardRole")
    trust = fwd["AssumeRolePolicyDocument"]["Statement"]
    ok = (len(trust) == 1 and trust[0]["Principal"] == {"Service": "events.amazonaws.com"}
          and trust[0]["Condition"] == {"StringEquals": {"aws:SourceAccount": SPOKE}})
    yield "spoke: the forward role is EventBridge's of this account only", ok, trust
    stmts = policy(fwd)
    got = (decide(stmts, "events:PutEvents", HUB_BUS),
           decide(stmts, "events:PutEvents", f"arn:aws:events:{REGION}:{HUB}:event-bus/default"),
           [s["Action"] for s in stmts])
    yield "spoke: the forward role may only put events on the hub bus", got == ("Allow", "ImplicitDeny", ["events:PutEvents"]), got

    for deletes in ("false", "true"):
        for prefixes in ("", "team-a,team-b"):
            rule = spoke(t, {"ForwardDeletes": deletes, "SourceRepositoryPrefixes": prefixes}).resource("ForwardRule")
            pattern = json.loads(rule["EventPattern"])
            h = hub(hub_template, {"PropagateDeletes": deletes, "SourceRepositoryPrefixes": prefixes})
            same = json.loads(h.resource("ImageActionRule")["EventPattern"])
            actions = ["PUSH", "DELETE"] if deletes == "true" else ["PUSH"]
            names = [{"prefix": p} for p in prefixes.split(",")] if prefixes else None
            ok = (pattern == same and pattern["detail"]["action-type"] == actions
                  and pattern["detail"].get("repository-name") == names
                  and rule["Targets"] == [{"Id": "ecr-bridge-hub", "Arn": HUB_BUS, "RoleArn": "GetAtt:ForwardRole.Arn"}])
            yield (f"spoke: given ForwardDeletes={deletes} prefixes={prefixes!r} then the forward rule has "
                   "ImageActionRule's pattern and targets the hub bus with the forward role", ok, (pattern, rule["Targets"]))


def hub_scenarios(t: dict):
    for name, bad in [("SpokeAccountIds", "12"), ("SpokeAccountIds", f"{SPOKE},,{SPOKE_B}"),
                      ("SpokeAccountIds", f"{SPOKE},"), ("SpokeOrganizationId", "o-x"),
                      ("SourceRoleArns", f"arn:aws:iam::{SPOKE}:role/*"), ("SourceRoleArns", f"{READ_A},")]:
        why = refused(t, {**HUB_BASE, name: bad})
        yield f"hub: given {name} {bad!r} when deploying then refused", why is not None, why

    targets = [PUSH_ROLE, f"arn:aws:iam::555555555555:role/ecr-bridge-push"]
    for source in ("", f"arn:aws:iam::{HUB}:role/source"):
        for sources in ("", f"{READ_A},{READ_B}"):
            r = hub(t, {"TargetRoleArns": ",".join(targets), "SourceRoleArn": source, "SourceRoleArns": sources})
            stmts = policy(r.resource("ReplicatorRole"))
            assume = [s for s in stmts if s.get("Sid") == "AssumeConfiguredRoles"][0]["Resource"]
            want = targets + ([source] if source else []) + (sources.split(",") if sources else [])
            yield (f"hub: given SourceRoleArn={'set' if source else 'empty'} SourceRoleArns={'set' if sources else 'empty'} "
                   "then the replicator may assume exactly those roles, none empty", assume == want, assume)

    r = hub(t, {})
    got = [name for name in ("HubEventBus", "HubEventBusAccountsPolicy", "HubEventBusOrganizationPolicy",
                             "HubImageActionRule", "HubImageActionRulePermission") if r.resource(name) is not None]
    yield "hub: given no spokes then no hub resources", got == [], got
    r = hub(t, {"DeployReplicator": "false", "SpokeAccountIds": SPOKE})
    yield "hub: given spokes but no replicator then no hub bus", r.resource("HubEventBus") is None, None

    r = hub(t, {"SpokeAccountIds": f"{SPOKE},{SPOKE_B}"})
    pol = r.resource("HubEventBusAccountsPolicy")
    want = {"EventBusName": "Ref:HubEventBus", "StatementId": "ecr-bridge-spoke-accounts",
            "Statement": {"Effect": "Allow", "Principal": {"AWS": [SPOKE, SPOKE_B]}, "Action": "events:PutEvents",
                          "Resource": "GetAtt:HubEventBus.Arn"}}
    ok = pol == want and r.resource("HubEventBusOrganizationPolicy") is None
    yield "hub: given SpokeAccountIds then the bus admits exactly those accounts", ok, pol
    r = hub(t, {"SpokeOrganizationId": "o-abcdef1234"})
    pol = r.resource("HubEventBusOrganizationPolicy")
    ok = (r.resource("HubEventBusAccountsPolicy") is None and pol["Statement"]["Principal"] == "*"
          and pol["Statement"]["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": "o-abcdef1234"}})
    yield "hub: given SpokeOrganizationId then the bus admits only accounts of that organisation", ok, pol
    r = hub(t, {"SpokeAccountIds": SPOKE, "SpokeOrganizationId": "o-abcdef1234"})
    got = [r.resource(n) is not None for n in ("HubEventBusAccountsPolicy", "HubEventBusOrganizationPolicy")]
    yield "hub: given both then both statements", got == [True, True], got

    for deletes in ("false", "true"):
        r = hub(t, {"SpokeAccountIds": SPOKE, "PropagateDeletes": deletes, "SourceRepositoryPrefixes": "kuali-coeus"})
        rule = r.resource("HubImageActionRule")
        pattern = json.loads(rule["EventPattern"])
        perm = r.resource("HubImageActionRulePermission")
        ok = (rule["EventBusName"] == "Ref:HubEventBus" and pattern["source"] == ["aws.ecr"]
              and pattern["detail"] == {"result": ["SUCCESS"],
                                        "action-type": ["PUSH", "DELETE"] if deletes == "true" else ["PUSH"]}
              and rule["Targets"] == [{"Id": "image-replicator", "Arn": "GetAtt:ImageReplicatorFunction.Arn"}]
              and perm["SourceArn"] == "GetAtt:HubImageActionRule.Arn" and perm["SourceAccount"] == HUB)
        yield (f"hub: given PropagateDeletes={deletes} then the hub rule passes the spokes' image actions "
               "(not filtered by this account's prefixes) to the replicator", ok, (pattern, perm))
    out = t["Outputs"]["HubEventBusArn"]
    yield "hub: HubEventBusArn is an output", out.get("Condition") == "Hub", out


def self_test(t: dict):
    mutant = copy.deepcopy(t)
    cond = mutant["Resources"]["ReadRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Condition"]
    del cond["StringEquals"]
    failed = [name for name, ok, _ in spoke_scenarios(mutant, load("template.yaml")) if not ok]
    yield ("self-test: given the read role without its ExternalId then the trust scenario fails",
           any("trusts only" in n for n in failed), failed)


def hub_lint(cfn_lint: str) -> int:
    """cfn-lint of template.yaml, expanded by SAM, with hub parameters."""
    expanded = check_iam().sam_transform(load("template.yaml"))
    cases = [
        ("spoke accounts", {"SpokeAccountIds": [SPOKE, SPOKE_B]}, True),
        ("spoke organisation", {"SpokeOrganizationId": "o-abcdef1234"}, True),
        ("both, with SourceRoleArns and SourceRoleArn",
         {"SpokeAccountIds": [SPOKE], "SpokeOrganizationId": "o-abcdef1234", "SourceRoleArns": [READ_A, READ_B],
          "SourceRoleArn": f"arn:aws:iam::{HUB}:role/source", "PropagateDeletes": "true"}, True),
        ("an Architecture it does not allow (must be refused: the parameters are seen)",
         {"SpokeAccountIds": [SPOKE], "Architecture": "sparc"}, False),
    ]
    # The clean deploys in one cfn-lint run (one parameter set per file), the
    # refused one in a second.
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template.json"
        template.write_text(json.dumps(expanded))
        files = {True: [], False: []}
        for i, (name, given, clean) in enumerate(cases):
            values = {**HUB_BASE, "TargetRoleArns": [PUSH_ROLE], **given}
            params = Path(tmp) / f"hub-{i}.json"
            params.write_text(json.dumps([{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]))
            files[clean].append((name, str(params)))
        for clean, group in files.items():
            run = subprocess.run([cfn_lint, str(template), "--parameter-files", *[f for _, f in group]],
                                 capture_output=True, text=True)
            ok = (run.returncode == 0) == clean
            failed += not ok
            for name, _ in group:
                print(f"check-source-account: {'ok' if ok else 'FAIL'}: cfn-lint template.yaml as a hub, {name}")
            if not ok or not clean:
                print("".join("      " + line + "\n" for line in (run.stdout + run.stderr).splitlines()), end="")
    print(f"check-source-account: hub lint: {len(files)} runs, {failed} failed")
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--hub-lint"] and len(argv) == 2:
        return hub_lint(argv[1])
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    spoke_t, hub_t = load("deploy/source-account.yaml"), load("template.yaml")
    return report("check-source-account",
                  [*spoke_scenarios(spoke_t, hub_t), *hub_scenarios(hub_t), *self_test(spoke_t)])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
