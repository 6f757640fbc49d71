"""The System Log as a polling request: ``sortOrder=ASCENDING``, no ``until``, then only ever the ``next`` link."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from okta_bridge.okta_client import OktaBadAnswerError, OktaClient, describe


class OktaLogSource:
    def __init__(self, client: OktaClient, limit: int) -> None:
        self._client, self._limit = client, limit

    def polling_link(self, since: datetime) -> str:
        """``since`` in UTC, as the ``Z`` says: an aware time is converted (``+02:00`` is two hours earlier in UTC),
        a naive one is taken as UTC."""
        since = since.astimezone(UTC) if since.tzinfo else since.replace(tzinfo=UTC)
        query = urlencode({"since": since.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                           "sortOrder": "ASCENDING", "limit": self._limit})
        return f"{self._client.org_url}/api/v1/logs?{query}"

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
