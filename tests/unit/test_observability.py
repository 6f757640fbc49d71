"""What operators see (issue 10, items 3 and 4): traces only for polls that published work, HTTP and database spans
on the stable conventions, JSON log lines, and tracing configured from the standard ``OTEL_*`` variables."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from okta_bridge.telemetry import DeferredRootProcessor
from queue_poller.handlers import Poller
from tests.spans import sdk_provider
from tests.unit.fakes import FakeLogSource, membership_event
from tests.unit.test_dispatcher_engine import world  # noqa: F401 - the engine fixture
from tests.unit.test_poller_handlers import LINK, NEXT, started


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """Spans finished from now on, through the processor the services use (deferred roots held until decided)."""
    provider = sdk_provider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(DeferredRootProcessor(SimpleSpanProcessor(exporter)))
    return exporter


class TracedLogSource(FakeLogSource):
    """Each fetch makes a client span, as the Okta client does."""

    async def fetch(self, link):
        with trace.get_tracer("test").start_as_current_span("okta GET /api/v1/logs", kind=trace.SpanKind.CLIENT):
            return await super().fetch(link)


async def _poller_with_traced_source() -> tuple[Poller, TracedLogSource]:
    poller, _, _, _ = await started()
    source = TracedLogSource()
    poller.source = source
    return poller, source


async def test_an_idle_poll_leaves_no_trace(spans):
    poller, source = await _poller_with_traced_source()
    source.pages[LINK] = ([], LINK)
    for _ in range(3):
        await poller.poll_once()
    names = [s.name for s in spans.get_finished_spans()]
    assert "okta poll System Log" not in names and "okta GET /api/v1/logs" not in names, names


async def test_a_poll_that_finds_only_irrelevant_events_leaves_no_trace(spans):
    poller, source = await _poller_with_traced_source()
    source.pages[LINK] = ([membership_event("e1", app_id="0oa9otherxxxxxxxxxxx")], NEXT)
    await poller.poll_once()
    assert [s.name for s in spans.get_finished_spans()] == []


async def test_a_poll_that_publishes_keeps_its_whole_trace(spans):
    poller, source = await _poller_with_traced_source()
    source.pages[LINK] = ([membership_event("e1")], NEXT)
    await poller.poll_once()
    by_name = {s.name: s for s in spans.get_finished_spans()}
    root, fetch = by_name["okta poll System Log"], by_name["okta GET /api/v1/logs"]
    assert fetch.parent.span_id == root.context.span_id
    assert root.attributes["okta.log.published"] == 1


async def test_a_failed_poll_keeps_its_trace(spans):
    poller, source = await _poller_with_traced_source()
    source.fail_with = RuntimeError("okta down")
    with pytest.raises(RuntimeError):
        await poller.poll_once()
    assert "okta poll System Log" in [s.name for s in spans.get_finished_spans()]


async def test_spans_of_other_traces_pass_straight_through(spans):
    with trace.get_tracer("test").start_as_current_span("plan"):
        with trace.get_tracer("test").start_as_current_span("child"):
            pass
    assert [s.name for s in spans.get_finished_spans()] == ["child", "plan"]


# ------------------------------------------------------------------ the dispatcher's circuit in its log


def test_a_circuit_logs_once_when_it_opens_and_once_when_it_closes_naming_the_connector(caplog):
    import logging

    from okta_bridge.outcomes import CircuitEffect
    from scim_dispatcher.circuit import Circuits

    app = "0oa1jiraxxxxxxxxxxxx"
    circuits = Circuits(probe_interval_s=10, failure_threshold=2, names={app: "jira"})
    with caplog.at_level(logging.INFO, logger="scim_dispatcher.circuit"):
        circuits.apply(app, CircuitEffect.CLOSE)  # closed and closing again: nothing to say
        for _ in range(6):  # the threshold passed, then plans keep failing and being held
            circuits.failure(app, "503 from the target")
        circuits.apply(app, CircuitEffect.OPEN, "still down")
        circuits.apply(app, CircuitEffect.CLOSE)
        circuits.apply(app, CircuitEffect.CLOSE)
    lines = [r.getMessage() for r in caplog.records if r.name == "scim_dispatcher.circuit"]
    assert len(lines) == 2, lines
    assert lines[0].startswith("circuit of app jira opened") and "503 from the target" in lines[0]
    assert lines[1].startswith("circuit of app jira closed")
    assert app not in " ".join(lines)


# ------------------------------------------------------------------ the audit trail tells the whole story


async def test_a_retry_after_an_okta_429_names_the_user_and_the_app_it_is_for():
    """A user event names no app: its retry's record takes the app of the key that failed."""
    import httpx

    from okta_bridge.contracts import AuditStep, Reason
    from okta_bridge.events import parse_event
    from okta_bridge.okta_client import OktaClient
    from tests.unit.fakes import ORG, FakeAssignments, FakePlanOutbox, app_connector, user_event
    from tests.unit.test_translator_batches import JIRA, FakeRepublisher, GatheringAudit, delivery
    from translator.consume import TranslatorIntake
    from translator.handlers import Translator
    from translator.planning import Planner

    def limited(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json={"errorCode": "E0000047"}, headers={"X-Rate-Limit-Reset": "0"})

    user = "00u1xxxxxxxxxxxxxxxx"
    apps = {JIRA: app_connector(JIRA, "jira")}
    okta = OktaClient(ORG, "t0ken", http=httpx.AsyncClient(transport=httpx.MockTransport(limited)))
    t = Translator(ORG, apps, Planner(ORG, apps, FakeAssignments(), okta), FakePlanOutbox(), GatheringAudit())
    intake = TranslatorIntake(t, FakeRepublisher(), t.audit, batch_size=10, batch_wait_s=0.01)
    membership = parse_event(ORG, membership_event("e1", user_id=user, app_id=JIRA))
    profile = parse_event(ORG, user_event("e2", user_id=user))
    for event in (membership, profile):
        intake.on_delivery(delivery(event.model_dump_json().encode()))
    await intake.close()
    retried = {f["event_uuid"]: f for s, f in t.audit.records if s is AuditStep.RETRIED}
    assert set(retried) == {"e1", "e2"}
    for record in retried.values():
        assert record["reason"] is Reason.OKTA_RATE_LIMITED
        assert (record["okta_user_id"], record["app_id"]) == (user, JIRA)
    assert retried["e2"]["event_type"] == profile.event_type


class _Published:
    def __init__(self) -> None:
        self.messages: list = []

    async def publish(self, message, **kw) -> None:
        self.messages.append((message, kw))


async def test_a_group_event_carries_its_group_id_from_its_first_record():
    from okta_bridge.contracts import AuditStep
    from queue_poller.adapters.outbox import BrokerOutbox
    from tests.unit.fakes import ORG, FakeAudit
    from tests.unit.test_group_planner import group_event

    audit = FakeAudit()
    outbox = BrokerOutbox(_Published(), audit, ORG)  # type: ignore[arg-type]
    group = "00g1salesxxxxxxxxxxx"
    await outbox.publish_event(group_event("group.user_membership.add", group, user_id="00u1xxxxxxxxxxxxxxxx"), None)
    [(step, fields)] = audit.records
    assert step is AuditStep.RECEIVED
    assert (fields["okta_group_id"], fields["okta_user_id"]) == (group, "00u1xxxxxxxxxxxxxxxx")


async def test_a_group_events_retry_carries_its_group_id():
    from okta_bridge.contracts import AuditStep
    from tests.unit.test_group_planner import group_event
    from tests.unit.test_translator_batches import FakeRepublisher, GatheringAudit, delivery
    from translator.consume import TranslatorIntake

    class Failing:
        groups = None

        async def handle_event(self, event):
            raise RuntimeError("database away")

    audit = GatheringAudit()
    intake = TranslatorIntake(Failing(), FakeRepublisher(), audit)  # type: ignore[arg-type]
    group = "00g1salesxxxxxxxxxxx"
    intake.on_delivery(delivery(group_event("group.lifecycle.delete", group).model_dump_json().encode()))
    await intake.close()
    [(step, fields)] = audit.records
    assert step is AuditStep.RETRIED and fields["okta_group_id"] == group


async def test_a_group_write_carries_its_scim_method_and_status_into_the_audit_record():
    """The dispatcher's group plans: the record of an applied plan names its last write (PATCH /Groups/{id} 204),
    whatever reads came before it."""
    from okta_bridge.contracts import AuditStep, MembershipPlanned, Reason
    from scim_dispatcher.consume import done_fields
    from scim_dispatcher.groups import GroupDispatcher, GroupOutcome
    from tests.unit.test_scim_groups import client_for, group, scim

    client, _ = client_for(scim(200, group("g-1")), scim(204))

    class OneWrite(GroupDispatcher):
        async def _apply_members(self, plan):
            await client.get_group("g-1")
            await client.add_members("g-1", ["t-1"])
            return GroupOutcome(AuditStep.APPLIED, Reason.APPLIED, "g-1", "1 added in 1 request(s)", 3.0, requests=1)

    d = OneWrite(apps={}, clients={}, state=None, group_links=None, user_links=None, leases=None)  # type: ignore[arg-type]
    plan = MembershipPlanned(org="https://acme.okta.com", app_id="0oa1jiraxxxxxxxxxxxx",
                             okta_group_id="00g1salesxxxxxxxxxxx", okta_user_ids=("00u1xxxxxxxxxxxxxxxx",),
                             cause="group.user_membership.add", event_uuid="e1")
    fields = done_fields(await d.apply_members(plan))
    assert (fields["scim_method"], fields["scim_path"], fields["scim_status"]) == ("PATCH", "/Groups/{id}", 204)
    # a plan that wrote nothing names no call
    assert done_fields(GroupOutcome(AuditStep.SKIPPED_STALE, Reason.STALE, "g-1", "already", 1.0))["scim_method"] is None


async def test_a_held_plan_is_audited_when_parked_and_when_released_not_at_every_loop(world):
    """The hold queue brings a held plan back every HOLD_TTL_MS while the circuit stays open; the time of its
    first park travels in its headers, so only the first park and the release are recorded."""
    import time

    from opentelemetry import context as otel_context

    from okta_bridge.bus import HELD_HEADER, Delivery
    from okta_bridge.contracts import AuditStep, Reason
    from okta_bridge.topology import partition_key
    from tests.unit.test_dispatcher_engine import JIRA, POOL, FakeMessage, plan, settled

    w = await world()
    circuits = w.engine.ports.circuits

    def deliver(held_since: float | None) -> Delivery:
        raw = FakeMessage(plan("00u1xxxxxxxxxxxxxxxx").model_dump_json().encode(), partition_key(POOL, 0), "p", w.log)
        if held_since is not None:
            raw.headers[HELD_HEADER] = held_since
        delivery = Delivery(raw, f"dispatcher.{POOL}.p000", 1, otel_context.Context(),
                            trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT))
        w.engine.on_delivery(delivery, 0)
        return delivery

    circuits.open(JIRA, "target unreachable")  # and its probe was just now: plans are held
    await settled(deliver(None))  # first park
    first = w.republisher.held_since[-1]
    assert first is not None and abs(first - time.time()) < 5
    await settled(deliver(first))  # back from the hold queue 15 s later, still open: parked again, silently
    assert w.republisher.held_since[-1] == first
    assert [r.step for r in w.records()] == [AuditStep.HELD]
    circuits.close(JIRA)
    await settled(deliver(first - 30))  # back again, the circuit closed: released, then applied
    steps = [(r.step, r.reason) for r in w.records()]
    assert steps == [(AuditStep.HELD, Reason.CIRCUIT_OPEN), (AuditStep.RELEASED, Reason.CIRCUIT_CLOSED),
                     (AuditStep.APPLIED, Reason.APPLIED)], steps
    assert all(r.okta_user_id == "00u1xxxxxxxxxxxxxxxx" and r.app_id == JIRA for r in w.records())


# ------------------------------------------------------------------ log lines


from tests.unit.test_secrets_masking import TOKEN, restore_logging  # noqa: E402,F401 - the logging fixture


def _lines(text: str) -> list[dict]:
    import json

    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_log_lines_are_json_with_service_level_trace_span_event_and_exception(restore_logging, capsys, monkeypatch):
    import logging

    from okta_bridge.logs import register_secret, setup_logging
    from okta_bridge.telemetry import ATTR

    monkeypatch.delenv("LOG_LEVEL", raising=False)
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    sdk_provider()  # the SDK's: spans with real trace and span ids for the log lines
    setup_logging("scim-dispatcher")  # stderr is captured: not a terminal
    register_secret(TOKEN)
    log = logging.getLogger("scim_dispatcher")
    log.info("outside any trace")
    log.debug("below the level")
    with trace.get_tracer("test").start_as_current_span("plan", attributes={ATTR.EVENT_UUID: "ev-1"}) as span:
        try:
            raise RuntimeError(f"refused SSWS {TOKEN}")
        except RuntimeError:
            log.exception("applying a plan failed with %s", TOKEN)
        log.warning("named", extra={"event_uuid": "ev-2"})
    first, failed, named = _lines(capsys.readouterr().err)
    assert first["service"] == "scim-dispatcher" and first["level"] == "INFO" and first["logger"] == "scim_dispatcher"
    assert first["message"] == "outside any trace" and "trace_id" not in first and "event_uuid" not in first
    ctx = span.get_span_context()
    assert (failed["trace_id"], failed["span_id"]) == (format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"))
    assert failed["level"] == "ERROR" and failed["event_uuid"] == "ev-1"
    assert "Traceback" in failed["exception"] and "RuntimeError" in failed["exception"]
    assert TOKEN not in failed["message"] + failed["exception"]
    assert named["event_uuid"] == "ev-2"


def test_log_level_comes_from_log_level_and_a_wrong_one_is_said(restore_logging, capsys, monkeypatch):
    import logging

    from okta_bridge.logs import setup_logging

    monkeypatch.setenv("LOG_LEVEL", "warning")
    setup_logging("translator")
    logging.getLogger("translator").info("quiet")
    logging.getLogger("translator").warning("loud")
    assert [line["message"] for line in _lines(capsys.readouterr().err)] == ["loud"]
    monkeypatch.setenv("LOG_LEVEL", "chatty")
    setup_logging("translator")
    logging.getLogger("translator").info("at info")
    messages = [line["message"] for line in _lines(capsys.readouterr().err)]
    assert messages[0].startswith("LOG_LEVEL='chatty' is not one of") and messages[1] == "at info"


def test_faststreams_and_uvicorns_lines_come_in_the_same_format(restore_logging, capsys, monkeypatch):
    import logging

    import faststream  # noqa: F401 - its own logger, handler and formatter made at import
    import uvicorn

    from okta_bridge.logs import mask_handlers, setup_logging
    from okta_bridge.runtime import make_broker

    monkeypatch.delenv("LOG_LEVEL", raising=False)
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    setup_logging("audit-recorder")
    broker = make_broker("amqp://guest:guest@127.0.0.1:5672/", 10)
    # FastStream is handed the logger to use: it adds no stdout handler of its own when the broker starts
    assert broker.config.logger.params_storage.get_logger(context=None) is logging.getLogger("faststream.access.rabbit")
    uvicorn.Config(lambda scope, receive, send: None, log_level="info")  # configures uvicorn's loggers, as at start
    mask_handlers()  # what the audit-recorder calls once uvicorn is up
    logging.getLogger("faststream").info("FastStream app started")
    logging.getLogger("faststream.access.rabbit").warning("consumer restarted")
    logging.getLogger("uvicorn.error").info("Uvicorn running")
    lines = _lines(capsys.readouterr().err)
    assert [(line["logger"], line["service"]) for line in lines] == [
        ("faststream", "audit-recorder"), ("faststream.access.rabbit", "audit-recorder"),
        ("uvicorn.error", "audit-recorder")]


def test_on_a_terminal_lines_are_text(restore_logging, monkeypatch):
    import io
    import logging
    import sys

    from okta_bridge.logs import setup_logging

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    setup_logging("queue-poller")
    logging.getLogger("queue_poller").warning("poll failed")
    line = terminal.getvalue().strip()
    assert not line.startswith("{") and " queue-poller WARNING queue_poller: poll failed" in line


# ------------------------------------------------------------------ HTTP spans on the stable conventions


async def test_okta_request_spans_follow_the_stable_http_conventions_without_the_query(spans):
    import httpx

    from okta_bridge.okta_client import OktaClient, OktaNotFoundError

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/00u9xxxxxxxxxxxxxxxx"):
            return httpx.Response(404, json={"errorCode": "E0000007"})
        return httpx.Response(200, json=[])

    okta = OktaClient("https://acme.okta.com", "t0ken", http=httpx.AsyncClient(transport=httpx.MockTransport(answer)))
    await okta.get("/api/v1/users", {"filter": 'profile.email eq "ann@acme.com"'})
    with pytest.raises(OktaNotFoundError):
        await okta.get_user("00u9xxxxxxxxxxxxxxxx")
    listing, missing = [s for s in spans.get_finished_spans() if s.name.startswith("okta GET")]
    assert listing.kind is trace.SpanKind.CLIENT
    assert listing.attributes["http.request.method"] == "GET"
    assert listing.attributes["url.full"] == "https://acme.okta.com/api/v1/users"  # no query: no filter, no email
    assert (listing.attributes["server.address"], listing.attributes["server.port"]) == ("acme.okta.com", 443)
    assert listing.attributes["http.response.status_code"] == 200 and "error.type" not in listing.attributes
    assert missing.attributes["error.type"] == "404" and missing.status.status_code is trace.StatusCode.ERROR
    assert "ann@acme.com" not in str([dict(s.attributes) for s in spans.get_finished_spans()])


async def test_scim_request_spans_follow_the_stable_http_conventions(spans):
    import httpx

    from scim_dispatcher.adapters.scim_client import ScimClient

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            raise httpx.ConnectError("refused")
        return httpx.Response(503, text="down")

    scim = ScimClient(httpx.AsyncClient(transport=httpx.MockTransport(answer)), "https://target.example:8443/scim",
                      "2.0")
    for call in (scim.find_user("ann@acme.com"), scim.create_user({"userName": "ann@acme.com"})):
        with pytest.raises(Exception):
            await call
    search, create = [s for s in spans.get_finished_spans() if s.name.startswith("SCIM")]
    for span in (search, create):
        assert span.kind is trace.SpanKind.CLIENT
        assert (span.attributes["server.address"], span.attributes["server.port"]) == ("target.example", 8443)
        assert "ann@acme.com" not in span.attributes["url.full"]
    assert search.attributes["error.type"] == "ConnectError"
    assert create.attributes["http.request.method"] == "POST" and create.attributes["error.type"] == "503"
    assert create.attributes["http.response.status_code"] == 503


# ------------------------------------------------------------------ tracing from the standard variables


@pytest.mark.parametrize(("env", "expected"), [
    ({}, "opentelemetry.exporter.otlp.proto.http.trace_exporter"),  # the bridge's default: OTLP over HTTP
    ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"),
    ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"},
     "opentelemetry.exporter.otlp.proto.http.trace_exporter"),
    ({"OTEL_TRACES_EXPORTER": "console"}, "opentelemetry.sdk.trace.export"),
])
def test_the_exporter_is_the_one_the_standard_variables_name(monkeypatch, env, expected):
    from okta_bridge.telemetry import span_exporters

    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    [exporter] = span_exporters()
    assert type(exporter).__module__ == expected
    exporter.shutdown()


def test_no_exporter_or_a_wrong_one_is_said(monkeypatch):
    from okta_bridge.telemetry import span_exporters

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert span_exporters() == []
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_PROTOCOL='http/json': use one of grpc, http/protobuf"):
        span_exporters()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER='zipkin'"):
        span_exporters()


def test_the_resource_names_the_service_and_its_version_and_the_variables_win(monkeypatch):
    from okta_bridge.telemetry import package_version, service_resource

    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=prod")
    attributes = service_resource("translator").attributes
    assert attributes["service.name"] == "translator" and attributes["service.version"] == package_version() != ""
    assert attributes["deployment.environment.name"] == "prod"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "translator-eu")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.version=9.9.9")
    attributes = service_resource("translator").attributes
    assert (attributes["service.name"], attributes["service.version"]) == ("translator-eu", "9.9.9")


# ------------------------------------------------------------------ MongoDB spans


def test_database_spans_are_made_only_inside_a_trace_on_the_stable_conventions(spans):
    from types import SimpleNamespace

    from okta_bridge.telemetry import _ChildSpansOnly, _mongo_request

    tracer = _ChildSpansOnly(trace.get_tracer_provider()).get_tracer("pymongo")
    assert tracer.start_span("okta_bridge.update") is trace.INVALID_SPAN  # a lease renewal: no trace of its own
    with tracer.start_as_current_span("okta_bridge.find") as outside:
        assert outside is trace.INVALID_SPAN
    event = SimpleNamespace(command_name="update", command={"update": "links", "updates": [{"q": {"u": "ann"}}]})
    with trace.get_tracer("test").start_as_current_span("plan"):
        span = tracer.start_span("okta_bridge.update", kind=trace.SpanKind.CLIENT)
        _mongo_request(span, event)
        span.end()
    [db] = [s for s in spans.get_finished_spans() if s.name != "plan"]
    assert db.name == "update links" and db.attributes["db.operation.name"] == "update"
    assert "ann" not in str(dict(db.attributes))


def test_a_service_with_a_wrong_otel_setting_stops_with_one_line_naming_it(monkeypatch, capsys):
    from okta_bridge.entry import run_service
    from okta_bridge.telemetry import span_exporters

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")
    monkeypatch.setattr("okta_bridge.entry.quiet_collector", lambda: None)  # not in the test process's collector
    with pytest.raises(SystemExit) as stopped:
        run_service("translator", span_exporters)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "Traceback" not in err
    assert err.strip() == ("translator: cannot start: OTEL_EXPORTER_OTLP_PROTOCOL='thrift': use one of grpc, "
                           "http/protobuf")
