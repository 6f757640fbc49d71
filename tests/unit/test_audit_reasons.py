"""Every audit record carries a reason code beside its text.

The contract refuses a record built without one (``AuditRecorded``, in Python; one read from JSON may lack it: an
audit batch of an earlier release), and the unit tests' audit fakes build the record as ``AuditPublisher`` does, so
a path they run fails without a code. This test reads the source for the paths no unit test runs (the operator
commands among them): every call that makes a record names its ``reason``."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEV_SERVICES = ("okta_simulator", "demo_scim_target")  # their ``record`` is not the audit's
# calls that pass the reason inside ``**fields``: the publisher itself, and carrying out a verdict (each Note has a
# Reason, typed, put in by ``note_fields``)
FORWARDING = {("shared/okta_bridge/audit.py", "AuditRecorded"), ("shared/okta_bridge/settle.py", "record")}


def _record_calls() -> list[tuple[str, int, str, ast.Call]]:
    calls = []
    for base in ("services", "shared"):
        for path in sorted((ROOT / base).rglob("*.py")):
            if any(part in DEV_SERVICES for part in path.parts):
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                makes_record = name == "AuditRecorded" or (
                    name == "record" and node.args and "step" in ast.unparse(node.args[0]).lower())
                if makes_record:
                    calls.append((str(path.relative_to(ROOT)), node.lineno, name, node))
    return calls


def test_every_audit_record_made_in_the_services_names_its_reason_code():
    calls = _record_calls()
    assert len(calls) >= 15, "the scan found too few audit calls: has the audit port changed its name?"
    missing = []
    for path, line, name, call in calls:
        reason = next((k.value for k in call.keywords if k.arg == "reason"), None)
        if (path, name) in FORWARDING:
            assert reason is None and any(k.arg is None for k in call.keywords), (path, line)
            continue
        if reason is None or (isinstance(reason, ast.Constant) and reason.value is None):
            missing.append(f"{path}:{line}")
    assert missing == [], f"audit records without a reason code: {missing}"
