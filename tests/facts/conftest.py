"""A small policy built straight from the model dataclasses (independent of the YAML loader)."""
from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest

from policy.facts.builder import FactBuilder
from policy.facts.lists import ApiBlacklist
from policy.facts.segments import SegmentDB
from policy.rules.model import (Account, Channel, KeywordGroup, NumberList, Platform, PolicySet,
                                Template, TimeWindow)
from policy.submission import Submission

TZ = ZoneInfo("Asia/Shanghai")
BEIJING_CMCC = "13800138000"     # 1380013: 北京/北京, 移动
GUANGZHOU_CMCC = "13802400000"   # 1380240: 广东/广州, 移动
SHENZHEN_CUCC = "13005400000"    # 1300540: 广东/深圳, 联通
BEIJING_CTCC = "13301000000"     # 1330100: 北京/北京, 电信


def make_policy(source_dir: str = "", **overrides) -> PolicySet:
    accounts = {
        "900001": Account(
            id="900001", name="云片科技", secret="s3cret", access_code="10690001",
            signature_check=True, signatures=("云片科技", "【小云】"), msg_formats=(0, 8, 15),
            fee_codes=("10", "000020"), blocked_regions=("新疆", "广东省/深圳市"),
            send_window=TimeWindow(time(8), time(21, 30)), content_filing="reject",
            channels=("ch-cmcc-bj", "ch-cmcc", "ch-cucc", "ch-ctcc-short"),
        ),
        "900002": Account(id="900002", name="other", secret="x", channels=("ch-cmcc",)),
    }
    channels = {
        "ch-cmcc-bj": Channel(id="ch-cmcc-bj", name="移动北京", carriers=("cmcc",), regions=("北京市",)),
        "ch-cmcc": Channel(id="ch-cmcc", name="移动全国", carriers=("cmcc",), run_mode="reject",
                           formats=(8,), max_length=300),
        "ch-cmcc-backup": Channel(id="ch-cmcc-backup", name="移动备用", carriers=("cmcc",)),
        "ch-cucc": Channel(id="ch-cucc", name="联通", carriers=("cucc",), supports_long=False),
        "ch-ctcc-short": Channel(id="ch-ctcc-short", name="电信短", carriers=("ctcc",), max_length=10),
    }
    lists = {
        "global-bl": NumberList("global-bl", "numbers", "global", entries=frozenset({BEIJING_CMCC})),
        "complaints": NumberList("complaints", "numbers", "global", entries=frozenset({BEIJING_CMCC})),
        "cust-bl": NumberList("cust-bl", "numbers", "customer", account="900001",
                              entries=frozenset({"13900000001"})),
        "chan-bl": NumberList("chan-bl", "numbers", "channel", channel="ch-cmcc",
                              entries=frozenset({GUANGZHOU_CMCC})),
        "global-seg": NumberList("global-seg", "segments", "global", entries=frozenset({"1330", "170"})),
        "chan-seg": NumberList("chan-seg", "segments", "channel", channel="ch-cucc",
                               entries=frozenset({"1300540"})),
        "api-seed": NumberList("api-seed", "numbers", "api", entries=frozenset({"13700000007"})),
    }
    keyword_groups = {
        "gambling": KeywordGroup("gambling", ("赌博", "百家乐")),
        "contact": KeywordGroup("contact", ("加VX", "weixin")),
    }
    templates = {
        "tpl-code": Template("tpl-code", "您的验证码是{code}，{minutes}分钟内有效"),
        "tpl-own": Template("tpl-own", "尊敬的{name}，您的订单{order}已发货", account="900001"),
        "tpl-other": Template("tpl-other", "您的快递{no}已到", account="900002"),
    }
    values = dict(version="test", platform=Platform(), accounts=accounts, channels=channels,
                  lists=lists, keyword_groups=keyword_groups, templates=templates, rules=(),
                  source_dir=source_dir)
    values.update(overrides)
    return PolicySet(**values)


@pytest.fixture(scope="session")
def segment_db() -> SegmentDB:
    return SegmentDB.load()


@pytest.fixture
def policy() -> PolicySet:
    return make_policy()


@pytest.fixture
def api_blacklist(tmp_path):
    bl = ApiBlacklist(tmp_path / "api.db")
    yield bl
    bl.close()


@pytest.fixture
def builder(policy, segment_db, api_blacklist) -> FactBuilder:
    return FactBuilder(policy, segment_db, api_blacklist, None)


def submission(text: str = "【云片科技】您的验证码是1234，5分钟内有效", destinations=(BEIJING_CMCC,),
               msg_fmt: int = 8, **kw) -> Submission:
    return Submission.from_dict({
        "request_id": "r1", "account_id": "900001", "src_id": "10690001", "content": text,
        "msg_fmt": msg_fmt, "fee_code": "000010", "destinations": list(destinations), **kw})


NOON = datetime(2024, 5, 1, 12, 0, tzinfo=TZ)
