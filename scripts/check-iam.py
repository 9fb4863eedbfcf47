#!/usr/bin/env python3
"""IAM least-privilege check for ecr-bridge's CloudFormation / SAM templates.

    check-iam.py TEMPLATE...     check each template; exit 1 on any problem
    check-iam.py --self-test     prove the check fails on bad templates

Run it with the SAM venv's python ($ECR_BRIDGE_TOOLS/sam-venv/bin/python):
SAM templates are first expanded with aws-sam-translator, exactly as
CloudFormation would, so roles and policies SAM generates (function roles,
policy templates, destination policies) are checked too.

Rules, for every identity policy statement with Effect Allow (inline role,
user and group policies, AWS::IAM::Policy, AWS::IAM::ManagedPolicy, and
everything SAM generates):
  A1  no "*" action and no wildcard in an action ("s3:*", "ecr:Batch*")
  A2  no NotAction / NotResource (an allow-list written inside out)
  R1  Resource "*" only in a statement whose only action is
      ecr:GetAuthorizationToken (it has no resource-level form)
  R2  no ARN whose account is "*"
  R3  sts:AssumeRole only on specific role ARNs: no "*" anywhere in them
  P1  a template parameter used in a Resource must be unable to be "*"
      (AllowedValues or AllowedPattern that refuse it)
and for roles:
  M1  no managed policies (ManagedPolicyArns): everything is written out
  T1  a trust policy that lets AWS principals (other accounts or roles)
      assume the role requires sts:ExternalId; Principal "*" is refused
  T2  a trust policy that lets a service other than Lambda assume the role
      (events.amazonaws.com, ...) requires aws:SourceAccount or
      aws:SourceArn (confused deputy: else that service could use the role
      for another account's resources)
and for event bus policies (AWS::Events::EventBusPolicy, AWS::Events::EventBus
Policy), which let other accounts put events on a bus:
  E1  only events:PutEvents, on a named bus (no Resource "*"), and Principal
      "*" only with an aws:PrincipalOrgID or aws:PrincipalAccount condition
and for Lambda functions:
  F1  a function whose role may sts:AssumeRole can send an ExternalId: its
      environment has a *_EXTERNAL_ID variable set from a template parameter
      (the other side's trust policy requires one, T1)

Both branches of every Fn::If are checked.
"""

from __future__ import annotations

import copy
import itertools
import re
import sys
from pathlib import Path

import yaml

SAM_TRANSFORM = "AWS::Serverless-2016-10-31"
TOKEN_ACTION = "ecr:getauthorizationtoken"
ASSUME_ACTIONS = {"sts:assumerole"}
UNKNOWN = "X"  # stands for a value we cannot see but know to be specific

# ---------------------------------------------------------------------------
# Loading: CloudFormation's short-form tags as their long forms
# ---------------------------------------------------------------------------


class CfnLoader(yaml.SafeLoader):
    pass


def _tag(name):
    fn = name if name in ("Ref", "Condition") else "Fn::" + name

    def construct(loader, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if name == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {fn: value}

    return construct


for _name in ("Ref", "Condition", "Sub", "GetAtt", "If", "Join", "Select", "Split",
              "Equals", "Not", "And", "Or", "FindInMap", "Base64", "Cidr",
              "GetAZs", "ImportValue", "Transform", "Length", "ToJsonString"):
    CfnLoader.add_constructor("!" + _name, _tag(_name))


def load_template(text: str) -> dict:
    doc = yaml.load(text, Loader=CfnLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(doc, dict) or "Resources" not in doc:
        raise ValueError("not a CloudFormation template (no Resources)")
    return doc


def sam_transform(template: dict) -> dict:
    """Expands AWS::Serverless resources the way CloudFormation would."""
    try:
        from samtranslator.parser.parser import Parser
        from samtranslator.translator.translator import Translator
    except ImportError:
        sys.exit("check-iam: aws-sam-translator is missing: run me with the SAM venv's python "
                 "(python3 -m venv ~/.cache/ecr-bridge/sam-venv && "
                 "~/.cache/ecr-bridge/sam-venv/bin/pip install aws-sam-cli cfn-lint)")

    class OfflineSession:  # all the translator asks a boto3 session for; no credentials, no calls
        region_name = "us-east-1"

    template = copy.deepcopy(template)
    # Local CodeUri paths are only meaningful to `sam build`: give the
    # translator the S3 form it expects (what `sam validate` does too).
    for res in template.get("Resources", {}).values():
        if isinstance(res, dict) and res.get("Type") in ("AWS::Serverless::Function", "AWS::Serverless::LayerVersion"):
            props = res.setdefault("Properties", {})
            for key in ("CodeUri", "ContentUri"):
                if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                    props[key] = "s3://check-iam/placeholder.zip"
    translator = Translator(None, Parser(), boto_session=OfflineSession())

    def no_managed_policy_names():  # SAM asks only if a policy is given by name; we refuse those anyway (M1)
        return {}

    out = translator.translate(template, parameter_values={}, get_managed_policy_map=no_managed_policy_names)
    translator.metrics.publish()  # to its dummy publisher: keeps it from complaining at exit
    return out


# ---------------------------------------------------------------------------
# Rendering intrinsic values to the strings they could become
# ---------------------------------------------------------------------------


class Checker:
    def __init__(self, name: str, template: dict):
        self.name = name
        self.template = template
        self.params = template.get("Parameters", {}) or {}
        self.problems: list[tuple[str, str, str]] = []
        self.statements = 0
        self.roles = 0
        self.functions = 0
        self._where = ""
        self._role = None  # logical id of the role whose policy is being checked
        self.assuming_roles: set[str] = set()

    def fail(self, rule: str, message: str):
        self.problems.append((rule, self._where, message))

    # -- parameters ---------------------------------------------------------
    def check_param(self, name: str, probes: tuple[str, ...] = ("*",)):
        """P1: a parameter that reaches a Resource must not be able to be a wildcard."""
        p = self.params.get(name)
        if p is None:
            return  # pseudo parameter or resource: specific by construction
        defaults = p.get("Default", "")
        if isinstance(defaults, str):
            defaults = defaults.split(",") if p.get("Type", "").startswith(("CommaDelimitedList", "List<")) else [defaults]
        for d in defaults:
            if "*" in str(d):
                self.fail("P1", f"parameter {name} defaults to {d!r}")
        if "AllowedValues" in p:
            for v in p["AllowedValues"]:
                if "*" in str(v):
                    self.fail("P1", f"parameter {name} allows {v!r}")
            return
        pattern = p.get("AllowedPattern")
        if pattern is None:
            self.fail("P1", f"parameter {name} is used in a Resource but has no AllowedPattern/AllowedValues: it could be '*'")
            return
        for probe in probes:
            if re.fullmatch(pattern, probe):
                self.fail("P1", f"parameter {name}: its AllowedPattern accepts {probe!r}")

    def render(self, v, probes=("*",)) -> list[str]:
        """Every string `v` can become; unknown-but-specific parts become X."""
        if isinstance(v, str):
            return [v]
        if isinstance(v, (int, float, bool)):
            return [str(v)]
        if isinstance(v, list):
            out = []
            for item in v:
                out.extend(self.render(item, probes))
            return out
        if not isinstance(v, dict) or len(v) != 1:
            return [UNKNOWN]
        (fn, arg), = v.items()
        if fn == "Ref":
            if arg == "AWS::NoValue":
                return []
            self.check_param(arg, probes)
            return [UNKNOWN]
        if fn == "Fn::GetAtt":
            return [UNKNOWN]
        if fn == "Fn::If":
            return self.render(arg[1], probes) + self.render(arg[2], probes)
        if fn == "Fn::Sub":
            text, mapping = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            parts, choices = [], []
            for literal, var in _sub_tokens(text):
                parts.append(literal)
                if var is None:
                    continue
                if var in mapping:
                    choices.append(self.render(mapping[var], probes) or [""])
                else:
                    if not var.startswith("AWS::") and "." not in var:
                        self.check_param(var, probes)
                    choices.append([UNKNOWN])
            out = []
            for combo in itertools.product(*choices):
                s = parts[0]
                for i, c in enumerate(combo):
                    s += c + parts[i + 1]
                out.append(s)
            return out
        if fn == "Fn::Join":
            delim, items = arg
            if not isinstance(items, list):
                return self.render(items, probes)
            choices = [self.render(i, probes) or [""] for i in items]
            return [delim.join(c) for c in itertools.product(*choices)]
        if fn == "Fn::Split":
            delim, src = arg
            out = []
            for s in self.render(src, probes):
                out.extend(s.split(delim))
            return out
        if fn == "Fn::Select":
            self.render(arg[1], probes)  # parameters inside are still checked
            return [UNKNOWN]
        return [UNKNOWN]

    # -- statements ---------------------------------------------------------
    def check_document(self, doc, where: str):
        for stmt, path in self._statements(doc, where):
            self.statements += 1
            self._where = path
            self.check_statement(stmt)

    def _statements(self, doc, where):
        if not isinstance(doc, dict):
            return
        stmts = doc.get("Statement", [])
        for i, s in enumerate(stmts if isinstance(stmts, list) else [stmts]):
            for branch in _if_branches(s):
                if isinstance(branch, dict):
                    sid = f" ({branch['Sid']})" if isinstance(branch.get("Sid"), str) else ""
                    yield branch, f"{where}.Statement[{i}]{sid}"

    def check_statement(self, s: dict):
        if s.get("Effect") != "Allow":
            return
        if "NotAction" in s or "NotResource" in s:
            self.fail("A2", "NotAction/NotResource in an Allow statement grants everything not listed")
        actions = []
        for a in _flatten(s.get("Action", [])):
            if not isinstance(a, str):
                self.fail("A1", f"action {a!r} is computed; write actions out")
                continue
            actions.append(a.lower())
            if "*" in a or "?" in a:
                self.fail("A1", f"wildcard action {a!r}")
        assume = bool(ASSUME_ACTIONS & set(actions))
        if assume and self._role:
            self.assuming_roles.add(self._role)
        probes = ("*", "arn:aws:iam::123456789012:role/*") if assume else ("*",)
        resources = []
        for r in _flatten(s.get("Resource", [])):
            resources.extend(self.render(r, probes))
        if not resources and "Resource" in s:
            self.fail("R1", "empty Resource")
        for r in resources:
            if r == "*":
                if set(actions) != {TOKEN_ACTION}:
                    self.fail("R1", f"Resource '*' for {', '.join(sorted(set(actions)))} "
                                    "(only ecr:GetAuthorizationToken may have '*')")
                continue
            fields = r.split(":")
            if r.startswith("arn:") and len(fields) > 4 and fields[4] == "*":
                self.fail("R2", f"resource {r!r} is in any account")
            if assume and "*" in r:
                self.fail("R3", f"sts:AssumeRole on {r!r}: name the role")

    def check_trust(self, doc, where: str):
        for stmt, path in self._statements(doc, where):
            self._where = path
            if stmt.get("Effect") != "Allow":
                continue
            principal = stmt.get("Principal")
            if principal == "*" or (isinstance(principal, dict) and "*" in _flatten(principal.get("AWS", []))):
                self.fail("T1", "trust policy allows Principal '*'")
                continue
            cond = stmt.get("Condition") or {}
            keys = {k.lower() for op in cond.values() if isinstance(op, dict) for k in op}
            if not (isinstance(principal, dict) and "AWS" in principal):
                # Service principals. Lambda's execution roles are assumed for
                # this account's functions only; any other service must be
                # pinned to this account or resource.
                services = _flatten(principal.get("Service", [])) if isinstance(principal, dict) else []
                others = [x for x in services if x != "lambda.amazonaws.com"]
                if others and not keys & {"aws:sourceaccount", "aws:sourcearn"}:
                    self.fail("T2", f"trust policy for {', '.join(map(str, others))} has no aws:SourceAccount "
                                    "or aws:SourceArn condition")
                continue
            if "sts:externalid" not in keys:
                self.fail("T1", "trust policy for AWS principals has no sts:ExternalId condition")

    def check_bus_statement(self, stmt: dict, legacy: bool = False):
        """E1: an event bus policy lets others put events on this bus, nothing more."""
        if stmt.get("Effect", "Allow") != "Allow":
            return
        actions = [a.lower() if isinstance(a, str) else a for a in _flatten(stmt.get("Action", []))]
        if actions != ["events:putevents"]:
            self.fail("E1", f"event bus policy allows {actions!r}: only events:PutEvents")
        if not legacy:
            resources = []
            for r in _flatten(stmt.get("Resource", [])):
                resources.extend(self.render(r))
            if not resources or any("*" in r for r in resources):
                self.fail("E1", f"event bus policy on {resources!r}: name the bus")
        principal = stmt.get("Principal")
        anyone = principal == "*" or (isinstance(principal, dict) and "*" in _flatten(principal.get("AWS", [])))
        if legacy:
            if anyone and not stmt.get("Condition"):
                self.fail("E1", "event bus policy for Principal '*' without a Condition")
            return
        cond = stmt.get("Condition") or {}
        keys = {k.lower() for op in cond.values() if isinstance(op, dict) for k in op}
        if anyone and not keys & {"aws:principalorgid", "aws:principalaccount"}:
            self.fail("E1", "event bus policy for Principal '*' without an aws:PrincipalOrgID or "
                            "aws:PrincipalAccount condition")

    # -- resources ----------------------------------------------------------
    def run(self):
        for logical, res in (self.template.get("Resources") or {}).items():
            if not isinstance(res, dict):
                continue
            t, props = res.get("Type"), res.get("Properties") or {}
            base = f"Resources.{logical}"
            if t == "AWS::IAM::Role":
                self.roles += 1
                self._where = base
                for arn in _flatten(props.get("ManagedPolicyArns", [])):
                    self.fail("M1", f"managed policy {arn!r} attached: write the permissions out inline")
                self.check_trust(props.get("AssumeRolePolicyDocument"), f"{base}.AssumeRolePolicyDocument")
            if t == "AWS::Events::EventBusPolicy":
                self._where = f"{base}.Statement"
                if "Statement" in props:
                    for branch in _if_branches(props["Statement"]):
                        if isinstance(branch, dict):
                            self.check_bus_statement(branch)
                else:
                    self.check_bus_statement({"Action": props.get("Action"), "Principal": props.get("Principal"),
                                              "Condition": props.get("Condition")}, legacy=True)
            if t == "AWS::Events::EventBus" and isinstance(props.get("Policy"), dict):
                for stmt, path in self._statements(props["Policy"], f"{base}.Policy"):
                    self._where = path
                    self.check_bus_statement(stmt)
            self._role = logical if t == "AWS::IAM::Role" else None
            if t in ("AWS::IAM::Role", "AWS::IAM::User", "AWS::IAM::Group"):
                for pol in _flatten(props.get("Policies", [])):
                    if isinstance(pol, dict):
                        name = pol.get("PolicyName")
                        label = name if isinstance(name, str) else "?"
                        self.check_document(pol.get("PolicyDocument"), f"{base}.Policies[{label}]")
            if t in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy",
                     "AWS::IAM::UserPolicy", "AWS::IAM::GroupPolicy"):
                roles = [r["Ref"] for r in _flatten(props.get("Roles", [])) if isinstance(r, dict) and "Ref" in r]
                if isinstance(props.get("RoleName"), dict) and "Ref" in props["RoleName"]:
                    roles.append(props["RoleName"]["Ref"])
                for role in roles or [None]:
                    self._role = role
                    self.check_document(props.get("PolicyDocument"), f"{base}.PolicyDocument")
            self._role = None
        self.check_functions()
        return self.problems

    def check_functions(self):
        """F1: a function that may assume roles can be given an ExternalId."""
        for logical, res in (self.template.get("Resources") or {}).items():
            if not isinstance(res, dict) or res.get("Type") != "AWS::Lambda::Function":
                continue
            self.functions += 1
            props = res.get("Properties") or {}
            role = props.get("Role")
            role_id = None
            if isinstance(role, dict) and "Fn::GetAtt" in role:
                att = role["Fn::GetAtt"]
                role_id = att[0] if isinstance(att, list) else str(att).split(".")[0]
            if role_id not in self.assuming_roles:
                continue
            self._where = f"Resources.{logical}.Environment"
            variables = ((props.get("Environment") or {}).get("Variables")) or {}
            wired = [name for name, value in variables.items()
                     if name.upper().endswith("_EXTERNAL_ID") and self._from_parameter(value)]
            if not wired:
                self.fail("F1", f"{logical} may sts:AssumeRole (role {role_id}) but has no *_EXTERNAL_ID "
                                "variable set from a parameter: it cannot send the ExternalId the target's "
                                "trust policy requires")

    def _from_parameter(self, value) -> bool:
        """Whether some branch of `value` is a template parameter."""
        for branch in _flatten(value):
            if isinstance(branch, dict) and isinstance(branch.get("Ref"), str) and branch["Ref"] in self.params:
                return True
            if isinstance(branch, dict) and "Fn::Sub" in branch:
                text = branch["Fn::Sub"] if isinstance(branch["Fn::Sub"], str) else branch["Fn::Sub"][0]
                if any(var in self.params for _, var in _sub_tokens(text) if var):
                    return True
        return False


def _sub_tokens(text: str):
    """Splits a Fn::Sub string into (literal, variable-or-None) pairs."""
    out, pos = [], 0
    for m in re.finditer(r"\$\{([^}]*)\}", text):
        var = m.group(1)
        if var.startswith("!"):  # ${!Literal} is the text ${Literal}
            continue
        out.append((text[pos:m.start()], var))
        pos = m.end()
    out.append((text[pos:], None))
    return out


def _if_branches(v):
    if isinstance(v, dict) and list(v) == ["Fn::If"]:
        return _if_branches(v["Fn::If"][1]) + _if_branches(v["Fn::If"][2])
    if isinstance(v, dict) and v == {"Ref": "AWS::NoValue"}:
        return []
    return [v]


def _flatten(v):
    out = []
    for b in _if_branches(v):
        if isinstance(b, list):
            for item in b:
                out.extend(_flatten(item))
        else:
            out.append(b)
    return out


def check_text(name: str, text: str) -> Checker:
    template = load_template(text)
    transforms = template.get("Transform", [])
    if SAM_TRANSFORM in (transforms if isinstance(transforms, list) else [transforms]):
        template = sam_transform(template)
    checker = Checker(name, template)
    checker.run()
    return checker


def report(checker: Checker) -> bool:
    for rule, where, msg in checker.problems:
        print(f"{checker.name}: {rule} {where}: {msg}")
    print(f"check-iam: {checker.name}: {checker.roles} roles, {checker.statements} statements, "
          f"{checker.functions} functions, {len(checker.problems)} problems")
    return not checker.problems


# ---------------------------------------------------------------------------
# Self-test: the check must be able to fail
# ---------------------------------------------------------------------------

_ROLE = """
AWSTemplateFormatVersion: '2010-09-09'
{params}
Resources:
  R:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Version: '2012-10-17'
        Statement:
{trust}
      Policies:
        - PolicyName: p
          PolicyDocument:
            Version: '2012-10-17'
            Statement:
{stmts}
"""
_LAMBDA_TRUST = """          - Effect: Allow
            Principal: { Service: lambda.amazonaws.com }
            Action: sts:AssumeRole"""
_TOKEN = """              - Effect: Allow
                Action: ecr:GetAuthorizationToken
                Resource: '*'"""


# A SAM function with an inline policy statement (SAM makes role and policy from it).
_SAM_ECR_STAR = """
Transform: AWS::Serverless-2016-10-31
Resources:
  F:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/x
      Handler: bootstrap
      Runtime: provided.al2023
      Policies:
        - Statement:
            - Effect: Allow
              Action: 'ecr:*'
              Resource: '*'
"""

# A function whose role may assume roles; {env} is its environment.
_FUNCTION = """
Parameters:
  Roles:
    Type: String
    AllowedPattern: '^arn:aws:iam::\\d{{12}}:role/[A-Za-z0-9+=,.@_-]+$'
  ExternalId:
    Type: String
    Default: ''
Conditions:
  HasId: !Not [!Equals [!Ref ExternalId, '']]
Resources:
  R:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Version: '2012-10-17'
        Statement:
          - Effect: Allow
            Principal: {{ Service: lambda.amazonaws.com }}
            Action: sts:AssumeRole
      Policies:
        - PolicyName: p
          PolicyDocument:
            Version: '2012-10-17'
            Statement:
              - Effect: Allow
                Action: sts:AssumeRole
                Resource: !Ref Roles
  F:
    Type: AWS::Lambda::Function
    Properties:
      Role: !GetAtt R.Arn
      Runtime: provided.al2023
      Handler: bootstrap
      Code: {{ S3Bucket: b, S3Key: k }}
      Environment:
        Variables:{env}
"""


# An event bus and one policy statement on it ({statement}).
_BUS = """
Resources:
  B:
    Type: AWS::Events::EventBus
    Properties:
      Name: b
  P:
    Type: AWS::Events::EventBusPolicy
    Properties:
      EventBusName: !Ref B
      StatementId: s
      Statement:{statement}
"""


def _role(stmts=_TOKEN, trust=_LAMBDA_TRUST, params=""):
    return _ROLE.format(stmts=stmts, trust=trust, params=params)


SELF_TESTS = [
    # (name, expected rule or None for "must pass", template)
    ("token on * passes", None, _role()),
    ("action *", "A1", _role("""              - Effect: Allow
                Action: '*'
                Resource: arn:aws:s3:::bucket""")),
    ("service:*", "A1", _role("""              - Effect: Allow
                Action: [ecr:BatchGetImage, 'ecr:*']
                Resource: !Sub arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/x""")),
    ("NotAction", "A2", _role("""              - Effect: Allow
                NotAction: iam:*
                Resource: arn:aws:s3:::bucket""")),
    ("resource * beyond the token", "R1", _role("""              - Effect: Allow
                Action: [ecr:GetAuthorizationToken, ecr:PutImage]
                Resource: '*'""")),
    ("resource * hidden in an If", "R1", _role("""              - Effect: Allow
                Action: ssm:GetParameter
                Resource: !If [C, !Sub 'arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/x', '*']""")),
    ("any account", "R2", _role("""              - Effect: Allow
                Action: ecr:BatchGetImage
                Resource: arn:aws:ecr:us-east-1:*:repository/x""")),
    ("assume role on *", "R1", _role("""              - Effect: Allow
                Action: sts:AssumeRole
                Resource: '*'""")),
    ("assume any role of an account", "R3", _role("""              - Effect: Allow
                Action: sts:AssumeRole
                Resource: arn:aws:iam::123456789012:role/*""")),
    ("assume role from an unconstrained parameter", "P1", _role("""              - Effect: Allow
                Action: sts:AssumeRole
                Resource: !Ref Roles""", params="""Parameters:
  Roles:
    Type: CommaDelimitedList""")),
    ("assume role parameter whose pattern allows role/*", "P1", _role("""              - Effect: Allow
                Action: sts:AssumeRole
                Resource: !Ref Roles""", params="""Parameters:
  Roles:
    Type: CommaDelimitedList
    AllowedPattern: '^arn:aws:iam::\\d{12}:role/.+$'""")),
    ("parameter defaulting to * inside a Sub", "P1", _role("""              - Effect: Allow
                Action: ecr:BatchGetImage
                Resource: !Sub arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/${Name}""",
                params="""Parameters:
  Name:
    Type: String
    Default: '*'""")),
    ("cross-account trust without ExternalId", "T1", _role(trust="""          - Effect: Allow
            Principal: { AWS: arn:aws:iam::111111111111:root }
            Action: sts:AssumeRole
            Condition:
              ArnEquals: { aws:PrincipalArn: arn:aws:iam::111111111111:role/x }""")),
    ("cross-account trust with ExternalId passes", None, _role(trust="""          - Effect: Allow
            Principal: { AWS: arn:aws:iam::111111111111:root }
            Action: sts:AssumeRole
            Condition:
              StringEquals: { sts:ExternalId: abc }""")),
    ("managed policy", "M1", _role().replace("      Policies:", "      ManagedPolicyArns: [arn:aws:iam::aws:policy/AdministratorAccess]\n      Policies:", 1)),
    ("SAM-generated role and policy template", "M1", _SAM_ECR_STAR),
    ("function that assumes roles without an ExternalId variable", "F1", _FUNCTION.format(env="""
          SOURCE_ROLE_ARN: !Ref Roles""")),
    ("function that assumes roles with an ExternalId from a parameter passes", None, _FUNCTION.format(env="""
          SOURCE_ROLE_ARN: !Ref Roles
          SOURCE_ROLE_EXTERNAL_ID: !If [HasId, !Ref ExternalId, !Ref AWS::NoValue]""")),
    ("function with a hard-coded ExternalId", "F1", _FUNCTION.format(env="""
          ECR_ROLE_EXTERNAL_ID: fixed""")),
    ("SAM inline policy statement", "A1", _SAM_ECR_STAR),
    ("EventBridge trust without aws:SourceAccount", "T2", _role(trust="""          - Effect: Allow
            Principal: { Service: events.amazonaws.com }
            Action: sts:AssumeRole""")),
    ("EventBridge trust with aws:SourceAccount passes", None, _role(trust="""          - Effect: Allow
            Principal: { Service: events.amazonaws.com }
            Action: sts:AssumeRole
            Condition:
              StringEquals: { aws:SourceAccount: !Ref AWS::AccountId }""")),
    ("event bus policy for anyone", "E1", _BUS.format(statement="""
        Effect: Allow
        Principal: '*'
        Action: events:PutEvents
        Resource: !GetAtt B.Arn""")),
    ("event bus policy for an organisation passes", None, _BUS.format(statement="""
        Effect: Allow
        Principal: '*'
        Action: events:PutEvents
        Resource: !GetAtt B.Arn
        Condition:
          StringEquals: { aws:PrincipalOrgID: o-abcdef1234 }""")),
    ("event bus policy for accounts passes", None, _BUS.format(statement="""
        Effect: Allow
        Principal: { AWS: ['333333333333', '444444444444'] }
        Action: events:PutEvents
        Resource: !GetAtt B.Arn""")),
    ("event bus policy beyond PutEvents", "E1", _BUS.format(statement="""
        Effect: Allow
        Principal: { AWS: '333333333333' }
        Action: 'events:*'
        Resource: !GetAtt B.Arn""")),
    ("event bus policy on any bus", "E1", _BUS.format(statement="""
        Effect: Allow
        Principal: { AWS: '333333333333' }
        Action: events:PutEvents
        Resource: '*'""")),
]


def self_test() -> int:
    bad = 0
    for name, expected, text in SELF_TESTS:
        checker = check_text(f"<{name}>", text)
        rules = {p[0] for p in checker.problems}
        ok = (not rules) if expected is None else (expected in rules)
        verdict = "ok" if ok else "WRONG"
        want = "pass" if expected is None else f"fail with {expected}"
        got = "passed" if not rules else "failed with " + ",".join(sorted(rules))
        print(f"check-iam self-test: {verdict}: {name}: want {want}, {got}")
        bad += not ok
    print(f"check-iam self-test: {len(SELF_TESTS) - bad} passed, {bad} failed")
    return 1 if bad else 0


def main(argv: list[str]) -> int:
    if argv == ["--self-test"]:
        return self_test()
    if not argv or any(a.startswith("-") for a in argv):
        print(__doc__, file=sys.stderr)
        return 2
    ok = True
    for path in argv:
        try:
            checker = check_text(path, Path(path).read_text())
        except (OSError, ValueError, yaml.YAMLError) as e:
            print(f"check-iam: {path}: {e}")
            ok = False
            continue
        ok &= report(checker)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
