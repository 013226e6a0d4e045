"""A third-party client: PyPI's pycmpp logs in and submits (its other packets are broken on the
wire, cmpp.md §15, so it is used for CONNECT and SUBMIT only, heartbeat off)."""
import os
import time

import pytest
from pycmpp.cmpp import Cmpp
from pycmpp.request import SubmitRequestInstance
from pycmpp.response import ConnectResponseInstance, SubmitResponseInstance

from tests.frontend.cmpp_client import DEMO_SIGNATURE, fresh_number, claim_current_second


@pytest.fixture
def shanghai_clock():
    """pycmpp stamps CONNECT with time.localtime(); the platform reads it in Asia/Shanghai."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Shanghai"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


def read_packet(sock) -> bytes:
    head = b""
    while len(head) < 12:
        head += sock.recv(12 - len(head))
    total = int.from_bytes(head[:4], "big")
    body = b""
    while len(body) < total - 12:
        body += sock.recv(total - 12 - len(body))
    return head + body


def test_pycmpp_logs_in_and_submits(gateway, shanghai_clock):
    client = Cmpp("127.0.0.1", gateway.port, "900001", "888888", "106900001",
                  client_heartbeat=False)
    client.connect()
    client.so.settimeout(5)
    try:
        claim_current_second("900001")
        client.auth()
        login = ConnectResponseInstance()
        login.resolve(read_packet(client.so))
        assert login.status == 0 and login.version == 0x21

        request = SubmitRequestInstance()
        client.send(request.create(msg_src="900001", msg_content=DEMO_SIGNATURE + "来自pycmpp",
                                   dest_terminal_id=[fresh_number()], src_id="106900001"))
        resp = SubmitResponseInstance()
        resp.resolve(read_packet(client.so))
        assert (resp.seq_id, resp.status) == (request.seq_id, 0)
        assert resp.msg_id != 0
    finally:
        client.close()
