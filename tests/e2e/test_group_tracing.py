"""A group membership change is one trace, like a user change: poller root -> translator -> plan -> dispatcher ->
the group's SCIM PATCH, with the audit records naming that trace (their batch messages link to it) and no user name
or group name in any span."""

from __future__ import annotations

import asyncio
import time

import pytest

from demo_scim_target.admin_client import TargetAdmin
from okta_simulator.admin_client import SimulatorAdmin
from tests.e2e.conftest import eventually, jira_connector
from tests.e2e.otlp_receiver import OtlpReceiver
from tests.e2e.scenario import audit_records
from tests.e2e.test_tracing import Trace

pytestmark = pytest.mark.e2e

JOIN = "group.user_membership.add"


async def test_a_group_join_is_one_trace_down_to_the_scim_patch(stack):
    with OtlpReceiver() as rx:
        stack.extra_env = {**stack.extra_env, "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint,
                           "OTEL_BSP_SCHEDULE_DELAY": "200"}
        stack.start_fixtures()
        async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target:
            app_id = await okta.create_app("Jira", "jira")
            login = "grace.hopper@example.com"
            user = await okta.create_user({"login": login, "email": login, "firstName": "Grace", "lastName": "Hopper"})
            await okta.assign_user(app_id, user)
            group = await okta.create_group("Secret Project X")
            stack.write_connectors([jira_connector(stack, app_id, "v2", push_groups=["Secret Project X"])])
            stack.start_services()

            async def group_exists():
                return [g for g in await target.groups() if g.get("displayName") == "Secret Project X"]
            await eventually(group_exists, 60, "the pushed group created")
            await eventually(lambda: _active(target, login), 60, "the user provisioned")
            # the poller's first read goes a minute back, so the group's create event pushes it a second time; a
            # push that lands after the join would bring the member in itself (and the join's plan would find it
            # applied): the join waits until that push is done
            created = next(e["uuid"] for e in await okta.events() if e["eventType"] == "group.lifecycle.create")

            async def pushed_again():
                return [r for r in await audit_records(stack, event=created)
                        if r.get("service") == "scim-dispatcher" and r["step"] in ("applied", "skipped_stale")]
            await eventually(pushed_again, 60, "the create event's push applied")
            await okta.add_group_member(group, user)

            async def joined():
                found = await group_exists()
                return found and [m for m in found[0].get("members") or []]
            await eventually(joined, 60, "the member added")
            uuid = next(e["uuid"] for e in await okta.events() if e["eventType"] == JOIN)

            async def applied():
                return [r for r in await audit_records(stack, event=uuid) if r["step"] == "applied"]
            (record,) = await eventually(applied, 60, "the join applied and audited")

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the exporters flush every 200 ms
            tr = Trace(record["trace_id"], rx.spans())
            linked = {ln.trace_id for x in rx.spans() if x.name == "bridge.audit publish" for ln in x.links}
            if tr.where(service="scim-dispatcher", kind="CLIENT", prefix="SCIM PATCH") \
                    and record["trace_id"] in linked:
                break
            await asyncio.sleep(0.3)
    spans = rx.spans()
    tr = Trace(record["trace_id"], spans)
    root = next(s for s in tr.spans if s.parent_span_id is None)
    assert root.service == "queue-poller" and root.name == f"okta event {JOIN}", tr.dump()
    consume_t = tr.where(service="translator", kind="CONSUMER")
    consume_d = tr.where(service="scim-dispatcher", kind="CONSUMER")
    assert consume_t and consume_d, tr.dump()
    apply = tr.where(service="scim-dispatcher", name="apply group members")
    assert len(apply) == 1 and tr.descends(apply[0], consume_d[0], {"scim-dispatcher"}), tr.dump()
    assert apply[0].attributes.get("okta.group.id") == group
    patches = tr.where(service="scim-dispatcher", kind="CLIENT", prefix="SCIM PATCH")
    assert patches and all(tr.descends(p, apply[0], {"scim-dispatcher"}) for p in patches), tr.dump()
    assert {r["trace_id"] for r in await audit_records(stack, event=uuid)} == {record["trace_id"]}
    publishers = {x.service for x in spans if x.name == "bridge.audit publish"
                  for ln in x.links if ln.trace_id == record["trace_id"]}
    assert {"queue-poller", "translator", "scim-dispatcher"} <= publishers  # each service's audit batch links to it
    leaks = [(s.service, s.name) for s in spans
             if any(secret in " ".join([s.name, *map(str, s.attributes.values())]).lower()
                    for secret in (login, "secret project x", stack.target_token.lower()))]
    assert not leaks, f"user or group names in spans: {leaks[:5]}"


async def _active(target: TargetAdmin, login: str) -> bool:
    return any(u["userName"].lower() == login and u.get("active") for u in await target.users())
