"""Okta error bodies (spec schema `Error`) and the exception that becomes one."""
from __future__ import annotations

import secrets

from fastapi.responses import JSONResponse

_SUMMARIES = {
    "E0000001": "Api validation failed: {detail}",
    "E0000007": "Not found: Resource not found: {detail} ({kind})",
    "E0000009": "Internal Server Error",
    "E0000010": "Service is in read only mode",
    "E0000011": "Invalid token provided",
    "E0000031": "Invalid search criteria.",
    "E0000047": "API call exceeded rate limit due to too many requests.",
}


class OktaError(Exception):
    def __init__(self, status: int, code: str, summary: str, causes: list[str] | None = None):
        super().__init__(summary)
        self.status, self.code, self.summary, self.causes = status, code, summary, causes or []


def error_body(code: str, summary: str, causes: list[str] | None = None) -> dict:
    return {
        "errorCode": code,
        "errorSummary": summary,
        "errorLink": code,
        "errorId": "oae" + secrets.token_urlsafe(16)[:22],
        "errorCauses": [{"errorSummary": c} for c in (causes or [])],
    }


def error_response(err: OktaError, headers: dict | None = None) -> JSONResponse:
    body = error_body(err.code, err.summary, err.causes)
    return JSONResponse(body, status_code=err.status, headers=headers)


def not_found(kind: str, detail: str) -> OktaError:
    return OktaError(404, "E0000007", _SUMMARIES["E0000007"].format(detail=detail, kind=kind))


def invalid(detail: str) -> OktaError:
    return OktaError(400, "E0000001", _SUMMARIES["E0000001"].format(detail=detail), [detail])


def invalid_search(detail: str) -> OktaError:
    """A `filter` the users listing cannot take (Okta: 400 E0000031)."""
    return OktaError(400, "E0000031", _SUMMARIES["E0000031"], [detail])


def uri_too_long(size: int, limit: int) -> OktaError:
    """414: Okta documents no limit and no code for it; the body keeps the Error shape (code E0000001)."""
    detail = f"request URI is {size} bytes, longer than {limit}"
    return OktaError(414, "E0000001", _SUMMARIES["E0000001"].format(detail=detail), [detail])


def invalid_token() -> OktaError:
    return OktaError(401, "E0000011", _SUMMARIES["E0000011"])


def rate_limited() -> OktaError:
    return OktaError(429, "E0000047", _SUMMARIES["E0000047"])


def server_error(status: int) -> OktaError:
    code = "E0000010" if status == 503 else "E0000009"
    return OktaError(status, code, _SUMMARIES[code])
