"""``accept_user_updates``: which mapped values the target answered differently from what the bridge sent.

Only attributes mapped from an Okta profile field (``profile.*`` / ``appProfile.*``) can be written back, to the
app-user profile attribute of the same name; ``externalId`` is read-only in Okta and never written.
"""

from __future__ import annotations

from typing import Any, Mapping

from okta_bridge.connectors import AppConnector
from okta_bridge.contracts import MappedAttribute, ScimOperationPlanned

__all__ = ["observed_changes"]


def _value_at(resource: Mapping[str, Any], path: str) -> Any:
    if path.startswith("urn:"):
        urn, _, attribute = path.rpartition(":")
        node: Any = resource.get(urn) or {}
        parts = attribute.split(".")
    else:
        node, parts = resource, path.split(".")
    for part in parts:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    if path == "emails" and isinstance(node, list):
        primary = next((e for e in node if isinstance(e, Mapping) and e.get("primary")), node[0] if node else None)
        return primary.get("value") if isinstance(primary, Mapping) else None
    return node


def observed_changes(app: AppConnector, plan: ScimOperationPlanned, returned: Mapping[str, Any]) -> tuple[MappedAttribute, ...]:
    sent = {a.path: a.value for a in plan.attributes}
    changes: list[MappedAttribute] = []
    for path, source in app.mappings.items():
        if path == "externalId" or not source.startswith(("profile.", "appProfile.")):
            continue
        ours = sent.get(path)
        if path == "emails" and isinstance(ours, list) and ours:
            ours = ours[0].get("value")
        theirs = _value_at(returned, path)
        if theirs is not None and theirs != ours:
            changes.append(MappedAttribute(path=source.split(".", 1)[1], value=theirs))
    return tuple(changes)
