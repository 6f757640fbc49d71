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
