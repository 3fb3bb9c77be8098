"""The error hierarchy and its single renderer."""

from __future__ import annotations

import pytest

from tci_emulator import errors
from tci_emulator.errors import EmulatorError, InjectedError, render_error

ALL_ERRORS = [cls for cls in vars(errors).values()
              if isinstance(cls, type) and issubclass(cls, EmulatorError)
              and cls not in (EmulatorError, InjectedError)]


def test_every_error_class_has_a_distinct_status_and_code_pair() -> None:
    pairs = [(cls.status, cls.code) for cls in ALL_ERRORS]
    assert len(pairs) == len(set(pairs))
    assert len(ALL_ERRORS) >= 12


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda c: c.__name__)
def test_each_error_renders_the_contract_body(cls: type[EmulatorError]) -> None:
    error = cls("Something precise went wrong.", param="field")
    status, body = render_error(error)
    assert status == cls.status and 400 <= status < 600
    assert body == {
        "data": None,
        "errors": [{"code": cls.code, "message": "Something precise went wrong."}],
        "error": {"message": "Something precise went wrong.", "type": cls.type,
                  "param": "field", "code": cls.code},
    }
    literal_status, literal = render_error(error, spec_literal=True)
    assert literal_status == 200
    assert literal == {"data": None, "errors": body["errors"]}


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda c: c.__name__)
def test_each_error_has_a_default_message(cls: type[EmulatorError]) -> None:
    _, body = render_error(cls())
    assert body["error"]["message"] == cls.message and cls.message.endswith(".")


@pytest.mark.parametrize("status,code,err_type", [
    (429, "rate_limited", "rate_limit_error"), (503, "http_503", "server_error"),
    (400, "http_400", "invalid_request_error")])
def test_injected_errors_take_status_and_code_from_the_rule(status: int, code: str,
                                                            err_type: str) -> None:
    error = InjectedError(status, headers={"Retry-After": "1"})
    rendered_status, body = render_error(error)
    assert rendered_status == status and error.headers == {"Retry-After": "1"}
    assert body["error"]["code"] == code and body["error"]["type"] == err_type
