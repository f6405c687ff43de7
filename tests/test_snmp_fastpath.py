"""GETBULK's fast path (one ``read_bulk`` call, the view asked once per column
the view decides as a whole, the varbind list encoded as one block) answers
what pysnmp's own repetition loop answers (``BulkResponder.fast = False``),
for random requests over the wire: any start OIDs (inside, before, between
and after our subtree), non-repeaters, max-repetitions (past the cap and the
end of the MIB view), SNMPv2c and SNMPv3 authPriv, and a v3 user whose VACM
view excludes a whole column, part of a column, a table but one column of
it, a masked family and single instances. Both paths run against the same
agent, one right after the other; only values that change between two
requests by themselves (uptimes, the snmp packet counters, data ages) are
compared by name and type alone."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from attack.snmp import v2c_message
from btms_gateway.plugins.snmp import plugin
from btms_gateway.plugins.snmp.agent import NO_VIEW, READ_SUBTREES, add_user
from btms_gateway.plugins.snmp.settings import UserSettings
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pysnmp.entity import config
from pysnmp.hlapi.v3arch.asyncio import (
    USM_AUTH_HMAC192_SHA256,
    USM_PRIV_CFB128_AES,
    UsmUserData,
)
from snmp_rig import (
    BASE,
    OIDS,
    AgentThread,
    Answer,
    V3Client,
    comparable,
    oids,
    publish_plant,
    rig_config,
    v2c_exchange,
)
from snmp_support import AUTH_KEY, COMMUNITY, PRIV_KEY, USER

pytestmark = pytest.mark.peer

LIMITED, UNGROUPED = "limited", "ungrouped"
# btmsCellSoc.3.* with arc 1 wildcarded (mask 10111111 11111111): pysnmp's VACM
# raises IndexError for any OID no longer than a wildcarded arc, and its tree
# walk checks short OIDs, so the wildcard must sit near the root
MASKED_SOC_S3 = (BASE[0], 0, *BASE[2:], 1, 4, 1, 6, 3)


def limited_view(engine: Any) -> None:
    """A v3 user that sees our subtree minus parts of it, and a user with no group."""
    for name in (LIMITED, UNGROUPED):
        add_user(engine, UserSettings(name=name, auth_key=AUTH_KEY, priv_key=PRIV_KEY))
    config.add_vacm_group(engine, "btms-limited", 3, LIMITED)
    view = "btms-limited"
    config.add_vacm_access(
        engine, "btms-limited", "", 3, "authPriv", "exact", view, NO_VIEW, NO_VIEW
    )
    for sub in (*READ_SUBTREES, BASE):
        config.add_vacm_view(engine, view, "included", sub, "")
    for sub, kind in (
        (OIDS["btmsCellVoltage"], "excluded"),  # a whole column
        ((*OIDS["btmsCellTemperature"], 3), "excluded"),  # one string's part of a column
        ((*BASE, 1, 3), "excluded"),  # the string table...
        (OIDS["btmsStringSoc"], "included"),  # ...but for one column
        ((*OIDS["btmsGwVersion"], 0), "excluded"),  # one scalar
        ((1, 3, 6, 1, 2, 1, 1, 5), "excluded"),  # sysName, in pysnmp's own tree
    ):
        config.add_vacm_view(engine, view, kind, sub, "")
    config.add_vacm_view(engine, view, "excluded", MASKED_SOC_S3, b"\xbf\xff")


async def setup(h: Any) -> None:
    await publish_plant(h)
    limited_view(plugin.current().agent.engine)


@pytest.fixture(scope="module")
def rig() -> Iterator[Any]:
    cfg = rig_config()
    with AgentThread(cfg, setup) as agent:
        address = plugin.current().agent.bound
        clients = {
            user: V3Client(address, UsmUserData(
                user, AUTH_KEY, PRIV_KEY,
                authProtocol=USM_AUTH_HMAC192_SHA256, privProtocol=USM_PRIV_CFB128_AES,
            ))
            for user in (USER, LIMITED, UNGROUPED)
        }  # fmt: skip
        agent.clients = clients
        yield agent
        agent.call(lambda: _close(clients))


async def _close(clients: dict[str, V3Client]) -> None:
    for c in clients.values():
        c.close()


def ask(rig: Any, who: str, oids: list[tuple[int, ...]], n: int, m: int, fast: bool) -> Answer:
    snmp = plugin.current()
    snmp.agent.bulk.fast = fast  # read by the loop thread at the next request
    if who == "v2c":
        datagram = v2c_message(COMMUNITY, "bulk", oids, n, m)
        return v2c_exchange(snmp.agent.bound, datagram)  # type: ignore[arg-type]
    client = rig.clients[who]
    return rig.call(lambda: client.bulk(oids, n, m))  # type: ignore[no-any-return]


def both(rig: Any, who: str, oids: list[tuple[int, ...]], n: int, m: int) -> Answer:
    """The fast answer, after checking it against pysnmp's loop's answer."""
    reference = ask(rig, who, oids, n, m, fast=False)
    answer = ask(rig, who, oids, n, m, fast=True)
    assert comparable(answer) == comparable(reference)
    return answer


WHO = st.sampled_from(["v2c", USER, LIMITED])


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(who=WHO, start=st.lists(oids(), min_size=1, max_size=4),
       n=st.integers(0, 5), m=st.sampled_from([0, 1, 2, 7, 50, 80, 120]))  # fmt: skip
@pytest.mark.slow  # ~4 s on a shared 2-core box
def test_fast_getbulk_answers_what_pysnmps_loop_answers(
    rig: Any, who: str, start: list[tuple[int, ...]], n: int, m: int
) -> None:
    assume(n or m)  # nothing to answer: see test_a_getbulk_with_nothing_to_answer_is_dropped
    before = plugin.current().agent.bulk.fallbacks
    indication, _status, _index, _varbinds = both(rig, who, start, n, m)
    assert indication is None
    assert plugin.current().agent.bulk.fallbacks == before  # the fast path answered


def test_a_walk_of_the_limited_user_leaves_out_its_excluded_parts(rig: Any) -> None:
    seen: list[tuple[int, ...]] = []
    oid = BASE
    while oid[: len(BASE)] <= BASE:
        _i, _s, _x, varbinds = both(rig, LIMITED, [oid], 0, 40)
        seen += [name for name, _k, _b in varbinds if name[: len(BASE)] == BASE]
        oid = varbinds[-1][0]
    assert seen == sorted(seen) and len(seen) > 100

    def has(prefix: tuple[int, ...]) -> bool:
        return any(o[: len(prefix)] == prefix for o in seen)

    assert not has(OIDS["btmsCellVoltage"]) and not has((*OIDS["btmsCellTemperature"], 3))
    assert has((*OIDS["btmsCellTemperature"], 1)) and has(OIDS["btmsCellResistance"])
    assert not has(OIDS["btmsStringName"]) and has((*OIDS["btmsStringSoc"], 1))
    assert not has((*OIDS["btmsCellSoc"], 3)) and has((*OIDS["btmsCellSoc"], 4))
    assert not has(OIDS["btmsGwVersion"]) and has(OIDS["btmsGwName"])
    assert has(OIDS["btmsAlarmId"])


def test_a_requester_without_access_gets_pysnmps_own_error(rig: Any) -> None:
    """A USM user with no VACM group: refused by the access function, which the
    fast path hands back to pysnmp's loop so the error is pysnmp's."""
    bulk = plugin.current().agent.bulk
    before = bulk.fallbacks
    _indication, status, index, _varbinds = both(
        rig, UNGROUPED, [(*BASE, 1, 4), (1, 3, 6, 1, 2, 1, 1)], 1, 10
    )
    assert status == 16 and index >= 1  # authorizationError
    assert bulk.fallbacks == before + 1
