#!/usr/bin/env python3
"""Checks template.yaml's CloudWatch dashboards, offline: each body, with its
`${...}` substitutions filled in, is JSON CloudWatch accepts the shape of
(widgets with type, position, size and properties; metrics as
[namespace, name, dimension, value, ..., {options}]), and every metric of the
`${Ns}` namespace (the functions' EMF metrics) is one the Rust code emits
(see `emitted_metrics`). A dashboard
that names a metric nobody emits shows an empty graph forever.

Usage: check-dashboards.py [template.yaml]; --self-test checks that it can fail.
"""

import importlib.util
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cfn_load(text):
    """The template with CloudFormation's tags, as check-iam.py reads it."""
    spec = importlib.util.spec_from_file_location("check_iam", ROOT / "scripts" / "check-iam.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load_template(text)


def emitted_metrics():
    """Names passed to a MetricSet: literals in `.count(`/`.add(` calls, and
    the CamelCase literals of files making such calls (a name picked in a
    `match` first, as `record_outcome` does)."""
    names = set()
    for path in list((ROOT / "functions").rglob("*.rs")) + list((ROOT / "crates").rglob("*.rs")):
        text = path.read_text()
        if re.search(r"\.(?:count|add)\(", text):
            names.update(re.findall(r'"([A-Z][a-z]+(?:[A-Z][a-z]+)+|[A-Z][a-z]+)"', text))
    return names


def problems_of(name, body, emitted):
    filled = re.sub(r"\$\{[^}]+\}", lambda m: "NS" if m.group(0) == "${Ns}" else "x", body)
    try:
        doc = json.loads(filled)
    except ValueError as e:
        return [f"{name}: body is not JSON once substituted: {e}"]
    found = []
    widgets = doc.get("widgets")
    if not isinstance(widgets, list) or not widgets:
        return [f"{name}: no widgets"]
    for i, w in enumerate(widgets):
        where = f"{name} widget {i}"
        for key in ("type", "x", "y", "width", "height", "properties"):
            if key not in w:
                found.append(f"{where}: no {key}")
        props = w.get("properties", {})
        if w.get("type") != "metric" or not props.get("title"):
            found.append(f"{where}: not a titled metric widget")
        for m in props.get("metrics", []):
            if not isinstance(m, list) or len(m) < 2 or any(not isinstance(p, str) for p in m[:2]):
                found.append(f"{where}: metric {m!r} is not [namespace, name, ...]")
                continue
            plain = [p for p in m if not isinstance(p, dict)]
            if len(plain) % 2 != 0:
                found.append(f"{where}: metric {m!r} has a dimension without a value")
            if m[0] == "NS" and m[1] not in emitted:
                found.append(f"{where}: metric {m[1]!r} is not emitted by any function")
    return found


def check(template_path):
    template = cfn_load(Path(template_path).read_text())
    emitted = emitted_metrics()
    dashboards = {
        name: r for name, r in template.get("Resources", {}).items() if r.get("Type") == "AWS::CloudWatch::Dashboard"
    }
    if not dashboards:
        return ["no AWS::CloudWatch::Dashboard resource"]
    found = []
    for name, resource in dashboards.items():
        body = resource["Properties"]["DashboardBody"]
        sub = body.get("Fn::Sub") if isinstance(body, dict) else body
        text = sub[0] if isinstance(sub, list) else sub
        found += problems_of(name, text, emitted)
    return found


def self_test():
    emitted = {"Replicated"}
    good = '{"widgets": [{"type": "metric", "x": 0, "y": 0, "width": 6, "height": 6, "properties": {"title": "t", "metrics": [["${Ns}", "Replicated", "Function", "f"]]}}]}'
    assert problems_of("ok", good, emitted) == [], problems_of("ok", good, emitted)
    assert problems_of("bad", good.replace("Replicated", "Replcated"), emitted), "a metric nobody emits"
    assert problems_of("bad", good.replace('"f"]', '"f", "g"]'), emitted), "a dimension without a value"
    assert problems_of("bad", good[:-2], emitted), "not JSON"
    print("check-dashboards self-test: ok")


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        sys.exit(0)
    problems = check(sys.argv[1] if len(sys.argv) > 1 else ROOT / "template.yaml")
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print("check-dashboards: every widget parses and every EMF metric is emitted")
