"""The fault suite's broken builds patch the source by exact text: each anchor must still be there, once."""

from __future__ import annotations

import pytest

from tests.faults.nodes import ROOT
from tests.faults.runner import BROKEN


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_every_broken_build_anchor_occurs_exactly_once(name):
    for path, old, new in BROKEN[name]:
        text = (ROOT / path).read_text()
        assert text.count(old) == 1, f"{name}: {old!r} occurs {text.count(old)} times in {path}"
        assert new != old


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_every_broken_build_still_compiles(name):
    patched: dict[str, str] = {}
    for path, old, new in BROKEN[name]:  # applied in turn, as the runner does
        patched[path] = patched.get(path, (ROOT / path).read_text()).replace(old, new)
    for path, source in patched.items():
        compile(source, path, "exec")  # a broken build breaks a guarantee, never the syntax
