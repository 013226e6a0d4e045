"""Which limits apply: "Limits can be set per account, per channel, with defaults" (issue 3).

- account scopes: a limit naming the account replaces the defaults of its scope for that account;
- channel scopes: a limit naming the channel replaces the defaults of its scope on that channel
  (a bigger channel gets a bigger quota); a limit naming accounts is a sub-quota, the account's
  own counter on the channel, checked in addition to the channel's shared quota: the channel's
  total holds for all accounts together, whatever the accounts' own limits say.
"""
from __future__ import annotations

import random
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from policy.counters import LimitPlan, RecipientCharge
from policy.counters.keys import CHANNEL_SCOPES
from policy.rules.model import Limit

T = datetime(2026, 12, 8, 10, 0, 5, tzinfo=ZoneInfo("Asia/Shanghai"))


def ids(plan, account="900001", channel="ch1"):
    return [lim.id for lim in plan.applicable(account, channel)]


def send(store, plan, rid, account="900001", channel="ch1", number="13800000001", content="h1", now=T):
    rc = RecipientCharge(0, plan.increments(account, channel, number, content, 1, now), 1)
    result = store.charge(rid, [rc], None, 0, now.timestamp())
    return result.rejected.get(0, (None, None))[1] if not result.ok_indexes else "ok"


# --- the choice ---------------------------------------------------------------------------

@pytest.mark.parametrize("scope", sorted(CHANNEL_SCOPES))
def test_a_limit_naming_the_channel_replaces_the_default_of_its_scope_there(scope):
    plan = LimitPlan([
        Limit(id="default-min", scope=scope, max=5, window="minute"),
        Limit(id="default-day", scope=scope, max=500, window="day"),
        Limit(id="other-scope", scope="account", max=9, window="day"),
        Limit(id="big-min", scope=scope, max=10, window="minute", channels=("ch-big",)),
        Limit(id="big-day", scope=scope, max=900, window="day", channels=("ch-big", "ch-huge")),
    ])
    assert ids(plan, channel="ch-big") == ["other-scope", "big-min", "big-day"]
    assert ids(plan, channel="ch-huge") == ["other-scope", "big-day"]
    assert ids(plan, channel="ch1") == ["default-min", "default-day", "other-scope"]
    assert ids(plan, channel=None) == ["other-scope"]


def test_account_scopes_are_unchanged_an_account_limit_replaces_the_default():
    plan = LimitPlan([Limit(id="daily", scope="account", max=5, window="day"),
                      Limit(id="num", scope="account_number", max=5, window="day"),
                      Limit(id="big-daily", scope="account", max=10, window="day", accounts=("900001",))])
    assert ids(plan, account="900001") == ["num", "big-daily"]
    assert ids(plan, account="900002") == ["daily", "num"]


@pytest.mark.parametrize("scope", sorted(CHANNEL_SCOPES))
def test_an_account_limit_of_a_channel_scope_adds_to_the_channels_quota(scope):
    plan = LimitPlan([
        Limit(id="shared", scope=scope, max=5, window="minute"),
        Limit(id="big-shared", scope=scope, max=50, window="minute", channels=("ch-big",)),
        Limit(id="acct", scope=scope, max=3, window="minute", accounts=("900001", "900003")),
        Limit(id="acct-on-big", scope=scope, max=30, window="minute", accounts=("900001",), channels=("ch-big",)),
    ])
    assert ids(plan, "900001", "ch1") == ["shared", "acct"]
    assert ids(plan, "900002", "ch1") == ["shared"]
    # on ch-big both the shared quota and 900001's sub-quota are ch-big's own
    assert ids(plan, "900001", "ch-big") == ["big-shared", "acct-on-big"]
    assert ids(plan, "900003", "ch-big") == ["big-shared", "acct"]
    assert ids(plan, "900001", None) == []


def test_a_sub_quota_counts_per_account_and_channel_the_shared_quota_per_channel():
    plan = LimitPlan([Limit(id="shared", scope="channel_number", max=5, window="minute"),
                      Limit(id="acct", scope="channel_number", max=3, window="minute", accounts=("900001", "900003"))])
    keys = {}
    for account in ("900001", "900003"):
        for inc in plan.increments(account, "ch1", "13800000001", "h1", 1, T):
            keys.setdefault(inc.limit_id, set()).add(inc.base)
    assert keys["shared"] == {"cn:shared:ch1:13800000001:minute1"}
    assert keys["acct"] == {"cn:acct:ch1:900001:13800000001:minute1", "cn:acct:ch1:900003:13800000001:minute1"}


# --- through every backend ------------------------------------------------------------------

def test_a_bigger_channel_gets_its_own_quota(store):
    plan = LimitPlan([Limit(id="channel-volume", scope="channel", max=5, window="minute"),
                      Limit(id="big-channel-volume", scope="channel", max=10, window="minute", channels=("ch-big",))])
    on_big = [send(store, plan, f"big{i}", channel="ch-big", number=str(13800000000 + i)) for i in range(11)]
    assert on_big == ["ok"] * 10 + ["big-channel-volume"]
    on_ch1 = [send(store, plan, f"ch1-{i}", channel="ch1", number=str(13800000000 + i)) for i in range(6)]
    assert on_ch1 == ["ok"] * 5 + ["channel-volume"]


def test_an_account_with_its_own_channel_limit_stays_in_the_channels_quota(store):
    plan = LimitPlan([Limit(id="channel-volume", scope="channel", max=5, window="minute"),
                      Limit(id="acct-on-channel", scope="channel", max=3, window="minute", accounts=("900001",))])
    # another account fills the channel: 900001's own limit gives it nothing beyond the channel's
    assert [send(store, plan, f"x{i}", account="900002", number=str(i)) for i in range(5)] == ["ok"] * 5
    assert [send(store, plan, f"y{i}", account="900001", number=str(i)) for i in range(3)] == ["channel-volume"] * 3
    # next minute: 900001 is held to its sub-quota, the rest of the channel is for the others
    later = T + timedelta(minutes=1)
    assert [send(store, plan, f"z{i}", number=str(i), now=later) for i in range(4)] == ["ok"] * 3 + ["acct-on-channel"]
    assert [send(store, plan, f"w{i}", account="900002", number=str(i), now=later) for i in range(3)] == ["ok", "ok", "channel-volume"]


def test_the_channels_total_is_never_overshot_whatever_the_accounts_limits(store):
    """Random traffic of five accounts on two channels: three with sub-quotas (one above the
    channel's own quota), two without. Each channel's total stays within its shared quota, each
    sub-quota within its max, and a refusal always names a limit that is really full."""
    shared_max = {"ch1": 12, "ch-big": 20}
    plan = LimitPlan([
        Limit(id="channel-volume", scope="channel", max=12, window="minute"),
        Limit(id="big-channel-volume", scope="channel", max=20, window="minute", channels=("ch-big",)),
        Limit(id="small-accounts", scope="channel", max=4, window="minute", accounts=("900001", "900002")),
        Limit(id="generous", scope="channel", max=100, window="minute", accounts=("900003",)),
    ])
    sub_max = {"900001": 4, "900002": 4, "900003": 100}
    rng = random.Random(3)
    total = {}
    per_account = {}
    for i in range(120):
        account = rng.choice(["900001", "900002", "900003", "900004", "900005"])
        channel = rng.choice(["ch1", "ch-big"])
        outcome = send(store, plan, f"r{i}", account=account, channel=channel, number=str(13900000000 + i))
        shared_full = total.get(channel, 0) >= shared_max[channel]
        sub_full = per_account.get((account, channel), 0) >= sub_max.get(account, 1 << 30)
        if outcome == "ok":
            assert not shared_full and not sub_full
            total[channel] = total.get(channel, 0) + 1
            per_account[(account, channel)] = per_account.get((account, channel), 0) + 1
        else:
            assert shared_full or sub_full, (i, outcome)
            assert outcome == (("big-channel-volume" if channel == "ch-big" else "channel-volume") if shared_full
                               else ("generous" if account == "900003" else "small-accounts"))
    assert total == shared_max                      # both channels were filled, not overfilled
    assert all(n <= sub_max.get(a, 1 << 30) for (a, _), n in per_account.items())


def test_concurrent_accounts_with_and_without_sub_quotas_fill_the_channel_exactly(store):
    from concurrent.futures import ThreadPoolExecutor
    plan = LimitPlan([Limit(id="channel-volume", scope="channel", max=20, window="minute"),
                      Limit(id="acct", scope="channel", max=30, window="minute", accounts=("900001",)),
                      Limit(id="tight", scope="channel", max=4, window="minute", accounts=("900002",))])

    def worker(w):
        account = ("900001", "900002", "900003")[w % 3]
        return [(account, send(store, plan, f"t{w}-{i}", account=account, number=str(w * 100 + i)))
                for i in range(10)]

    with ThreadPoolExecutor(8) as pool:
        outcomes = [o for batch in pool.map(worker, range(8)) for o in batch]
    accepted = [a for a, o in outcomes if o == "ok"]
    assert len(accepted) == 20
    assert accepted.count("900002") <= 4
