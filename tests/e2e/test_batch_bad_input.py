"""Bad input to a batch, on one running stack (real broker, real database, the services as processes):

* an Okta filter answer that leaves an id out, repeats one, or adds one nobody asked for: the missing user is read
  by id (never deactivated on absence alone), the repeat and the extra change nothing;
* a batched read whose URL Okta refuses (414): split in halves until it passes, every user still planned;
* one malformed message among good ones: it alone is dead-lettered, with its reason, and the others are applied;
* several events of one user in one batch: one plan, and each event keeps its own audit records;
* a filtered listing whose answer arrives late, after a ``user.*`` change of its user was planned by id and applied:
  the stale answer is never planned from, the target keeps the new value;
* SIGTERM to a dispatcher: its partition leases are released at once (not after their TTL) and it exits cleanly
  (the module's last test: it adds a second dispatcher and stops it).

A batch is made deterministic by pausing the translator (SIGSTOP) while the events reach its queue: on SIGCONT it
takes them all at once, in one batch.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import httpx
import pytest
from pymongo import AsyncMongoClient

from demo_scim_target.admin_client import TargetAdmin
from okta_bridge.events import HANDLED_EVENT_TYPES
from okta_bridge.stores.partitions import MongoPartitions, PoolState
from okta_simulator.admin_client import SimulatorAdmin
from tests.conftest import MONGODB_URL, RABBITMQ_URL, _ctl
from tests.e2e.conftest import eventually, jira_connector
from tests.e2e.otlp_receiver import OtlpReceiver
from tests.e2e.scenario import audit_records, dead_letters
from tests.harness.devstack import DevStack, wait_http

pytestmark = pytest.mark.e2e

EDITS = ("drop_first", "repeat_first", "add_unasked")
SPLIT_USERS = 100  # ~3,700 bytes of filter: refused at SPLIT_URL_LIMIT, each half (~1,900) passes
SPLIT_URL_LIMIT = 2000  # above the poller's System Log links (~1,100 bytes and their `next` links)
ADD = "application.user_membership.add"
HANDLED = frozenset(HANDLED_EVENT_TYPES)
BY_ID = "okta GET /api/v1/users/{id}"  # the Okta client's span of a user read by id


@dataclass
class Bed:
    stack: DevStack
    okta: SimulatorAdmin
    target: TargetAdmin
    http: httpx.AsyncClient
    spans: OtlpReceiver  # every service's spans
    app_id: str
    groups: dict[str, list[str]] = field(default_factory=dict)  # what a test uses -> its Okta user ids
    logins: dict[str, str] = field(default_factory=dict)  # Okta user id -> login
    first_names: dict[str, str] = field(default_factory=dict)  # Okta user id -> profile.firstName


# --- one stack for the module -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def module_rabbit_url():
    vhost = f"test-{uuid.uuid4().hex[:10]}"
    parts = urlsplit(RABBITMQ_URL)
    _ctl("add_vhost", vhost)
    _ctl("set_permissions", "-p", vhost, parts.username or "guest", ".*", ".*", ".*")
    yield urlunsplit((parts.scheme, parts.netloc, "/" + vhost, "", ""))
    _ctl("delete_vhost", vhost)


@pytest.fixture(scope="module")
def module_mongo_db():
    name = f"test_{uuid.uuid4().hex[:10]}"
    yield name
    from pymongo import MongoClient

    with MongoClient(MONGODB_URL, serverSelectionTimeoutMS=5000) as client:
        client.drop_database(name)


@pytest.fixture(scope="module")
async def bed(tmp_path_factory, module_rabbit_url, module_mongo_db):
    rx = OtlpReceiver().start()
    stack = DevStack(tmp_path_factory.mktemp("batch-bad-input") / "stack", rabbitmq_url=module_rabbit_url,
                     mongodb_db=module_mongo_db,
                     extra_env={"POLLER_IDLE_INTERVAL_S": "0.5", "POLLER_MIN_INTERVAL_S": "0.2",
                                "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"})
    try:
        stack.start_fixtures()
        async with SimulatorAdmin(stack.okta_url) as okta, TargetAdmin(stack.target_url) as target, \
                httpx.AsyncClient(base_url=stack.okta_url, timeout=10,
                                  headers={"Authorization": f"SSWS {stack.token}"}) as http:
            app_id = await okta.create_app("Jira", "jira")
            sizes = {**{e: 3 for e in EDITS}, "split": SPLIT_USERS, "poison": 2, "coalesce": 1, "stale": 1}
            profiles, owners = [], []
            for name, size in sizes.items():
                for n in range(size):
                    login = f"{name.replace('_', '')}{n}.user@example.com"
                    profiles.append({"login": login, "email": login, "firstName": f"F{name.replace('_', '')}{n}",
                                     "lastName": f"L{n}"})
                    owners.append(name)
            ids = await okta.create_users(profiles)
            b = Bed(stack, okta, target, http, rx, app_id)
            for uid, owner, profile in zip(ids, owners, profiles):
                b.groups.setdefault(owner, []).append(uid)
                b.logins[uid] = profile["login"]
                b.first_names[uid] = profile["firstName"]
            # the poller starts reading the System Log after these users were made: their creation is not news
            await asyncio.sleep(0.05)
            stack.extra_env["POLLER_START_FROM"] = datetime.now(UTC).isoformat()
            stack.write_connectors([jira_connector(stack, app_id)])
            stack.start_services()
            for name in ("translator", "scim_dispatcher", "queue_poller"):
                wait_http(stack.metrics_url(name, "/readyz"), 60, stack.processes[name].proc)

            async def started():  # the poller's first-start syncs are done: nothing else plans meanwhile
                text = stack.processes["translator"].output()
                return "full sync of" in text and "group sync of" in text
            await eventually(started, 60, "the initial full sync and the startup group sync")
            yield b
    finally:
        stack.stop()
        rx.stop()


@pytest.fixture(autouse=True)
def _logs_on_failure(request, bed):
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(bed.stack.logs())


# --- helpers ------------------------------------------------------------------------------------------------------
@asynccontextmanager
async def translator_paused(stack: DevStack):
    """What reaches ``translator.work`` meanwhile waits; on resume the translator takes it in one batch."""
    process = stack.processes["translator"]
    process.signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.signal(signal.SIGCONT)


async def events_since(okta: SimulatorAdmin, mark: int) -> list[dict]:
    """The System Log events the bridge reads, written after ``mark`` events."""
    return [e for e in (await okta.events())[mark:] if e.get("eventType") in HANDLED]


async def received(stack: DevStack, uuids: list[str]) -> None:
    """Waits until the poller has published each event (its ``received`` audit record)."""
    missing: set[str] = set(uuids)

    async def all_in():
        missing.difference_update(r["event_uuid"] for r in await audit_records(stack, status="received"))
        return not missing
    try:
        await eventually(all_in, 30, f"the poller publishing {len(uuids)} event(s)")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; not published: {sorted(missing)}") from None


async def records_of(stack: DevStack, uuids: list[str], step: str) -> dict[str, list[dict]]:
    wanted = set(uuids)
    out: dict[str, list[dict]] = {u: [] for u in uuids}
    for r in await audit_records(stack, status=step):
        if r.get("event_uuid") in wanted:
            out[r["event_uuid"]].append(r)
    return out


async def planned(stack: DevStack, uuids: list[str]) -> dict[str, list[dict]]:
    """Each event's ``planned`` records, once every event has one."""
    async def check():
        got = await records_of(stack, uuids, "planned")
        return got if all(got.values()) else None
    return await eventually(check, 60, f"a planned record for each of {len(uuids)} event(s)")


async def dispatched(stack: DevStack, user_versions: dict[str, int]) -> dict[str, list[dict]]:
    """The dispatcher's records of each (user, plan version), once each has one."""
    async def check():
        out = {}
        for uid, version in user_versions.items():
            out[uid] = [r for r in await audit_records(stack, user=uid) if r["service"] == "scim-dispatcher"
                        and r.get("plan_version") == version and r["step"] in ("applied", "skipped")]
        return out if all(out.values()) else None
    return await eventually(check, 60, "the dispatcher applying every plan")


async def accounts(target: TargetAdmin) -> dict[str, list[dict]]:
    """Target accounts by externalId (the Okta user id)."""
    out: dict[str, list[dict]] = {}
    for u in await target.users():
        out.setdefault(u.get("externalId"), []).append(u)
    return out


async def all_active(b: Bed, ids: list[str], user_names: dict[str, str] | None = None) -> dict[str, dict]:
    """Waits until each user has exactly one active account (with ``user_names``' userName when given)."""
    async def check():
        have = await accounts(b.target)
        ok = all(len(have.get(u, [])) == 1 and have[u][0].get("active") is True
                 and (user_names is None or have[u][0].get("userName") == user_names[u]) for u in ids)
        return {u: have[u][0] for u in ids} if ok else None
    return await eventually(check, 60, f"{len(ids)} user(s) active in the target")


async def okta_calls(okta: SimulatorAdmin) -> tuple[dict[str, int], dict]:
    stats = await okta.stats()
    return dict(stats["callsByBucket"]), stats["faults"]


def delta(after: dict[str, int], before: dict[str, int], bucket: str) -> int:
    return after.get(bucket, 0) - before.get(bucket, 0)


async def list_all_users(http: httpx.AsyncClient) -> list[dict]:
    users, url, params = [], "/api/v1/users", {"limit": 200}
    while url:
        response = await http.get(url, params=params)
        response.raise_for_status()
        users += response.json()
        url, params = response.links.get("next", {}).get("url"), None
    return users


def assert_own_data(b: Bed, ids: list[str], have: dict[str, dict]) -> None:
    """Each account carries its own user's data: no answer was taken for another user."""
    for uid in ids:
        account = have[uid]
        assert account["userName"] == b.logins[uid], (uid, account)
        assert account["name"]["givenName"] == b.first_names[uid], (uid, account)


# --- (a) an Okta filter answer that misses, repeats or adds ids ---------------------------------------------------
@pytest.mark.parametrize("edit", EDITS)
async def test_filter_answer_missing_repeated_or_unasked_ids(bed: Bed, edit: str):
    b = bed
    ids = b.groups[edit]
    asked_first = min(ids)  # the answer is in id order: drop_first / repeat_first touch this one
    everyone = sorted(u["id"] for u in await list_all_users(b.http))
    unasked = next(u for u in everyone if u not in ids)  # add_unasked's extra user (the first by id not asked)
    unasked_records = len(await audit_records(b.stack, user=unasked))
    unasked_accounts = (await accounts(b.target)).get(unasked, [])

    async def one_batch(make_events) -> dict:
        """The events ``make_events`` writes, planned in one batch whose filtered listing gets ``edit``; returns
        the Okta calls the batch made, per bucket."""
        before, faults = await okta_calls(b.okta)
        await b.okta.inject("users", None, count=1, path_regex=r"^/api/v1/users/?$", edit=edit)
        async with translator_paused(b.stack):
            mark = len(await b.okta.events())
            await make_events()
            uuids = [e["uuid"] for e in await events_since(b.okta, mark)]
            assert len(uuids) == len(ids), uuids
            await received(b.stack, uuids)
            resumed_ns = time.time_ns()
        records = await planned(b.stack, uuids)
        after, faults_after = await okta_calls(b.okta)
        assert faults_after["pending"] == 0 and faults_after["used"] == faults["used"] + 1, faults_after
        calls = {bucket: delta(after, before, bucket) for bucket in ("users", "user")}
        # one planned record per event: a repeated user is planned once, an extra one not at all
        for uuid_, rs in records.items():
            assert len(rs) == 1, (uuid_, rs)
            assert rs[0]["okta_user_id"] in ids and not rs[0]["detail"].startswith("deactivate"), rs[0]
        assert {rs[0]["okta_user_id"] for rs in records.values()} == set(ids)
        await dispatched(b.stack, {rs[0]["okta_user_id"]: rs[0]["plan_version"] for rs in records.values()})
        if calls["user"]:  # who was read by id: the translator's client spans name the user in url.full
            async def by_id_reads():
                got = [s.attributes.get("url.full", "").rsplit("/", 1)[-1] for s in b.spans.spans()
                       if s.service == "translator" and s.name == BY_ID and s.start_ns >= resumed_ns]
                return got if len(got) >= calls["user"] else None
            calls["read_by_id"] = await eventually(by_id_reads, 30, "the by-id reads exported")
        return calls

    # new assignments: every user created, each with its own data
    calls = await one_batch(lambda: b.okta.assign_users(b.app_id, ids))
    assert calls["users"] == 1, calls  # one filtered listing for the batch
    # only the user the answer left out is read by id (a repeat or an extra needs no read)
    assert calls["user"] == (1 if edit == "drop_first" else 0), calls
    assert calls.get("read_by_id", []) == ([asked_first] if edit == "drop_first" else []), calls
    assert_own_data(b, ids, await all_active(b, ids))

    # existing accounts, looked at again (application.user_membership.restore): absence from the answer alone
    # deactivates nothing
    async def restore_all():
        for uid in ids:
            await b.okta.restore_assignment(b.app_id, uid)
    calls = await one_batch(restore_all)
    assert calls["users"] == 1 and calls["user"] == (1 if edit == "drop_first" else 0), calls
    assert calls.get("read_by_id", []) == ([asked_first] if edit == "drop_first" else []), calls
    have = await accounts(b.target)
    for uid in ids:
        assert len(have[uid]) == 1 and have[uid][0]["active"] is True, (uid, have.get(uid))
    assert_own_data(b, ids, {u: have[u][0] for u in ids})
    assert have[asked_first][0]["active"] is True
    # the extra user was not planned: no audit record and no account change for it
    assert len(await audit_records(b.stack, user=unasked)) == unasked_records
    assert (await accounts(b.target)).get(unasked, []) == unasked_accounts


# --- (b) a batched read split on 414 ------------------------------------------------------------------------------
BATCH_READ = "okta read users (batch)"  # the translator's span around one batch's filtered listings
LISTING = "okta GET /api/v1/users"  # the Okta client's span of one request


async def test_batched_read_refused_as_too_long_is_split_and_plans_every_user(bed: Bed):
    b = bed
    ids = b.groups["split"]
    original = (await b.okta.limits())["maxUrlBytes"]
    await b.okta.set_max_url_bytes(SPLIT_URL_LIMIT)
    try:
        # what the translator asks for whole is refused; each half passes
        whole = " or ".join(f'id eq "{u}"' for u in sorted(ids))
        half = " or ".join(f'id eq "{u}"' for u in sorted(ids)[:SPLIT_USERS // 2])
        assert (await b.http.get("/api/v1/users", params={"filter": whole, "limit": 200})).status_code == 414
        assert (await b.http.get("/api/v1/users", params={"filter": half, "limit": 200})).status_code == 200

        before, _ = await okta_calls(b.okta)
        async with translator_paused(b.stack):
            mark = len(await b.okta.events())
            await b.okta.assign_users(b.app_id, ids)
            uuids = [e["uuid"] for e in await events_since(b.okta, mark)]
            assert len(uuids) == SPLIT_USERS
            await received(b.stack, uuids)
            resumed_ns = time.time_ns()
        records = await planned(b.stack, uuids)
        have = await all_active(b, ids)
        after, _ = await okta_calls(b.okta)
    finally:
        await b.okta.set_max_url_bytes(original)
    assert_own_data(b, ids, have)
    assert all(len(rs) == 1 and not rs[0]["detail"].startswith("deactivate") for rs in records.values())
    # every user came from the filtered listings: none was read by id
    assert delta(after, before, "user") == 0, (before, after)

    # the translator's batched reads since it resumed, each with the listings it sent (Okta's answer on each)
    async def batch_reads():
        spans = b.spans.spans()
        reads = [s for s in spans if s.service == "translator" and s.name == BATCH_READ and s.start_ns >= resumed_ns]
        if sum(s.attributes.get("okta.users", 0) for s in reads) < SPLIT_USERS:
            return None
        return [(r, sorted((c for c in spans if c.parent_span_id == r.span_id and c.name == LISTING),
                           key=lambda c: c.start_ns)) for r in reads]
    reads = await eventually(batch_reads, 30, "the translator's batched reads exported")
    assert sum(r.attributes["okta.users"] for r, _ in reads) == SPLIT_USERS, reads
    statuses = [[c.attributes.get("http.response.status_code") for c in calls] for _, calls in reads]
    split = [s for s in statuses if 414 in s]
    # one listing of the batch was refused (414) and the batch was split: the first request refused, then at least
    # two smaller ones answered
    assert split and all(s[0] == 414 and s.count(200) >= 2 for s in split), statuses
    assert all(code in (200, 414) for s in statuses for code in s), statuses
    # Okta counted only the listings it answered (a 414 comes before the rate limit), one per 200 the client saw
    assert delta(after, before, "users") == sum(s.count(200) for s in statuses), (statuses, before, after)


# --- (c) one poison message among good ones -----------------------------------------------------------------------
def membership_add(b: Bed, user_id: str, event_uuid: str) -> dict:
    return {"schema_version": 1, "org": b.stack.okta_url, "event_uuid": event_uuid, "event_type": ADD,
            "published": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "targets": [{"id": user_id, "type": "User", "alternate_id": b.logins[user_id]},
                        {"id": b.app_id, "type": "AppInstance"},
                        {"id": "0ua" + uuid.uuid4().hex[:17], "type": "AppUser", "alternate_id": b.logins[user_id]}]}


async def test_one_poison_message_is_dead_lettered_alone_and_the_others_are_applied(bed: Bed):
    b = bed
    good_ids = b.groups["poison"]
    good = [membership_add(b, uid, f"good-{uuid.uuid4()}") for uid in good_ids]
    poison_uuid = f"poison-{uuid.uuid4()}"
    poison = {**membership_add(b, good_ids[0], poison_uuid), "published": "not a time"}
    letters_before = len(await dead_letters(b.stack))

    connection = await aio_pika.connect(b.stack.rabbitmq_url)
    async with connection, translator_paused(b.stack):
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("bridge.events")
        for body in (good[0], poison, good[1]):  # the poison between the good ones, in one delivery burst
            await exchange.publish(aio_pika.Message(json.dumps(body).encode(), content_type="application/json",
                                                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                                   routing_key=f"okta.event.{ADD}", mandatory=True)

    # the good ones: planned and applied
    good_uuids = [g["event_uuid"] for g in good]
    records = await planned(b.stack, good_uuids)
    assert_own_data(b, good_ids, await all_active(b, good_ids))
    assert {rs[0]["okta_user_id"] for rs in records.values()} == set(good_ids)
    for step in ("retried", "dead_lettered", "failed"):
        assert not any((await records_of(b.stack, good_uuids, step)).values()), step

    # the poison alone: one dead letter, with its reason
    async def its_letter():
        letters = await dead_letters(b.stack)
        return letters if len(letters) > letters_before else None
    letters = await eventually(its_letter, 30, "the poison message dead-lettered")
    assert len(letters) == letters_before + 1, letters
    headers, body = letters[-1]
    record = json.loads(body)
    assert record["event_uuid"] == poison_uuid and record["kind"] == "unreadable", record
    reason = str(headers.get("x-bridge-reason"))
    assert reason.startswith("translator: invalid message") and "published" in reason, reason
    assert "not a time" not in reason  # the reason names the field, never the value

    async def audited():
        return [r for r in await audit_records(b.stack, status="dead_lettered")
                if r["service"] == "translator" and r.get("reason") == "invalid_message"]
    dead = await eventually(audited, 30, "the dead letter audited")
    assert len(dead) == 1 and "published" in dead[0]["detail"], dead


# --- (d) several events of one user in one batch ------------------------------------------------------------------
async def test_coalesced_events_make_one_plan_and_keep_their_own_audit_records(bed: Bed):
    b = bed
    uid = b.groups["coalesce"][0]

    async def one_batch(make_events, types: list[str], user_name: str, given_name: str) -> list[dict]:
        """The events ``make_events`` writes, in one batch: each keeps its own records and they make one plan,
        applied as one write to the target (returned)."""
        seq = await b.target.last_seq()
        async with translator_paused(b.stack):
            mark = len(await b.okta.events())
            await make_events()
            events = await events_since(b.okta, mark)
            assert [e["eventType"] for e in events] == types, events
            uuids = [e["uuid"] for e in events]
            await received(b.stack, uuids)
        records = await planned(b.stack, uuids)
        have = await all_active(b, [uid], {uid: user_name})
        assert have[uid]["name"]["givenName"] == given_name  # the one plan holds what every event changed
        # each event keeps its own records: one received, one planned; the planned ones are of one plan
        got = await records_of(b.stack, uuids, "received")
        assert all(len(got[u]) == 1 and got[u][0]["okta_user_id"] == uid for u in uuids), got
        assert all(len(records[u]) == 1 and records[u][0]["okta_user_id"] == uid for u in uuids), records
        assert {records[u][0]["event_type"] for u in uuids} == set(types), records
        versions = {records[u][0]["plan_version"] for u in uuids}
        assert len(versions) == 1, records
        version = versions.pop()
        assert len((await dispatched(b.stack, {uid: version}))[uid]) == 1
        # the dispatcher got that one plan, not one per event
        plans = {r["plan_version"] for r in await audit_records(b.stack, user=uid) if r["service"] == "scim-dispatcher"
                 and r["event_uuid"] in uuids}
        assert plans == {version}, plans
        writes = [r for r in await b.target.requests(since=seq) if r["method"] in ("POST", "PUT", "PATCH", "DELETE")
                  and "/Users" in r["path"]]
        assert len(writes) == 1, writes
        return writes

    # a new assignment and its username change: one create, with the new username
    async def assign_and_rename():
        await b.okta.assign_user(b.app_id, uid)
        await b.okta.change_app_username(b.app_id, uid, "renamed.coalesce@example.com")
    writes = await one_batch(assign_and_rename, [ADD, "application.user_membership.change_username"],
                             "renamed.coalesce@example.com", b.first_names[uid])
    assert writes[0]["method"] == "POST" and writes[0]["body"]["userName"] == "renamed.coalesce@example.com", writes

    # the assigned user: a profile change (read by id), a username change and a restore, one update
    async def change_three_ways():
        await b.okta.update_profile(uid, {"firstName": "Coalesced"})
        await b.okta.change_app_username(b.app_id, uid, "again.coalesce@example.com")
        await b.okta.restore_assignment(b.app_id, uid)
    writes = await one_batch(change_three_ways, ["user.account.update_profile",
                                                 "application.user_membership.change_username",
                                                 "application.user_membership.restore"],
                             "again.coalesce@example.com", "Coalesced")
    assert writes[0]["method"] in ("PUT", "PATCH") and writes[0]["status"] < 300, writes


# --- (e) a user.* change while a batched read's answer is late, and stale when it arrives --------------------------
LATE_S = 8  # the filtered listing's answer (computed when asked) is held back this long


async def test_a_late_stale_listing_never_overwrites_a_newer_profile_change(bed: Bed):
    """A membership event's plan asks Okta for its user in a filtered listing; Okta computes the answer (the old
    firstName) and holds it back. Meanwhile the user's firstName changes: that ``user.*`` event is planned from a read
    by id and applied. Then the old answer arrives: its ``lastUpdated`` is older than what the newer plan was built
    from, so the translator reads the user again and the target keeps the new value. A build that planned from the
    late answer would send the old firstName back, as the newer plan version."""
    b = bed
    uid = b.groups["stale"][0]
    old, new = b.first_names[uid], "Fresher"
    await b.okta.assign_user(b.app_id, uid)
    assert (await all_active(b, [uid]))[uid]["name"]["givenName"] == old
    seq = await b.target.last_seq()

    calls_before, faults = await okta_calls(b.okta)
    mark = len(await b.okta.events())
    await b.okta.inject("users", None, count=1, delay_s=LATE_S, path_regex=r"^/api/v1/users/?$")
    await b.okta.restore_assignment(b.app_id, uid)  # a membership event: its user is read in a filtered listing

    async def answer_computed_and_held():
        return (await b.okta.stats())["faults"]["used"] > faults["used"]
    await eventually(answer_computed_and_held, 30, "the filtered listing's answer computed and held back")
    await b.okta.update_profile(uid, {"firstName": new})  # a user.* event: read by id, never from a listing

    events = await events_since(b.okta, mark)
    assert [e["eventType"] for e in events] == ["application.user_membership.restore",
                                                "user.account.update_profile"], events
    late_uuid, change_uuid = (e["uuid"] for e in events)

    async def given_name(value: str):
        have = (await accounts(b.target)).get(uid, [])
        return len(have) == 1 and have[0]["name"]["givenName"] == value and have[0]
    await eventually(lambda: given_name(new), 60, f"the target at the new firstName {new!r}")

    # the late answer arrives; its event is planned (as the newer version) and dispatched
    records = await planned(b.stack, [late_uuid, change_uuid])
    late_plan, change_plan = records[late_uuid][0], records[change_uuid][0]
    # the scenario happened: the change was planned first, the late answer's event after it
    assert late_plan["plan_version"] > change_plan["plan_version"], (late_plan, change_plan)
    await dispatched(b.stack, {uid: late_plan["plan_version"]})
    assert (await b.okta.stats())["faults"]["pending"] == 0

    # the user.* change read its user by id, in its own trace (it never waited for, nor used, a listing)
    async def read_by_id():
        return [s for s in b.spans.spans() if s.service == "translator" and s.name == BY_ID
                and s.trace_id == change_plan["trace_id"] and s.attributes.get("url.full", "").endswith(f"/{uid}")]
    assert await eventually(read_by_id, 30, "the user.* change's read by id exported")
    # the late answer was not planned from: the target still holds the new value
    account = await given_name(new)
    assert account, (await accounts(b.target)).get(uid)
    # the old firstName was never sent back, not even for a moment: every write to the account since it was created
    # (the change's plan, then the late event's) carries the new one
    writes = [r for r in await b.target.requests(since=seq) if r["method"] in ("PUT", "PATCH", "POST")
              and r["path"].endswith(f"/Users/{account['id']}")]
    assert writes and all(r["method"] == "PUT" and r["body"]["name"]["givenName"] == new for r in writes), writes
    # the user was read again after the late answer (a fresh listing or by id), so the
    # translator asked Okta at least three times (the held-back listing, the change's read by id, the fresh read)
    after, _ = await okta_calls(b.okta)
    calls = {bucket: delta(after, calls_before, bucket) for bucket in ("users", "user")}
    assert calls["users"] >= 1 and calls["user"] >= 1 and sum(calls.values()) >= 3, calls


# --- (f) SIGTERM releases a dispatcher's partitions at once (keep last: it adds and stops a dispatcher) ---------------
def _live(state: PoolState, replica: str) -> list[int]:
    """The partitions whose lease ``replica`` (the name before its ``~suffix``) holds now."""
    return [p for p, x in enumerate(state.leases)
            if x.owner and x.owner.split("~")[0] == replica and x.expires > state.now]


async def test_sigterm_releases_a_dispatchers_partitions_at_once(bed: Bed):
    b = bed
    name = "scim_dispatcher-sigterm"
    client: AsyncMongoClient = AsyncMongoClient(b.stack.mongodb_url)
    store = MongoPartitions(client[b.stack.mongodb_db], b.stack.okta_url)
    second = b.stack.start_service("scim_dispatcher", name)
    try:
        await asyncio.to_thread(wait_http, b.stack.metrics_url(name, "/readyz"), 60, second.proc)

        async def lease_ttl():  # its start-up line: "... partition leases of 45 s"
            found = re.search(r"partition leases of ([0-9.]+) s", second.output())
            return found and float(found.group(1))
        ttl = await eventually(lease_ttl, 30, "the dispatcher's start-up line")

        async def shared():  # the two dispatchers share the pool: each holds its half
            state = await store.read("default")
            theirs, first = _live(state, name), _live(state, "scim_dispatcher")
            ok = len(theirs) == state.count // 2 and len(first) == state.count - len(theirs)
            return (state, theirs) if ok else None
        state, held = await eventually(shared, 60, "the second dispatcher holding its half of the partitions")
        owner = state.leases[held[0]].owner
        assert owner in state.members and all(state.leases[p].owner == owner for p in held), state
        # untouched, each lease would last longer than half the TTL from now (renewed every few seconds)
        assert all((state.leases[p].expires - state.now).total_seconds() > ttl / 2 for p in held), (state, ttl)

        signalled = time.monotonic()
        second.signal(signal.SIGTERM)

        async def released():
            state = await store.read("default")
            return state if not any(state.leases[p].owner == owner and state.leases[p].expires > state.now
                                    for p in held) else None
        # released by the leaving owner: no one else could take a lease of a live owner before it expires
        state = await eventually(released, ttl, f"partitions {held} released")
        elapsed = time.monotonic() - signalled
        assert elapsed < ttl / 2, (elapsed, ttl)
        assert owner not in state.members or state.members[owner] <= state.now, state.members  # it left the pool
        code = await asyncio.to_thread(second.proc.wait, 30)
        output = second.output()
        assert code == 0, output[-4000:]
        assert "Traceback" not in output, output[-4000:]
        assert re.search(r"released [0-9,]+; 0 partition\(s\) held", output), output[-4000:]

        async def first_holds_all():  # the remaining dispatcher takes them over at its next renewal
            state = await store.read("default")
            return len(_live(state, "scim_dispatcher")) == state.count
        await eventually(first_holds_all, 30, "the first dispatcher holding every partition again")
    finally:
        second.stop()
        await client.close()

