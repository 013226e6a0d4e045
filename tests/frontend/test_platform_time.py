"""Times the customer reads are platform time (platform.yaml `timezone`, which the daemon names
in its login answer), never the front-end host's zone: a report's Submit_time and Done_time,
the time fields of Msg_Id, and the day a CMPP_QUERY counts. The front-ends here run with
TZ=UTC, eight (or nine) hours from the platform's zone, so that the zone really matters."""
import re
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.cmpp import Query, unpack_msg_id
from gateway.frontend.server import FrontEnd
from policy.settings import Settings
from tests.frontend.cmpp_client import (
    DEMO_ACCOUNT, DEMO_SECRET, DEMO_SIGNATURE, CmppClient, fresh_number, fresh_timestamp, run,
)
from tests.frontend.conftest import GatewayProc
from tests.support.procs import DaemonProc, copy_rules

TEXT = DEMO_SIGNATURE + "平台时间测试"
BLACKLISTED = "13900000001"   # MA:0001: a report at once
SHANGHAI, TOKYO = ZoneInfo("Asia/Shanghai"), ZoneInfo("Asia/Tokyo")
HOST_UTC = {"TZ": "UTC"}


@pytest.fixture(scope="module")
def utc_gateway(daemon, tmp_path_factory):
    """A front-end whose host zone is UTC, on the session's daemon (rules in Asia/Shanghai)."""
    g = GatewayProc(tmp_path_factory.mktemp("utc-gateway"), daemon.target, HOST_UTC)
    yield g
    g.stop()


@pytest.fixture(scope="module")
def tokyo(tmp_path_factory):
    """A daemon whose rules say Asia/Tokyo, and a front-end (host zone UTC) on it."""
    work = tmp_path_factory.mktemp("tokyo")
    rules = copy_rules(work)
    platform = rules / "platform.yaml"
    text = platform.read_text()
    assert "timezone: Asia/Shanghai" in text
    platform.write_text(text.replace("timezone: Asia/Shanghai", "timezone: Asia/Tokyo"))
    d = DaemonProc(work / "daemon", rules_dir=rules)
    g = GatewayProc(work / "gateway", d.target, HOST_UTC)
    yield g
    g.stop()
    d.stop()


def hours(zone, started, ended):
    """The platform-time hours a moment between `started` and `ended` can be in."""
    return {datetime.fromtimestamp(t, zone).strftime("%y%m%d%H") for t in (started, ended)}


async def blacklisted_report(port, zone):
    client = await CmppClient.open(port)
    resp = await client.login(DEMO_ACCOUNT, DEMO_SECRET, timestamp=fresh_timestamp(DEMO_ACCOUNT, zone))
    assert resp.status == 0, resp
    sent = await client.send_text(TEXT, (BLACKLISTED,))
    assert sent.result == 0, sent
    report = await client.report(sent.msg_id)
    await client.close()
    return sent, report


def msg_id_hour(msg_id: int, year: int) -> str:
    f = unpack_msg_id(msg_id)
    return f"{year % 100:02d}{f.month:02d}{f.day:02d}{f.hour:02d}"


@pytest.mark.parametrize("which", ["shanghai", "tokyo"])
def test_report_times_and_msg_id_are_platform_time(which, request):
    zone = SHANGHAI if which == "shanghai" else TOKYO
    g = request.getfixturevalue("utc_gateway" if which == "shanghai" else "tokyo")
    started = time.time()
    sent, report = run(blacklisted_report(g.port, zone))
    ended = time.time()
    expected = hours(zone, started, ended)
    assert report.stat == "MA:0001"
    assert re.fullmatch(r"\d{10}", report.submit_time) and re.fullmatch(r"\d{10}", report.done_time)
    assert report.submit_time[:8] in expected, (report.submit_time, expected)
    assert report.done_time[:8] in expected, (report.done_time, expected)
    assert msg_id_hour(sent.msg_id, datetime.now(zone).year) in expected, (
        unpack_msg_id(sent.msg_id), expected)


def test_query_counts_the_platform_day(tokyo):
    """QUERY's Time is a platform day: today in Tokyo counts this message, whatever the
    front-end host's date."""
    service = f"t{time.time_ns() % 10**9:09d}"
    async def go():
        client = await CmppClient.open(tokyo.port)
        resp = await client.login(DEMO_ACCOUNT, DEMO_SECRET,
                                  timestamp=fresh_timestamp(DEMO_ACCOUNT, TOKYO))
        assert resp.status == 0, resp
        sent = await client.send_text(TEXT, (fresh_number(),), service_id=service)
        day = datetime.now(TOKYO).strftime("%Y%m%d")
        q = await client.request(Query(client.next_seq(), day, 1, service, ""))
        await client.close()
        return sent, q
    sent, q = run(go())
    assert sent.result == 0, sent
    assert q.mt_tlmsg == 1, q


class _Counts:
    def __init__(self):
        self.asked = []

    def query_counts(self, account_id, start, end, service_id=None):
        self.asked.append((account_id, start, end, service_id))
        return {}


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "UTC", "America/New_York"])
def test_query_day_boundaries_are_platform_midnights(tmp_path, zone):
    fe = FrontEnd(Settings(data_dir=str(tmp_path)), store=_Counts())
    tz = ZoneInfo(zone)
    fe.query("900001", Query(1, "20261208", 0, "", ""), tz)
    fe.query("900001", Query(2, "20260308", 1, "svc", ""), tz)   # New York: a 23-hour day
    [(_, start, end, svc), (_, start2, end2, svc2)] = fe.store.asked
    assert (start, end, svc) == (datetime(2026, 12, 8, tzinfo=tz).timestamp(),
                                 datetime(2026, 12, 9, tzinfo=tz).timestamp(), None)
    assert (start2, end2, svc2) == (datetime(2026, 3, 8, tzinfo=tz).timestamp(),
                                    datetime(2026, 3, 9, tzinfo=tz).timestamp(), "svc")
