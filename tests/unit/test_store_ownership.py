"""Each MongoDB collection has one owning adapter in ``okta_bridge.stores``; nothing else names a collection, and the
production packages import nothing from the dev harness, the simulator or the demo target."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = [ROOT / "shared" / "okta_bridge", *(ROOT / "services" / s for s in
                                                  ("queue_poller", "translator", "scim_dispatcher", "audit_recorder"))]
STORES = ROOT / "shared" / "okta_bridge" / "stores"
# db.system.name, db.operation.name, db.namespace, db.collection.name, db.query.text: span attributes, no collection
COLLECTION = re.compile(r"\b(?:db|_db|database)\.(?!command\b|name\b|client\b|with_options\b|system\b|operation\b|"
                        r"namespace\b|collection\b|query\b)([a-z_]+)\b")


def _sources():
    for package in PRODUCTION:
        yield from (p for p in package.rglob("*.py") if "__pycache__" not in p.parts)


def test_only_the_stores_name_collections():
    outside = [f"{p.relative_to(ROOT)}: db.{m.group(1)}" for p in _sources() if STORES not in p.parents
               for m in COLLECTION.finditer(p.read_text())]
    assert outside == []


def test_each_collection_has_one_owner():
    owners: dict[str, set[str]] = defaultdict(set)
    for path in STORES.glob("*.py"):
        for match in COLLECTION.finditer(path.read_text()):
            owners[match.group(1)].add(path.name)
    assert owners, "the stores name their collections"
    shared = {c: sorted(o) for c, o in owners.items() if len(o) > 1}
    assert shared == {}


def test_production_code_imports_no_dev_harness():
    banned = re.compile(r"^\s*(from|import)\s+(okta_simulator|demo_scim_target|tests)\b|okta_bridge\.(devstack|demo)\b",
                        re.M)
    offenders = [str(p.relative_to(ROOT)) for p in _sources() if banned.search(p.read_text())]
    assert offenders == []
