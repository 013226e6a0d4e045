import pytest

from policy.submission import Submission


def test_from_dict_encodes_text_content_for_its_format():
    sub = Submission.from_dict({"request_id": "r", "account_id": "a", "content": "您好", "msg_fmt": 15,
                                "destinations": [13800138000]})
    assert sub.content == "您好".encode("gb18030")
    assert sub.destinations == ["13800138000"]
    assert Submission.from_dict({"request_id": "r", "account_id": "a", "content": "您好"}).content == \
        "您好".encode("utf-16-be")
    assert Submission.from_dict({"request_id": "r", "account_id": "a", "content": b"\x00A"}).content == b"\x00A"


def test_defaults():
    sub = Submission.from_dict({"request_id": "r", "account_id": "a"})
    assert (sub.access_mode, sub.msg_fmt, sub.parts, sub.destinations, sub.message_ids) == \
        ("cmpp", 8, 1, [], [])


@pytest.mark.parametrize("data, message", [
    ({"request_id": "r", "account_id": "a", "contents": "x"}, "unknown submission field"),
    ({"account_id": "a"}, "'request_id' is required"),
    ({"request_id": "r", "account_id": "a", "access_mode": "smpp"}, "access_mode must be one of"),
])
def test_from_dict_errors(data, message):
    with pytest.raises(ValueError, match=message):
        Submission.from_dict(data)


def test_slots():
    sub = Submission("r", "a")
    with pytest.raises(AttributeError):
        sub.extra = 1
