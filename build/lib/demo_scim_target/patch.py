"""PATCH engines for both dialects, working on a neutral attribute dict.

SCIM 2.0 (RFC 7644 3.5.2): ``Operations`` of add / replace / remove (op names
case-insensitive), paths ``attr``, ``attr.sub``, ``attr[filter]``, ``attr[filter].sub``,
URN-prefixed attributes and bare extension namespaces; no path = value object of attributes.
SCIM 1.1 (Okta flavour): a partial resource; single-valued attributes replace, multi-valued
ones are merged by ``value`` and items carrying ``"operation": "delete"`` are removed;
``meta.attributes`` lists attributes to clear first.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from .filters import FilterError, compile_filter, get_key, split_urn
from .store import StoreError

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
_PATH = re.compile(r"^(?P<attr>[^\[\].]+)(?:\[(?P<flt>.*)\])?(?:\.(?P<sub>[^\[\].]+))?$")


def _bad(detail: str, scim_type: str = "invalidPath") -> StoreError:
    return StoreError(400, detail, scim_type)


def _key(container: dict, name: str) -> str:
    return get_key(container, name) or name


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict) and "value" in a and "value" in b:
        return a["value"] == b["value"]
    return a == b


def _set(container: dict, attr: str, value: Any, op: str) -> None:
    key = _key(container, attr)
    current = container.get(key)
    if op == "add" and isinstance(current, list):
        for item in value if isinstance(value, list) else [value]:
            current[:] = [c for c in current if not _same(c, item)] + [copy.deepcopy(item)]
    elif isinstance(current, dict) and isinstance(value, dict):
        current.update(copy.deepcopy(value))  # complex single-valued: merge sub-attributes
    else:
        container[key] = copy.deepcopy(value)


def _apply_one(attrs: dict, op: str, path: str | None, value: Any) -> None:
    if not path:
        if not isinstance(value, dict) or op == "remove":
            raise _bad("An operation without 'path' needs an object 'value'", "invalidValue")
        for sub_path, sub_value in value.items():
            _apply_one(attrs, op, sub_path, sub_value)
        return
    namespaces = {k for k in attrs if k.startswith("urn:")} | {ENTERPRISE}
    ns, rest = split_urn(path, namespaces)
    container = attrs
    if ns is not None:
        ns_key = _key(attrs, ns)
        if not rest:  # the extension namespace itself
            if op == "remove":
                attrs.pop(ns_key, None)
            elif isinstance(value, dict):
                if op == "replace":
                    attrs[ns_key] = {}
                for sub_path, sub_value in value.items():
                    _apply_one(attrs.setdefault(ns_key, {}), op, sub_path, sub_value)
            else:
                raise _bad("An extension needs an object value", "invalidValue")
            return
        if op == "remove" and ns_key not in attrs:
            return
        container = attrs.setdefault(ns_key, {})
    m = _PATH.match(rest)
    if not m:
        raise _bad(f"Unsupported path {path!r}")
    attr, flt, sub = m.group("attr"), m.group("flt"), m.group("sub")
    key = _key(container, attr)
    if flt is None and sub is None:
        if op == "remove":
            current = container.get(key)
            if isinstance(current, list) and isinstance(value, list):  # remove listed values
                container[key] = [c for c in current if not any(_same(c, v) for v in value)]
            else:
                container.pop(key, None)
        else:
            _set(container, attr, value, op)
        return
    current = container.get(key)
    if flt is None:  # attr.sub
        targets = current if isinstance(current, list) else None
        if targets is None:
            if op == "remove":
                if isinstance(current, dict):
                    current.pop(_key(current, sub), None)
                return
            targets = [container.setdefault(key, {})]
        for item in targets:
            if op == "remove":
                item.pop(_key(item, sub), None)
            else:
                item[_key(item, sub)] = copy.deepcopy(value)
        return
    try:
        pred = compile_filter(flt)
    except FilterError as exc:
        raise _bad(str(exc), "invalidFilter") from exc
    items = current if isinstance(current, list) else []
    matched = [item for item in items if isinstance(item, dict) and pred(item)]
    if op == "remove":
        if sub is None:
            container[key] = [i for i in items if not any(i is mt for mt in matched)]
        for item in matched if sub else []:
            item.pop(_key(item, sub), None)
        return
    if not matched:
        raise _bad(f"No value matches {path!r}", "noTarget")
    for item in matched:
        if sub is None:
            if not isinstance(value, dict):
                raise _bad("A filtered path without sub-attribute needs an object", "invalidValue")
            item.update(copy.deepcopy(value))
        else:
            item[_key(item, sub)] = copy.deepcopy(value)


def apply_patch20(attrs: dict, body: Any) -> dict:
    if not isinstance(body, dict) or not isinstance(body.get("Operations"), list):
        raise _bad("PATCH body needs an 'Operations' list", "invalidSyntax")
    result = copy.deepcopy(attrs)
    for operation in body["Operations"]:
        if not isinstance(operation, dict):
            raise _bad("Each operation must be an object", "invalidSyntax")
        op = str(operation.get("op", "")).lower()
        if op not in ("add", "replace", "remove"):
            raise _bad(f"Unknown op {operation.get('op')!r}", "invalidSyntax")
        path = operation.get("path")
        if op == "remove" and not path:
            raise _bad("'remove' needs a path", "noTarget")
        _apply_one(result, op, path, operation.get("value"))
    return result


def apply_patch11(attrs: dict, body: Any) -> dict:
    if not isinstance(body, dict):
        raise _bad("PATCH body must be an object", "invalidSyntax")
    result = copy.deepcopy(attrs)
    meta = body.get("meta")
    for name in (meta or {}).get("attributes", []) if isinstance(meta, dict) else []:
        ns, rest = split_urn(name, {k for k in result if k.startswith("urn:")})
        target = result.get(_key(result, ns), {}) if ns else result
        if isinstance(target, dict):
            target.pop(_key(target, rest), None)
    for key, value in body.items():
        if key.lower() in ("schemas", "id", "meta"):
            continue
        current_key = _key(result, key)
        current = result.get(current_key)
        if isinstance(value, list):
            merged = list(current) if isinstance(current, list) else []
            for item in value:
                deleting = isinstance(item, dict) and str(item.get("operation", "")).lower() == "delete"
                merged = [c for c in merged if not _same(c, item)]
                if not deleting:
                    merged.append({k: v for k, v in item.items() if k != "operation"}
                                  if isinstance(item, dict) else item)
            result[current_key] = merged
        elif isinstance(value, dict) and isinstance(current, dict):
            current.update(copy.deepcopy(value))
        else:
            result[current_key] = copy.deepcopy(value)
    return result
