"""Contract section 4: the success envelope and the output items, their types and shapes.

Single executions share one session (``shared``): each asserts only on its own outputs.
"""

from __future__ import annotations

import base64

import pytest

from .client import SESSION_ID, assert_json
from .conftest import Wire

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_success_envelope_is_exactly_data_and_errors(wire: Wire) -> None:
    response = wire.execute("print('hello')")
    body = assert_json(response, 200)
    assert body == {
        "data": {"outputs": [{"type": "stdout", "data": "hello\n"}],
                 "session_id": body["data"]["session_id"], "status": "success"},
        "errors": None,
    }
    assert SESSION_ID.fullmatch(body["data"]["session_id"])


def test_code_without_output_returns_no_items(shared: tuple[Wire, str]) -> None:
    tenant, session_id = shared
    assert tenant.run("quiet = 1", session_id)["outputs"] == []


def test_consecutive_prints_arrive_as_one_stdout_item(shared: tuple[Wire, str]) -> None:
    tenant, session_id = shared
    data = tenant.run("print('one')\nprint('two')\nprint('three')", session_id)
    assert data["outputs"] == [{"type": "stdout", "data": "one\ntwo\nthree\n"}]


def test_stderr_writes_arrive_as_one_stderr_item(shared: tuple[Wire, str]) -> None:
    tenant, session_id = shared
    data = tenant.run("import sys\nprint('warn 1', file=sys.stderr)\n"
                      "print('warn 2', file=sys.stderr)", session_id)
    assert data["outputs"] == [{"type": "stderr", "data": "warn 1\nwarn 2\n"}]


def test_stdout_and_stderr_text_both_arrive_each_merged(shared: tuple[Wire, str]) -> None:
    tenant, session_id = shared
    data = tenant.run("import sys\nprint('out a')\nprint('err a', file=sys.stderr)\n"
                      "print('out b')\nprint('err b', file=sys.stderr)", session_id)
    # The two streams are buffered apart (as in any Jupyter kernel), so items may come grouped
    # by stream: what is fixed is each stream's text, in order, and nothing else.
    assert {item["type"] for item in data["outputs"]} == {"stdout", "stderr"}
    joined = {kind: "".join(i["data"] for i in data["outputs"] if i["type"] == kind)
              for kind in ("stdout", "stderr")}
    assert joined == {"stdout": "out a\nout b\n", "stderr": "err a\nerr b\n"}


def test_last_expression_value_is_an_execute_result(shared: tuple[Wire, str]) -> None:
    tenant, session_id = shared
    data = tenant.run("print('before')\n6 * 7", session_id)
    assert data["outputs"] == [
        {"type": "stdout", "data": "before\n"},
        {"type": "execute_result", "data": {"text/plain": "42"}},
    ]


@pytest.mark.needs_packages("matplotlib")
def test_plot_shown_is_display_data_with_png_and_text(shared: tuple[Wire, str]) -> None:
    tenant, session_id = shared
    data = tenant.run("import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()",
                      session_id)
    assert [item["type"] for item in data["outputs"]] == ["display_data"]
    bundle = data["outputs"][0]["data"]
    assert {"image/png", "text/plain"} <= set(bundle)
    assert bundle["text/plain"] == "<Figure size 640x480 with 1 Axes>"
    assert base64.b64decode(bundle["image/png"], validate=True).startswith(PNG_SIGNATURE)


def test_display_keeps_its_place_between_stream_writes(shared: tuple[Wire, str]) -> None:
    tenant, session_id = shared
    data = tenant.run("from IPython.display import HTML, display\nprint('before')\n"
                      "display(HTML('<b>bold</b>'))\nprint('after')", session_id)
    assert [item["type"] for item in data["outputs"]] == ["stdout", "display_data", "stdout"]
    assert data["outputs"][0]["data"] == "before\n"
    assert data["outputs"][1]["data"]["text/html"] == "<b>bold</b>"
    assert isinstance(data["outputs"][1]["data"]["text/plain"], str)
    assert data["outputs"][2]["data"] == "after\n"


def test_json_mime_data_is_an_object_not_a_string(shared: tuple[Wire, str]) -> None:
    tenant, session_id = shared
    data = tenant.run("from IPython.display import JSON, display\n"
                      "display(JSON({'name': 'tci', 'sizes': [1, 2]}))", session_id)
    assert [item["type"] for item in data["outputs"]] == ["display_data"]
    assert data["outputs"][0]["data"]["application/json"] == {"name": "tci", "sizes": [1, 2]}


def test_user_exception_is_an_error_item_in_a_success_envelope(
        shared: tuple[Wire, str]) -> None:
    tenant, session_id = shared
    data = tenant.run("print('before')\nraise ValueError('bad thing')", session_id)
    assert [item["type"] for item in data["outputs"]] == ["stdout", "error"]
    assert data["outputs"][0]["data"] == "before\n"
    text = data["outputs"][1]["data"]
    assert "\x1b" not in text, "error text must carry no ANSI escape codes"
    assert text.rstrip("\n").splitlines()[-1] == "ValueError: bad thing"


@pytest.mark.parametrize("code,last_line", [
    ("1 / 0", "ZeroDivisionError: division by zero"),
    ("{}['missing']", "KeyError: 'missing'"),
    ("undefined_name_xyz", "NameError: name 'undefined_name_xyz' is not defined"),
    ("import no_such_module_xyz",
     "ModuleNotFoundError: No module named 'no_such_module_xyz'"),
], ids=["ZeroDivisionError", "KeyError", "NameError", "ModuleNotFoundError"])
def test_error_item_text_ends_with_name_and_message(shared: tuple[Wire, str], code: str,
                                                    last_line: str) -> None:
    tenant, session_id = shared
    outputs = tenant.run(code, session_id)["outputs"]
    assert [item["type"] for item in outputs] == ["error"]
    assert "\x1b" not in outputs[0]["data"]
    assert outputs[0]["data"].rstrip("\n").splitlines()[-1] == last_line


def test_session_keeps_working_after_an_error(wire: Wire) -> None:
    session_id = wire.run("kept = 'still here'\n1 / 0")["session_id"]
    data = wire.run("print(kept)", session_id)
    assert data["session_id"] == session_id
    assert data["outputs"] == [{"type": "stdout", "data": "still here\n"}]
