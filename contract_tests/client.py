"""The one raw-HTTP test client, and the wire-level assertions of the contract.

Every test of the repository that speaks HTTP to a TCI-compatible service without an SDK goes
through :class:`Client`: the contract suite (against any target), the project's own tests
(``tests/``, bound to an in-process emulator) and the benchmark. It lives here because the
contract suite must stand alone (it is what runs against other targets) and may import nothing
of ``tests/``, while ``tests/`` may import from it. It uses ``requests`` only: what a client of
the real service sends, no SDK.
"""

from __future__ import annotations

import base64
import binascii
import re
from types import TracebackType
from typing import Any, TypeVar

import requests

EXECUTE = "/v1/tci/execute"
SESSIONS = "/v1/tci/sessions"
HTTP_TIMEOUT = 180.0

SESSION_ID = re.compile(r"ses_[1-9A-HJ-NP-Za-km-z]{21}")
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00")
LISTING_FIELDS = {"id", "execute_count", "started_at", "last_execute_at", "expires_at"}
STREAM_TYPES = {"stdout", "stderr", "error"}
BUNDLE_TYPES = {"display_data", "execute_result"}
BINARY_MIME = {"image/png", "image/jpeg", "image/gif", "application/pdf"}

# The ``body`` of a request that sends no body at all.
NO_BODY: Any = object()
# The ``key`` of a request that uses the client's own key.
OWN_KEY: Any = object()

_Self = TypeVar("_Self", bound="Client")


class Client:
    """Raw HTTP to the service at ``url`` (its root: ``/v1/tci/...`` and ``/_emulator/...``
    hang off it) as one tenant, the API key ``key``.

    Every call may name another ``key`` (``None`` or ``""`` sends no ``Authorization``
    header). Connections are kept alive in one ``requests.Session`` (``session``, usable
    directly for requests the helpers do not shape), closed by :meth:`close` or the ``with``
    block.
    """

    def __init__(self, url: str, key: str | None, *, session: requests.Session | None = None,
                 timeout: float = HTTP_TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.session = session if session is not None else requests.Session()
        self.timeout = timeout

    def headers(self, key: str | None) -> dict[str, str]:
        """The ``Authorization`` header of ``key`` (none for no key)."""
        return {"Authorization": f"Bearer {key}"} if key else {}

    def request(self, method: str, path: str, *, key: Any = OWN_KEY, body: Any = NO_BODY,
                raw: bytes | str | None = None, headers: dict[str, str] | None = None,
                **kwargs: Any) -> requests.Response:
        """One raw request to ``url + path``: ``body`` is sent as JSON, ``raw`` as is;
        ``headers`` are added to (and may override) the key's; ``kwargs`` go to ``requests``."""
        sent = self.headers(self.key if key is OWN_KEY else key)
        sent.update(headers or {})
        kwargs.setdefault("timeout", self.timeout)
        if body is not NO_BODY:
            kwargs["json"] = body
        elif raw is not None:
            kwargs["data"] = raw
        return self.session.request(method, self.url + path, headers=sent, **kwargs)

    def get(self, path: str, *, key: Any = OWN_KEY, **kwargs: Any) -> requests.Response:
        """``GET url + path``."""
        return self.request("GET", path, key=key, **kwargs)

    def post(self, path: str, body: Any = NO_BODY, *, key: Any = OWN_KEY,
             **kwargs: Any) -> requests.Response:
        """``POST url + path`` with ``body`` as JSON (no body when left out)."""
        return self.request("POST", path, key=key, body=body, **kwargs)

    def execute(self, code: str, session_id: str | None = None, *, key: Any = OWN_KEY,
                files: list[dict[str, str]] | None = None, path: str = EXECUTE,
                **extra: Any) -> requests.Response:
        """POST an ExecuteRequest; ``session_id`` and ``files`` only when given, ``extra``
        as further fields of the body."""
        body: dict[str, Any] = {"code": code, "language": "python", **extra}
        if session_id is not None:
            body["session_id"] = session_id
        if files is not None:
            body["files"] = files
        return self.request("POST", path, key=key, body=body)

    def run(self, code: str, session_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """Execute and return ``data`` of the success envelope (checked to the letter)."""
        return assert_success(self.execute(code, session_id, **kwargs))

    def sessions(self, path: str = SESSIONS, *, key: Any = OWN_KEY) -> list[dict[str, Any]]:
        """The caller's listed sessions (the listing envelope checked to the letter)."""
        body = assert_json(self.request("GET", path, key=key), 200)
        assert set(body) == {"data", "errors"} and body["errors"] is None, body
        assert set(body["data"]) == {"sessions"}, body
        listed = body["data"]["sessions"]
        assert isinstance(listed, list)
        for entry in listed:
            assert set(entry) == LISTING_FIELDS, entry
        return list(listed)

    def listed(self, session_id: str) -> dict[str, Any]:
        """The listing entry of ``session_id`` (which must be listed once)."""
        matches = [s for s in self.sessions() if s["id"] == session_id]
        assert len(matches) == 1, (session_id, matches)
        return matches[0]

    def close(self) -> None:
        """Close the kept-alive connections."""
        self.session.close()

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# -- assertions ------------------------------------------------------------------------------

def assert_json(response: requests.Response, status: int) -> Any:
    """``response`` has ``status`` and a JSON body (never HTML); the parsed body."""
    assert response.status_code == status, (response.status_code, response.text[:2000])
    content_type = response.headers.get("Content-Type", "")
    assert content_type.split(";")[0].strip() == "application/json", content_type
    assert not response.text.lstrip().startswith("<"), response.text[:200]
    return response.json()


def assert_success(response: requests.Response) -> dict[str, Any]:
    """The exact success envelope of contract section 4; returns its ``data``."""
    body = assert_json(response, 200)
    assert set(body) == {"data", "errors"} and body["errors"] is None, body
    data = body["data"]
    assert set(data) == {"outputs", "session_id", "status"}, data
    assert data["status"] == "success"
    assert isinstance(data["session_id"], str) and SESSION_ID.fullmatch(data["session_id"]), data
    assert isinstance(data["outputs"], list)
    for item in data["outputs"]:
        assert_output_item(item)
    return dict(data)


def assert_output_item(item: Any) -> None:
    """One output item as section 4 types it: ``{type, data}``, text or a MIME bundle."""
    assert isinstance(item, dict) and set(item) == {"type", "data"}, item
    if item["type"] in STREAM_TYPES:
        assert isinstance(item["data"], str), item
        return
    assert item["type"] in BUNDLE_TYPES, item
    bundle = item["data"]
    assert isinstance(bundle, dict) and bundle, item
    for mime, value in bundle.items():
        if mime == "application/json" or mime.endswith("+json"):
            assert isinstance(value, (dict, list)), (mime, value)
        elif mime in BINARY_MIME:
            assert isinstance(value, str) and not value.startswith("data:"), (mime, value[:40])
            try:
                base64.b64decode(value, validate=True)
            except binascii.Error as exc:
                raise AssertionError(f"{mime} is not base64: {exc}") from None
        else:
            assert isinstance(value, str), (mime, value)


def assert_error(response: requests.Response, status: int, code: str, *,
                 param: str | None = None) -> dict[str, Any]:
    """The exact error body of contract section 8; returns it."""
    body = assert_json(response, status)
    assert set(body) == {"data", "errors", "error"}, body
    error = body["error"]
    message = error.get("message")
    assert isinstance(message, str) and message, body
    assert body["data"] is None
    assert body["errors"] == [{"code": code, "message": message}], body
    assert error == {"message": message, "type": "invalid_request_error", "param": param,
                     "code": code}, body
    return dict(body)


def stdout_of(data: dict[str, Any]) -> str:
    """All stdout text of an execution's outputs."""
    return "".join(o["data"] for o in data["outputs"] if o["type"] == "stdout")
