#!/usr/bin/env python3
"""Scenarios for deploy/target-account.yaml's push role (issue 13, point 5).

    check-target-account.py [TEMPLATE]     default deploy/target-account.yaml

Offline, without AWS: parameters are checked the way CloudFormation checks
them at deploy time (a value for every parameter without a Default,
MinLength, MaxLength, AllowedPattern as a whole-value match), the push
role's policy is rendered for those values (Ref, Fn::Sub, Fn::If,
conditions), and requests are decided the way IAM decides within one
identity policy: an explicit Deny wins, then an Allow, else denied.

What it proves: PushRepositoryPrefix is required and cannot be empty (an
empty prefix granted repository/*); the push role is explicitly denied the
user repositories whatever its prefix covers, in every region, under
PushDeniedRepositoryPrefix or else PolicyRepositoryPrefix, also without the
policy role. The last scenario removes the Deny from a copy of the template
and expects the check to fail, so the check can fail.
"""

from __future__ import annotations

import copy
import fnmatch
import importlib.util
import re
import sys
from pathlib import Path

ACCOUNT = "222222222222"
REGION = "us-east-1"
NO_VALUE = object()
BASE = {  # what every scenario deploys with
    "ReplicatorRoleArn": "arn:aws:iam::111111111111:role/ecr-bridge-replicator",
    "PushExternalId": "kuali-sync",
    "AccessSyncRoleArn": "arn:aws:iam::111111111111:role/ecr-bridge-access-sync",
    "PolicyExternalId": "gen3-access",
}
USER_REPOSITORY = "nextflow-approved/jane-2edoe-40x-2eio"


def _load_template(path: Path) -> dict:
    # check-iam.py knows CloudFormation's short-form YAML tags; reuse its loader.
    spec = importlib.util.spec_from_file_location("check_iam", Path(__file__).with_name("check-iam.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load_template(path.read_text())


class ParameterError(Exception):
    """CloudFormation refuses the stack before creating anything."""


def parameters(template: dict, given: dict) -> dict:
    values = {}
    for name, p in template["Parameters"].items():
        if name in given:
            value = given[name]
        elif "Default" in p:
            value = p["Default"]
        else:
            raise ParameterError(f"Parameters: [{name}] must have values")
        value = str(value)
        if len(value) < int(p.get("MinLength", 0)):
            raise ParameterError(f"{name}: shorter than MinLength {p['MinLength']}")
        if "MaxLength" in p and len(value) > int(p["MaxLength"]):
            raise ParameterError(f"{name}: longer than MaxLength {p['MaxLength']}")
        items = value.split(",") if p.get("Type") == "CommaDelimitedList" else [value]
        pattern = p.get("AllowedPattern")
        for item in items:
            if pattern is not None and not re.fullmatch(pattern, item):
                raise ParameterError(f"{name}: {item!r} does not match AllowedPattern {pattern}")
        if "AllowedValues" in p and value not in [str(v) for v in p["AllowedValues"]]:
            raise ParameterError(f"{name}: {value!r} not in AllowedValues")
        values[name] = items if p.get("Type") == "CommaDelimitedList" else value
    return values


class Renderer:
    def __init__(self, template: dict, values: dict):
        self.values = dict(values)
        self.values.update({"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT})
        self.template = template
        self.conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.render(self.template["Conditions"][name]))
        return self.conditions[name]

    def render(self, v):
        if isinstance(v, list):
            return [x for x in (self.render(i) for i in v) if x is not NO_VALUE]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (fn, arg), = v.items()
            if fn == "Ref":
                return NO_VALUE if arg == "AWS::NoValue" else self.values[arg]
            if fn == "Condition":
                return self.condition(arg)
            if fn == "Fn::If":
                return self.render(arg[1] if self.condition(arg[0]) else arg[2])
            if fn == "Fn::Equals":
                return self.render(arg[0]) == self.render(arg[1])
            if fn == "Fn::Not":
                return not self.render(arg[0])
            if fn == "Fn::Join":
                return arg[0].join(self.render(arg[1]))
            if fn == "Fn::Split":
                return self.render(arg[1]).split(arg[0])
            if fn == "Fn::Select":
                return self.render(arg[1])[int(arg[0])]
            if fn == "Fn::GetAtt":
                return "arn:aws:iam::%s:role/%s" % (ACCOUNT, arg[0])
            if fn == "Fn::Sub":
                text, names = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                local = {k: self.render(x) for k, x in names.items()}
                return re.sub(r"\$\{([^}!]+)\}", lambda m: str(local.get(m[1], self.values.get(m[1]))), text)
        return {k: r for k, r in ((k, self.render(x)) for k, x in v.items()) if r is not NO_VALUE}


def push_policy(template: dict, given: dict) -> list[dict]:
    """The push role's statements for a deploy with `given` parameters."""
    r = Renderer(template, parameters(template, {**BASE, **given}))
    role = template["Resources"]["PushRole"]
    if not r.condition(role["Condition"]):
        return []
    return r.render(role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"])


def decide(statements: list[dict], action: str, resource: str) -> str:
    def matches(stmt):
        actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
        resources = stmt["Resource"] if isinstance(stmt["Resource"], list) else [stmt["Resource"]]
        return (any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in actions)
                and any(fnmatch.fnmatchcase(resource, x) for x in resources))
    hits = [s["Effect"] for s in statements if matches(s)]
    return "Deny" if "Deny" in hits else "Allow" if "Allow" in hits else "ImplicitDeny"


def repo(name: str, region: str = REGION) -> str:
    return f"arn:aws:ecr:{region}:{ACCOUNT}:repository/{name}"


PUSH_ACTIONS = ["ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload",
                "ecr:BatchGetImage", "ecr:BatchCheckLayerAvailability", "ecr:DescribeRepositories",
                "ecr:CreateRepository", "ecr:BatchDeleteImage"]
ALLOW_ALL = {"PushAllowCreateRepository": "true", "PushAllowDeletes": "true"}


def refused(template, given) -> str | None:
    try:
        parameters(template, {**BASE, **given})
    except ParameterError as e:
        return str(e)
    return None


def scenarios(t: dict):
    """(name, passed, detail) for each scenario."""
    missing = refused(t, {})
    yield ("given no PushRepositoryPrefix when deploying then CloudFormation refuses the stack",
           missing is not None and "PushRepositoryPrefix" in missing, missing)
    for bad in ["", "*", "Coeus", "/coeus"]:
        why = refused(t, {"PushRepositoryPrefix": bad})
        yield (f"given PushRepositoryPrefix {bad!r} when deploying then refused", why is not None, why)
    for good in ["coeus", "team/", "mirror/kuali-"]:
        why = refused(t, {"PushRepositoryPrefix": good})
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
    template = _load_template(path)
    failed = 0
    total = 0
    for name, ok, detail in scenarios(template):
        total += 1
        failed += not ok
        print(f"check-target-account: {'ok' if ok else 'FAIL'}: {name}" + ("" if ok else f" (got {detail})"))
    print(f"check-target-account: {total - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
