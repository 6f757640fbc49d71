"""The System Log as a polling request: ``sortOrder=ASCENDING``, no ``until``, then only ever the ``next`` link.

The request filters on the event types the bridge handles (``filter=eventType eq "…" or …``; Okta allows a filter in
a polling request and keeps it in the ``next`` link), so sign-in and other traffic never reaches the bridge nor
spends the logs bucket's share it has with the org's SIEM.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Iterable
from urllib.parse import parse_qs, urlencode, urlsplit

from okta_bridge.events import HANDLED_EVENT_TYPES
from okta_bridge.okta_client import OktaBadAnswerError, OktaClient, describe

HANDLED_EVENTS = frozenset(HANDLED_EVENT_TYPES)  # the one list (okta_bridge.events)


def event_filter(event_types: Iterable[str] = HANDLED_EVENTS) -> str:
    """``eventType eq "a" or eventType eq "b" …``, sorted: the same types always give the same text."""
    return " or ".join(f'eventType eq "{t}"' for t in sorted(set(event_types)))


def filter_of(link: str) -> str | None:
    """The ``filter`` a System Log link asks for (None: none)."""
    values = parse_qs(urlsplit(link).query).get("filter")
    return values[0] if values else None


class OktaLogSource:
    def __init__(self, client: OktaClient, limit: int, log_filter: str | None = None) -> None:
        self._client, self._limit = client, limit
        self.filter = log_filter if log_filter is not None else event_filter()

    def polling_link(self, since: datetime) -> str:
        """``since`` in UTC, as the ``Z`` says: an aware time is converted (``+02:00`` is two hours earlier in UTC),
        a naive one is taken as UTC."""
        since = since.astimezone(UTC) if since.tzinfo else since.replace(tzinfo=UTC)
        query = urlencode({"since": since.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                           "sortOrder": "ASCENDING", "limit": self._limit, "filter": self.filter})
        return f"{self._client.org_url}/api/v1/logs?{query}"

    def asks_as_configured(self, link: str) -> bool:
        return filter_of(link) == self.filter

    def server_now(self) -> datetime:
        return self._client.server_now()

    async def fetch(self, link: str) -> tuple[list[Any], str | None]:
        """A page is a JSON list of events; anything else (an object, an empty body) raises ``OktaBadAnswerError``
        and the cursor stays where it is: the page is read again on the next poll, nothing is skipped."""
        page = await self._client.get(link)
        if not isinstance(page.body, list):
            raise OktaBadAnswerError(f"okta GET /api/v1/logs -> {page.status}: the System Log page is "
                                     f"{describe(page.body)}, not a list of events; the cursor stays", page.status)
        return page.body, page.links.get("next")
