"""OpenTelemetry set-up from the standard ``OTEL_*`` variables, and the span attribute names used everywhere.

``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``…_TRACES_ENDPOINT``) chooses the OTLP/HTTP receiver (Jaeger in compose and
the chart); ``OTEL_TRACES_EXPORTER=none`` turns export off; ``OTEL_SERVICE_NAME`` overrides the service name.
Span names and recorded URLs never carry user names or emails: SCIM paths are recorded with filter values redacted.
Recorded exceptions and error statuses are masked before export (:class:`MaskingSpanExporter`): an exception's
message is one bounded line with secrets and email addresses masked, its stack trace has secrets masked.
"""

from __future__ import annotations

import logging
import os

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Status

from okta_bridge.redact import error_text, mask_personal, mask_secrets

__all__ = ["ATTR", "MaskingSpanExporter", "current_trace_id", "setup_tracing", "shutdown_tracing", "span_of", "trace_id_of"]


class ATTR:
    ORG = "okta.org"
    EVENT_UUID = "okta.event.uuid"
    EVENT_TYPE = "okta.event.type"
    APP_ID = "okta.app.id"
    USER_ID = "okta.user.id"
    BUCKET = "okta.rate_limit.bucket"
    PLAN_VERSION = "bridge.plan.version"
    PLAN_ACTION = "bridge.plan.action"
    OUTCOME = "bridge.outcome"
    # no target id: some targets use the userName (an email) as the resource id (issue 9); the audit has it
    HTTP_METHOD = "http.request.method"
    HTTP_STATUS = "http.response.status_code"
    URL_TEMPLATE = "url.template"


_provider: TracerProvider | None = None


def setup_tracing(service_name: str) -> TracerProvider:
    global _provider
    if _provider is not None:
        return _provider
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").lower() != "none":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(MaskingSpanExporter(OTLPSpanExporter())))
    trace.set_tracer_provider(provider)
    _provider = provider
    logging.getLogger(__name__).info("tracing configured for %s", service_name)
    return provider


STACK_LIMIT = 8_000  # characters of a recorded stack trace


class MaskingSpanExporter(SpanExporter):
    """Exports through ``inner`` with each recorded exception and error status masked: an HTTP library's error can
    quote a request header (``Bearer <token>``), a driver's a connection URL, a target's a person's email."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans) -> SpanExportResult:
        return self.inner.export([_masked(s) for s in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


def _masked(span: ReadableSpan) -> ReadableSpan:
    exceptions = any(e.name == "exception" for e in span.events)
    if not exceptions and not span.status.description:
        return span
    events = [_masked_event(e) if e.name == "exception" else e for e in span.events]
    status = Status(span.status.status_code, error_text(span.status.description)) if span.status.description \
        else span.status
    return ReadableSpan(name=span.name, context=span.context, parent=span.parent, resource=span.resource,
                        attributes=span.attributes, events=events, links=span.links, kind=span.kind, status=status,
                        start_time=span.start_time, end_time=span.end_time,
                        instrumentation_scope=span.instrumentation_scope)


def _masked_event(event: Event) -> Event:
    attributes = dict(event.attributes or {})
    if isinstance(attributes.get("exception.message"), str):
        attributes["exception.message"] = error_text(attributes["exception.message"])
    if isinstance(attributes.get("exception.stacktrace"), str):
        attributes["exception.stacktrace"] = mask_secrets(mask_personal(attributes["exception.stacktrace"][-STACK_LIMIT:]))
    return Event(event.name, attributes, event.timestamp)


def shutdown_tracing() -> None:
    if _provider is not None:
        _provider.force_flush(5_000)
        _provider.shutdown()


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def span_of(context: otel_context.Context | None) -> trace.Span | None:
    """The span current in a context (a delivery's, say); None for no context."""
    return trace.get_current_span(context) if context is not None else None


def trace_id_of(context: otel_context.Context | None) -> str | None:
    """The trace id of a context (a delivery's, say), or of the current one when None."""
    if context is None:
        return current_trace_id()
    ctx = trace.get_current_span(context).get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
