"""A small offline CloudFormation evaluator, shared by check-target-account.py
and check-source-account.py.

    parameters(template, given)   the values a deploy with `given` gets, or
                                  ParameterError where CloudFormation refuses
                                  the stack: a value for every parameter
                                  without a Default, MinLength, MaxLength,
                                  AllowedPattern per value or per list item
                                  (a whole-value match), AllowedValues, and the
                                  template's Rules
    refused(template, given)      parameters()' refusal as text, or None
    Renderer(template, values, account)
                                  renders for those values: Ref, Condition,
                                  Fn::If, Fn::Equals, Fn::Not, Fn::And, Fn::Or,
                                  Fn::Contains, Fn::EachMemberEquals, Fn::Join,
                                  Fn::Split, Fn::Select, Fn::GetAtt, Fn::Sub;
                                  AWS::NoValue drops the key or list item
    decide(statements, action, resource)
                                  as IAM decides within one identity policy:
                                  an explicit Deny wins, then an Allow, else
                                  ImplicitDeny
    load_template(path), check_iam()
                                  check-iam.py's loader (it knows the short-form
                                  YAML tags), and that module itself

A resource's Ref renders as "Ref:<logical id>" and its Fn::GetAtt as
"GetAtt:<logical id>.<attribute>": physical ids are unknown offline.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import re
from pathlib import Path

REGION = "us-east-1"
STACK = "ecr-bridge"
NO_VALUE = object()  # what Ref AWS::NoValue renders to; dropped from dicts and lists

_CHECK_IAM = None


def check_iam():
    """scripts/check-iam.py as a module (loaded once)."""
    global _CHECK_IAM
    if _CHECK_IAM is None:
        path = Path(__file__).resolve().parent.parent / "check-iam.py"
        spec = importlib.util.spec_from_file_location("check_iam", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _CHECK_IAM = module
    return _CHECK_IAM


def load_template(path: str | Path) -> dict:
    return check_iam().load_template(Path(path).read_text())


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
        if len(value) < int(p.get("MinLength", 0)):
            raise ParameterError(f"{name}: shorter than MinLength {p['MinLength']}")
        if "MaxLength" in p and len(value) > int(p["MaxLength"]):
            raise ParameterError(f"{name}: longer than MaxLength {p['MaxLength']}")
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


def refused(template: dict, given: dict) -> str | None:
    """Why CloudFormation refuses a deploy with `given`, or None."""
    try:
        parameters(template, given)
    except ParameterError as e:
        return str(e)
    return None


class Renderer:
    def __init__(self, template: dict, values: dict, account: str, region: str = REGION, stack: str = STACK):
        self.template = template
        self.values = {**values, "AWS::Partition": "aws", "AWS::Region": region,
                       "AWS::AccountId": account, "AWS::StackName": stack}
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
        """A resource's rendered Properties, or None where its Condition is false."""
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


def report(prog: str, results) -> int:
    """Prints each (name, passed, detail) and a summary line; 1 if any failed."""
    total = failed = 0
    for name, ok, detail in results:
        total += 1
        failed += not ok
        print(f"{prog}: {'ok' if ok else 'FAIL'}: {name}" + ("" if ok else f" (got {detail})"))
    print(f"{prog}: {total - failed} passed, {failed} failed")
    return 1 if failed else 0
