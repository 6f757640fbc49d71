"""The README's and docs/architecture.md's "Follow one event": at most 8 steps, each naming a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def steps(doc: Path) -> list[str]:
    text = doc.read_text()
    section = text.split("## Follow one event", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\d+\. (.+(?:\n   .+)*)", section, flags=re.M)


@pytest.mark.parametrize("doc", ["README.md", "docs/architecture.md"])
def test_follow_one_event_has_at_most_8_steps_each_naming_an_existing_file(doc):
    found = steps(ROOT / doc)
    assert 1 <= len(found) <= 8, f"{doc}: {len(found)} steps"
    for step in found:
        first = re.search(r"`([\w/.]+\.py)`", step)
        assert first, f"{doc}: a step names no file: {step[:80]}"
        assert (ROOT / first.group(1)).is_file(), f"{doc}: {first.group(1)} does not exist"
        base = Path(first.group(1)).parent
        for other in re.findall(r"`([\w/.]+\.py)`", step)[1:]:  # relative to the step's own package, or the root
            assert (ROOT / other).is_file() or (ROOT / base / other).is_file(), f"{doc}: {other} does not exist"
