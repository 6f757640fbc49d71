"""The process's SDK tracer provider for tests that read finished spans: the global one, made and set once."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider


def sdk_provider() -> TracerProvider:
    """The global provider if it is the SDK's already (another test or module set it), else a new one, set global."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    return provider
