"""Long SMS: reassembled before the policy sees it, whatever the order, UDH form or TP_udhi."""
import sqlite3

from gateway.cmpp import Submit
from tests.frontend.cmpp_client import DEMO_SIGNATURE, DEMO_SRC, CmppClient, fresh_number, run

TEXT = DEMO_SIGNATURE + "尊敬的客户，" + "您本月的账单已经生成，请登录网上营业厅查询详情。" * 6   # 3 parts


def stored(gateway, first_msg_id):
    with sqlite3.connect(gateway.store_path) as db:
        return db.execute("SELECT msg_ids, content, segments FROM outbox WHERE msg_id = ?",
                          (str(first_msg_id),)).fetchall()


def udh16_parts(client, text, ref, dest, tp_udhi=0x40):
    """Parts with the 7-byte 16-bit-reference UDH (66 UCS2 units each)."""
    data = text.encode("utf-16-be")
    chunks = [data[i:i + 132] for i in range(0, len(data), 132)]
    return [Submit(client.next_seq(), pk_total=len(chunks), pk_number=n, registered_delivery=1,
                   tp_udhi=tp_udhi, msg_fmt=8, msg_src=client.account, src_id=DEMO_SRC,
                   dest_terminal_ids=(dest,),
                   msg_content=bytes((6, 8, 4, ref >> 8, ref & 0xFF, len(chunks), n)) + chunk)
            for n, chunk in enumerate(chunks, 1)]


def test_in_order_each_part_answered_and_one_message_stored(gateway):
    async def go():
        client = await CmppClient.logged_in(gateway.port)
        parts = client.long_parts(TEXT, ref=21, dests=(fresh_number(),))
        resps = [await client.request(p) for p in parts]
        await client.close()
        return resps
    resps = run(go())
    assert [r.result for r in resps] == [0, 0, 0]
    ids = [r.msg_id for r in resps]
    assert len(set(ids)) == 3
    [(msg_ids, content, segments)] = stored(gateway, ids[0])
    assert msg_ids == " ".join(map(str, ids))
    assert content == TEXT.encode("utf-16-be") and segments == 3


def test_out_of_order_with_16_bit_reference_and_udhi_0x40(gateway):
    async def go():
        client = await CmppClient.logged_in(gateway.port)
        parts = udh16_parts(client, TEXT, ref=0x1234, dest=fresh_number())
        resps = {p.pk_number: await client.request(p) for p in (parts[2], parts[0], parts[1])}
        await client.close()
        return [resps[n] for n in sorted(resps)]
    resps = run(go())
    assert [r.result for r in resps] == [0, 0, 0]
    [(msg_ids, content, _)] = stored(gateway, resps[0].msg_id)
    assert msg_ids == " ".join(str(r.msg_id) for r in resps)
    assert content == TEXT.encode("utf-16-be")


def test_keyword_split_across_two_parts_is_caught(gateway):
    head = DEMO_SIGNATURE + "欢迎光临"
    text = head + "好" * (66 - len(head)) + "博彩" + "，详情咨询客服。" * 3   # 博 ends part 1
    async def go():
        client = await CmppClient.logged_in(gateway.port)
        parts = client.long_parts(text, ref=22, dests=("13912345678",))
        assert parts[0].msg_content[-2:] == "博".encode("utf-16-be")
        resps = [await client.request(p) for p in parts]
        reports = [await client.report(r.msg_id) for r in resps]
        await client.close()
        return resps, reports
    resps, reports = run(go())
    assert [r.result for r in resps] == [0, 0]
    assert [r.stat for r in reports] == ["MA:0002", "MA:0002"]   # one per part's Msg_Id


def test_duplicate_part_gets_ma0013_and_the_message_still_completes(gateway):
    async def go():
        client = await CmppClient.logged_in(gateway.port)
        one, two, three = client.long_parts(TEXT, ref=23, dests=(fresh_number(),))
        first = await client.request(one)
        again = await client.request(Submit(**{**_fields(one), "sequence_id": client.next_seq()}))
        rest = [await client.request(two), await client.request(three)]
        dup_report = await client.report(again.msg_id)
        await client.close()
        return first, again, rest, dup_report
    first, again, rest, dup_report = run(go())
    assert (first.result, again.result) == (0, 0) and first.msg_id != again.msg_id
    assert dup_report.stat == "MA:0013"
    [(msg_ids, _, _)] = stored(gateway, first.msg_id)
    assert msg_ids == " ".join(str(r.msg_id) for r in [first, *rest])


def test_a_new_message_reusing_reference_and_total_soon_after_is_not_a_duplicate(gateway):
    """8-bit references wrap: a second long SMS to the same number with the same reference
    and total, within the reassembly timeout of the first, is a message of its own (both
    stored), while a late copy of a part of the first is still MA:0013."""
    a = DEMO_SIGNATURE + "第一条长短信：您本月的账单已经生成，请登录网上营业厅查询详情。" * 3
    b = DEMO_SIGNATURE + "第二条长短信：您的订单已发货，快递单号稍后以短信通知，请注意查收。" * 3
    number = fresh_number()
    async def go():
        client = await CmppClient.logged_in(gateway.port)
        pa = client.long_parts(a, ref=7, dests=(number,))
        ra = [await client.request(p) for p in pa]
        pb = client.long_parts(b, ref=7, dests=(number,))
        assert len(pb) == len(pa)
        rb = [await client.request(p) for p in pb]
        late = await client.request(Submit(**{**_fields(pa[1]), "sequence_id": client.next_seq()}))
        late_report = await client.report(late.msg_id)
        await client.close()
        return ra, rb, late, late_report
    ra, rb, late, late_report = run(go())
    assert [r.result for r in ra + rb] == [0] * (len(ra) + len(rb))
    [(ids_a, content_a, _)] = stored(gateway, ra[0].msg_id)
    [(ids_b, content_b, _)] = stored(gateway, rb[0].msg_id)
    assert content_a == a.encode("utf-16-be") and content_b == b.encode("utf-16-be")
    assert ids_b == " ".join(str(r.msg_id) for r in rb)
    assert late.result == 0 and late_report.stat == "MA:0013"


def _fields(packet):
    return {name: getattr(packet, name) for name in packet.__dataclass_fields__}


def test_over_1000_characters_gets_result_4_and_the_other_parts_ma0037(gateway):
    text = DEMO_SIGNATURE + "长" * 1004   # 1010 characters: 16 parts
    async def go():
        client = await CmppClient.logged_in(gateway.port)
        parts = client.long_parts(text, ref=24, dests=(fresh_number(),))
        resps = [await client.request(p) for p in parts]
        reports = [await client.report(r.msg_id) for r in resps[:-1]]
        await client.close()
        return resps, reports
    resps, reports = run(go())
    assert len(resps) == 16
    assert [r.result for r in resps] == [0] * 15 + [4]
    assert {r.stat for r in reports} == {"MA:0037"}
    assert stored(gateway, resps[0].msg_id) == []


def test_missing_part_gives_ma0026_for_the_parts_received(daemon, make_gateway):
    g = make_gateway(daemon.target, reassembly_timeout=1)
    async def go():
        client = await CmppClient.logged_in(g.port)
        one, _, three = client.long_parts(TEXT, ref=25, dests=(fresh_number(), "13912345678"))
        resps = [await client.request(one), await client.request(three)]
        reports = [await client.report(r.msg_id + i, timeout=6) for r in resps for i in (0, 1)]
        await client.close()
        return resps, reports
    resps, reports = run(go())
    assert [r.result for r in resps] == [0, 0]
    assert [r.stat for r in reports] == ["MA:0026"] * 4


def test_buffered_parts_survive_a_front_end_restart(daemon, make_gateway):
    g = make_gateway(daemon.target)
    dest = fresh_number()

    async def first_half():
        client = await CmppClient.logged_in(g.port)
        parts = client.long_parts(TEXT, ref=26, dests=(dest,))
        resps = [await client.request(p) for p in parts[:2]]
        await client.close()
        return parts[2], resps

    async def second_half(last):
        client = await CmppClient.logged_in(g.port)
        resp = await client.request(Submit(**{**_fields(last), "sequence_id": client.next_seq()}))
        await client.close()
        return resp
    last, resps = run(first_half())
    g.restart()
    resps.append(run(second_half(last)))
    assert [r.result for r in resps] == [0, 0, 0]
    [(msg_ids, content, _)] = stored(g, resps[0].msg_id)
    assert msg_ids == " ".join(str(r.msg_id) for r in resps)
    assert content == TEXT.encode("utf-16-be")
