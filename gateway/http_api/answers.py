"""What the API answers besides success: an HTTP status, a code of the platform's code table
and a message, as JSON {"code", "message", "stage", ...}.

`stage` says which table the code is from, as the login and submit tables overlap (15 and 16
are in both): "request" (the HTTP request itself: code 1, 错误的消息包), "login" (the
CONNECT_RESP Status the daemon gave the request's authentication) or "submit" (a
SUBMIT_RESP Result).
"""
from __future__ import annotations

REQUEST, LOGIN, SUBMIT = "request", "login", "submit"
MALFORMED = 1           # 错误的消息包 / CMPP SUBMIT_RESP Result 1
AUTH = 3                # 鉴权错误
FLOW_CONTROL = 8        # the daemon cannot be asked now: try again
BAD_SRC_ID = 10         # 错误的原发号码: extno
BAD_DESTINATION = 12    # 错误的目的号码
BAD_LENGTH = 4          # 错误内容长度
DEST_COUNT = 102        # 号码数错误
BAD_LIST = 22           # sms57 p2p 提交下的 mobileContentList 错误
INTERNAL = 100          # 内部错误

# login statuses: authentication problems 401, refusals of a known account 403
_LOGIN_HTTP = {1: 400, 2: 403, 3: 401, 4: 400, 5: 403, 6: 403, 7: 403, 15: 403, 16: 403,
               21: 429, 100: 503}
# submit results are the platform's answer to a well-formed request (200), except these
_SUBMIT_HTTP = {MALFORMED: 400, FLOW_CONTROL: 503, BAD_LIST: 400}


class ApiError(Exception):
    def __init__(self, status: int, code: int, message: str, stage: str, **extra):
        super().__init__(message)
        self.status, self.code, self.message, self.stage = status, code, message, stage
        self.extra = extra

    def doc(self) -> dict:
        return {"code": self.code, "message": self.message, "stage": self.stage, **self.extra}


def request_error(status: int, message: str) -> ApiError:
    return ApiError(status, MALFORMED, message, REQUEST)


def login_refused(status: int, reason: str) -> ApiError:
    return ApiError(_LOGIN_HTTP.get(status, 403), status, reason, LOGIN)


def submit_refused(code: int, message: str, **extra) -> ApiError:
    return ApiError(submit_http_status(code), code, message, SUBMIT, **extra)


def submit_http_status(code: int) -> int:
    return _SUBMIT_HTTP.get(code, 200)
