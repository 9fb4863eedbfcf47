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

Offline, without AWS, like check-target-account.py: parameters are checked
the way CloudFormation checks them at deploy time (a value for every
parameter without a Default, AllowedPattern per value or per list item,
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
import fnmatch
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HUB = "111111111111"
SPOKE = "333333333333"
SPOKE_B = "444444444444"
TARGET = "222222222222"
REGION = "us-east-1"
STACK = "ecr-bridge"
NO_VALUE = object()

REPLICATOR = f"arn:aws:iam::{HUB}:role/ecr-bridge-replicator"
HUB_BUS = f"arn:aws:events:{REGION}:{HUB}:event-bus/ecr-bridge-hub"
PUSH_ROLE = f"arn:aws:iam::{TARGET}:role/ecr-bridge-push"
READ_A = f"arn:aws:iam::{SPOKE}:role/ecr-bridge-source-read"
READ_B = f"arn:aws:iam::{SPOKE_B}:role/ecr-bridge-source-read"
SPOKE_BASE = {"HubEventBusArn": HUB_BUS, "ReplicatorRoleArn": REPLICATOR, "ReadExternalId": "read-333333333333"}
HUB_BASE = {"DeployAccessSync": "false", "TargetRoleArns": PUSH_ROLE,
            "MappingDocument": '{"version":1,"rules":[]}'}


def _check_iam():
    spec = importlib.util.spec_from_file_location("check_iam", ROOT / "scripts" / "check-iam.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CHECK_IAM = _check_iam()


def load(path: str) -> dict:
    return CHECK_IAM.load_template((ROOT / path).read_text())


class ParameterError(Exception):
    """CloudFormation refuses the stack before creating anything."""


def parameters(template: dict, given: dict) -> dict:
    values = {}
    for name, p in template["Parameters"].items():
        if name in given:
            value = str(given[name])
        elif "Default" in p:
            value = str(p["Default"])
        else:
            raise ParameterError(f"Parameters: [{name}] must have values")
        is_list = p.get("Type") == "CommaDelimitedList"
        items = value.split(",") if is_list else [value]
        pattern = p.get("AllowedPattern")
        for item in items:
            if pattern is not None and not re.fullmatch(pattern, item):
                raise ParameterError(f"{name}: {item!r} does not match AllowedPattern {pattern}")
        if "AllowedValues" in p and value not in [str(v) for v in p["AllowedValues"]]:
            raise ParameterError(f"{name}: {value!r} not in AllowedValues")
        values[name] = items if is_list else value
    r = Renderer(template, values, "")
    for rule_name, rule in (template.get("Rules") or {}).items():
        if "RuleCondition" in rule and not r.render(rule["RuleCondition"]):
            continue
        for a in rule["Assertions"]:
            if not r.render(a["Assert"]):
                raise ParameterError(f"Rules: {rule_name}: {a.get('AssertDescription')}")
    return values


class Renderer:
    def __init__(self, template: dict, values: dict, account: str):
        self.template = template
        self.values = {**values, "AWS::Partition": "aws", "AWS::Region": REGION,
                       "AWS::AccountId": account, "AWS::StackName": STACK}
        self.conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.render(self.template["Conditions"][name]))
        return self.conditions[name]

    def ref(self, name: str):
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.values:
            return self.values[name]
        return f"Ref:{name}"  # a resource: its physical id, unknown here

    def render(self, v):
        if isinstance(v, list):
            return [x for x in (self.render(i) for i in v) if x is not NO_VALUE]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (fn, arg), = v.items()
            if fn == "Ref":
                return self.ref(arg)
            if fn == "Condition":
                return self.condition(arg)
            if fn == "Fn::If":
                return self.render(arg[1] if self.condition(arg[0]) else arg[2])
            if fn == "Fn::Equals":
                return self.render(arg[0]) == self.render(arg[1])
            if fn == "Fn::Not":
                return not self.render(arg[0])
            if fn == "Fn::And":
                return all(self.render(a) for a in arg)
            if fn == "Fn::Or":
                return any(self.render(a) for a in arg)
            if fn == "Fn::Contains":
                return self.render(arg[1]) in self.render(arg[0])
            if fn == "Fn::EachMemberEquals":
                return all(x == self.render(arg[1]) for x in self.render(arg[0]))
            if fn == "Fn::Join":
                items = self.render(arg[1])
                return arg[0].join(items if isinstance(items, list) else [items])
            if fn == "Fn::Split":
                return self.render(arg[1]).split(arg[0])
            if fn == "Fn::Select":
                return self.render(arg[1])[int(arg[0])]
            if fn == "Fn::GetAtt":
                name, att = arg if isinstance(arg, list) else arg.split(".", 1)
                return f"GetAtt:{name}.{att}"
            if fn == "Fn::Sub":
                text, names = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                local = {k: self.render(x) for k, x in names.items()}

                def sub(m):
                    var = m[1]
                    if var in local:
                        return str(local[var])
                    if "." in var:
                        return f"GetAtt:{var}"
                    return str(self.ref(var))
                return re.sub(r"\$\{([^}!]+)\}", sub, text)
        return {k: r for k, r in ((k, self.render(x)) for k, x in v.items()) if r is not NO_VALUE}

    def resource(self, logical: str) -> dict | None:
        res = self.template["Resources"][logical]
        if "Condition" in res and not self.condition(res["Condition"]):
            return None
        return self.render(res["Properties"])


def decide(statements: list[dict], action: str, resource: str) -> str:
    def matches(stmt):
        actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
        resources = stmt["Resource"] if isinstance(stmt["Resource"], list) else [stmt["Resource"]]
        return (any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in actions)
                and any(fnmatch.fnmatchcase(resource, x) for x in resources))
    hits = [s["Effect"] for s in statements if matches(s)]
    return "Deny" if "Deny" in hits else "Allow" if "Allow" in hits else "ImplicitDeny"


def refused(template: dict, base: dict, given: dict) -> str | None:
    try:
        parameters(template, {**base, **given})
    except ParameterError as e:
        return str(e)
    return None


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
        why = refused(t, {k: v for k, v in SPOKE_BASE.items() if k != name}, {})
        yield (f"spoke: given no {name} when deploying then refused", why is not None and name in why, why)
    for name, bad in [("HubEventBusArn", "*"), ("HubEventBusArn", f"arn:aws:events:{REGION}:*:event-bus/x"),
                      ("ReplicatorRoleArn", f"arn:aws:iam::{HUB}:role/*"), ("ReadExternalId", "x"),
                      ("SourceRepositoryPrefixes", "*"), ("SourceRepositoryPrefixes", "team-a,,team-b"),
                      ("SourceRepositoryPrefixes", "a,b,c,d,e,f")]:
        why = refused(t, SPOKE_BASE, {name: bad})
        yield f"spoke: given {name} {bad!r} when deploying then refused", why is not None, why
    why = refused(t, SPOKE_BASE, {"SourceRepositoryPrefixes": "team-a,team-b,c,d,e"})
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
        why = refused(t, HUB_BASE, {name: bad})
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
    expanded = CHECK_IAM.sam_transform(load("template.yaml"))
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
    total = failed = 0
    for name, ok, detail in [*spoke_scenarios(spoke_t, hub_t), *hub_scenarios(hub_t), *self_test(spoke_t)]:
        total += 1
        failed += not ok
        print(f"check-source-account: {'ok' if ok else 'FAIL'}: {name}" + ("" if ok else f" (got {detail})"))
    print(f"check-source-account: {total - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
