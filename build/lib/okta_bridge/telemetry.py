"""OpenTelemetry set-up from the standard ``OTEL_*`` variables, and the span attribute names used everywhere.

Configuration is the SDK's own, from the environment (:func:`setup_tracing`):

- ``OTEL_TRACES_EXPORTER``: ``otlp`` (default), ``console``, ``none``, or a comma-separated list;
- ``OTEL_EXPORTER_OTLP_PROTOCOL`` (or ``…_TRACES_PROTOCOL``): ``http/protobuf`` (the bridge's default when unset:
  Jaeger's and a collector's port 4318) or ``grpc`` (port 4317; the SDK's own default, shipped too);
- endpoint, headers, timeout, compression and certificates: ``OTEL_EXPORTER_OTLP_*``, read by the exporter itself;
- resource: ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` (``service.version`` defaults to the package's);
- sampler: ``OTEL_TRACES_SAMPLER`` / ``…_ARG``; batching: ``OTEL_BSP_*``.

MongoDB commands are spans of their caller's trace (``opentelemetry-instrumentation-pymongo``, the async client
included, on the stable database conventions: ``db.system.name``, ``db.namespace``, ``db.collection.name``,
``db.operation.name``; never the command's values); a command outside any trace (a lease renewal) makes no span.
A trace whose root is marked deferred (:data:`DEFERRED`; the poller's poll) is kept only when its root says so
(:class:`DeferredRootProcessor`): an idle poll leaves no trace.

Span names and recorded URLs never carry user names or emails: SCIM paths are recorded with filter values redacted.
Recorded exceptions and error statuses are masked before export (:class:`MaskingSpanExporter`): an exception's
message is one bounded line with secrets and email addresses masked, its stack trace has secrets masked.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, entry_points, version
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Status, StatusCode

from okta_bridge.redact import error_text, mask_personal, mask_secrets

__all__ = ["ATTR", "DEFERRED", "DeferredRootProcessor", "MaskingSpanExporter", "TracingSettingsError", "current_span_ids",
           "current_trace_id", "instrument_pymongo", "keep_trace", "service_resource", "setup_tracing", "shutdown_tracing", "span_exporters",
           "span_of", "trace_id_of"]


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
    URL_FULL = "url.full"
    SERVER_ADDRESS = "server.address"
    SERVER_PORT = "server.port"
    ERROR_TYPE = "error.type"


DEFERRED = "bridge.trace.deferred"  # on a root span at start: its trace is exported only if the root is kept
KEEP = "bridge.trace.keep"  # set on a deferred root before it ends: True keeps its trace
DEFAULT_PROTOCOL = "http/protobuf"
_EXPORTER_BY_PROTOCOL = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}

_provider: TracerProvider | None = None


class TracingSettingsError(ValueError):
    """An ``OTEL_*`` setting names an exporter or protocol that does not exist: the service does not start."""


def package_version() -> str:
    try:
        return version("okta-onprem-bridge")
    except PackageNotFoundError:  # run from a source tree that was not installed
        return "0+unknown"


def span_exporters() -> list[SpanExporter]:
    """The exporters ``OTEL_TRACES_EXPORTER`` names (``otlp`` by default; ``none``: none), each made by its entry
    point as the SDK's configurator does, so the exporter reads its own ``OTEL_EXPORTER_OTLP_*`` settings. A name or
    protocol that does not exist stops the start with a message naming the variable."""
    names = [n.strip().lower() for n in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()]
    exporters: list[SpanExporter] = []
    for name in names:
        if name == "none":
            return []
        if name == "otlp":
            protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or
                        os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or DEFAULT_PROTOCOL).strip()
            if protocol not in _EXPORTER_BY_PROTOCOL:
                raise TracingSettingsError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: use one of "
                                 f"{', '.join(_EXPORTER_BY_PROTOCOL)}")
            name = _EXPORTER_BY_PROTOCOL[protocol]
        found = list(entry_points(group="opentelemetry_traces_exporter", name=name))
        if not found:
            raise TracingSettingsError(f"OTEL_TRACES_EXPORTER={name!r}: no such exporter (otlp, console or none)")
        exporters.append(found[0].load()())
    return exporters


def service_resource(service_name: str) -> Resource:
    """The service's name and version (the package's), under what ``OTEL_SERVICE_NAME`` and
    ``OTEL_RESOURCE_ATTRIBUTES`` say: those win."""
    env = OTELResourceDetector().detect().attributes
    return Resource.create({"service.name": service_name, "service.version": package_version(), **env})


def setup_tracing(service_name: str) -> TracerProvider:
    global _provider
    if _provider is not None:
        return _provider
    resource = service_resource(service_name)
    provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER
    exporters = span_exporters()
    for exporter in exporters:
        provider.add_span_processor(DeferredRootProcessor(BatchSpanProcessor(MaskingSpanExporter(exporter))))
    trace.set_tracer_provider(provider)
    _provider = provider
    if exporters:  # spans nobody receives are not worth a listener on every database command
        instrument_pymongo(provider)
    logging.getLogger(__name__).info("tracing configured for %s", resource.attributes.get("service.name"))
    return provider


def keep_trace(span: trace.Span, keep: bool) -> None:
    """Decide a deferred root's trace (see :class:`DeferredRootProcessor`)."""
    span.set_attribute(KEEP, keep)


class DeferredRootProcessor(SpanProcessor):
    """Holds the spans of a trace whose root was started with :data:`DEFERRED` until that root ends, then passes
    them all on if the root was kept (:data:`KEEP`, or an error status) or drops them all: the poller's idle polls
    (a System Log page with nothing to publish) leave no trace, while a poll that published work keeps its Okta
    request and database spans. Spans of other traces pass straight through."""

    MAX_HELD = 1000  # spans of one deferred trace held at most; past that they pass on (the trace is a big one)

    def __init__(self, inner: SpanProcessor) -> None:
        self.inner = inner
        self._held: dict[int, list[ReadableSpan]] = {}

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        if span.parent is None and (span.attributes or {}).get(DEFERRED):
            self._held[span.context.trace_id] = []
        self.inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        trace_id = span.context.trace_id
        held = self._held.get(trace_id)
        if held is None:
            self.inner.on_end(span)
            return
        if span.parent is not None:
            if len(held) < self.MAX_HELD:
                held.append(span)
            else:
                self.inner.on_end(span)
            return
        del self._held[trace_id]
        if (span.attributes or {}).get(KEEP) or span.status.status_code is StatusCode.ERROR:
            for child in held:
                self.inner.on_end(child)
            self.inner.on_end(span)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


class _ChildSpansOnly:
    """A tracer provider whose tracers make a span only inside a trace: a database command outside one (a lease
    renewal, a permit heartbeat) would otherwise be a trace of its own, every few seconds."""

    def __init__(self, provider: trace.TracerProvider) -> None:
        self._provider = provider

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _ChildOnlyTracer(self._provider.get_tracer(*args, **kwargs))


class _ChildOnlyTracer(trace.Tracer):
    def __init__(self, inner: trace.Tracer) -> None:
        self._inner = inner

    def start_span(self, name: str, context: otel_context.Context | None = None, *args: Any,
                   **kwargs: Any) -> trace.Span:
        if not trace.get_current_span(context).get_span_context().is_valid:
            return trace.INVALID_SPAN
        return self._inner.start_span(name, context, *args, **kwargs)

    @contextmanager
    def start_as_current_span(self, name: str, context: otel_context.Context | None = None, *args: Any,
                              end_on_exit: bool = True, **kwargs: Any):  # type: ignore[override]
        with trace.use_span(self.start_span(name, context, *args, **kwargs), end_on_exit=end_on_exit) as span:
            yield span


def _mongo_request(span: trace.Span, event: Any) -> None:
    """The stable conventions' operation name, and the span named ``{operation} {collection}`` as they say."""
    if not span.is_recording():
        return
    span.set_attribute("db.operation.name", event.command_name)
    collection = event.command.get(event.command_name)
    span.update_name(f"{event.command_name} {collection}" if isinstance(collection, str) else event.command_name)


def instrument_pymongo(provider: trace.TracerProvider) -> None:
    """MongoDB command spans, on the stable database conventions (``OTEL_SEMCONV_STABILITY_OPT_IN`` gains
    ``database`` unless it names a database mode already); commands' values are never recorded (no
    ``capture_statement``: the query text is the command's name). For clients made after this call."""
    opt_in = [m.strip() for m in os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "").split(",") if m.strip()]
    if not any(m.startswith("database") for m in opt_in):
        os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] = ",".join([*opt_in, "database"])
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor

    PymongoInstrumentor().instrument(tracer_provider=_ChildSpansOnly(provider), request_hook=_mongo_request,
                                     capture_statement=False)


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


def current_span_ids() -> tuple[str, str] | None:
    """The current trace and span ids (hex), for log lines; None outside a trace."""
    ctx = trace.get_current_span().get_span_context()
    return (format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")) if ctx.is_valid else None


def span_of(context: otel_context.Context | None) -> trace.Span | None:
    """The span current in a context (a delivery's, say); None for no context."""
    return trace.get_current_span(context) if context is not None else None


def trace_id_of(context: otel_context.Context | None) -> str | None:
    """The trace id of a context (a delivery's, say), or of the current one when None."""
    if context is None:
        return current_trace_id()
    ctx = trace.get_current_span(context).get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
