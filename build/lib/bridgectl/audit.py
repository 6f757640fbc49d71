"""``bridgectl audit``: the audit trail from MongoDB, newest first, with the audit API's filters; ``--follow``
prints new records as they arrive (oldest first) until interrupted."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta

import typer
from rich.table import Table

from bridgectl.common import JSON, bad_input, console, load, resolve_app
from okta_bridge.contracts import is_okta_id
from okta_bridge.mongo import connect
from okta_bridge.settings import BridgeSettings
from okta_bridge.stores.audit import AuditStore

COLUMNS = ("at", "service", "step", "reason", "app_id", "okta_user_id", "okta_group_id", "plan_version",
           "scim_method", "scim_status", "detail")
_RELATIVE = re.compile(r"^(\d+)([smhd])$")


def parse_since(value: str | None) -> datetime | None:
    """An ISO 8601 time (UTC when it names no zone) or a duration back from now (``90s``, ``15m``, ``2h``, ``7d``)."""
    if value is None:
        return None
    m = _RELATIVE.fullmatch(value.strip())
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return datetime.now(UTC) - timedelta(**{unit: int(m.group(1))})
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        bad_input(f"--since: {value!r} is neither an ISO 8601 time nor a duration like 15m, 2h or 7d")
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def filters_of(user: str | None, app: str | None, group: str | None, connectors_file: str | None) -> dict:
    """Ids as Okta writes them; an app also by its connector name. Anything else: exit 2."""
    if user is not None and not is_okta_id(user):
        if "@" not in user or "/" in user:
            bad_input("--user: neither an Okta user id (20 letters and digits, 00u…) nor a login")
        from bridgectl.oneuser import user_ids

        user = user_ids([user])[0]  # the audit keeps ids: a login is looked up in Okta
    if group is not None and not is_okta_id(group):
        bad_input("--group: not an Okta group id (20 letters and digits, 00g…)")
    app_id = None
    if app is not None:
        app_id = app if is_okta_id(app) else resolve_app(load(connectors_file), app).okta_app_id
    return {"okta_user_id": user, "app_id": app_id, "okta_group_id": group}


FOLLOW_LOOKBACK = timedelta(seconds=30)  # how late a record may land and still be printed by --follow


def audit(user: str = typer.Option(None, "--user", help="Okta user id (00u…) or login"),
          app: str = typer.Option(None, "--app", help="the app's connector name or Okta app id"),
          group: str = typer.Option(None, "--group", help="Okta group id (00g…)"),
          since: str = typer.Option(None, "--since", help="ISO 8601 time, or a duration back from now: 15m, 2h, 7d"),
          limit: int = typer.Option(50, min=1, max=1000, help="records (the newest)"),
          follow: bool = typer.Option(False, "--follow", "-f", help="then print new records as they arrive"),
          connectors_file: str = typer.Option(None, "--connectors-file"), json_: bool = JSON) -> None:
    """The audit trail, newest first (as ``GET /audit`` of the audit-recorder serves it)."""
    filters = filters_of(user, app, group, connectors_file)
    asyncio.run(_audit(filters, parse_since(since), limit, follow, json_))


async def _audit(filters: dict, since: datetime | None, limit: int, follow: bool, as_json: bool) -> None:
    base = BridgeSettings()
    client, db = connect(base.mongodb_url.get_secret_value(), base.mongodb_db)
    store = AuditStore(db)
    try:
        items, _ = await store.page(filters, since, None, limit, None)
        _print(list(reversed(items)), as_json)
        last = max((i["at"] for i in items), default=since or datetime.now(UTC))
        seen = {i["id"]: i["at"] for i in items}
        while follow:
            await asyncio.sleep(1.0)
            # records reach the trail in batches from several services, so one may land after a newer one: look
            # back FOLLOW_LOOKBACK from the newest seen, and print what was not printed yet
            new, _ = await store.page(filters, last - FOLLOW_LOOKBACK, None, 1000, None)
            new = [i for i in reversed(new) if i["id"] not in seen]
            seen.update((i["id"], i["at"]) for i in new)
            if new:
                last = max(last, *(i["at"] for i in new))
                _print(new, as_json)
                seen = {k: at for k, at in seen.items() if at >= last - FOLLOW_LOOKBACK}  # bounded
    finally:
        await client.close()


def _print(items: list[dict], as_json: bool) -> None:
    if as_json:  # one record per line when following; a list otherwise would not stream
        for item in items:
            typer.echo(json.dumps(item, default=str, sort_keys=True))
        return
    if not items:
        return
    table = Table(*COLUMNS)
    for i in items:
        table.add_row(*[i["at"].strftime("%Y-%m-%d %H:%M:%S") if c == "at" else str(i.get(c) or "")
                        for c in COLUMNS])
    console().print(table)
