"""The MCP face, driven by the MCP SDK's own client over both transports.

``http`` is streamable HTTP at the emulator's ``/mcp``; ``stdio`` is ``tci-emulator mcp --url``
launched as a subprocess by the SDK's stdio client and aimed at the same emulator, so one test
checks both through the emulator's usage, faults and journal. ``tci-emulator mcp`` with an
emulator of its own (no ``--url``) has its own test below.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import nbformat
import pytest
import requests
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, ImageContent, Implementation, TextContent

from tci_emulator import Emulator
from tci_emulator.cli import main
from tci_emulator.mcp.server import STDERR_MARK, to_content

from .helpers import Http

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup  # the backport anyio depends on

TRANSPORTS = ("http", "stdio")
AGENT = Implementation(name="test-agent", version="1.2")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _stdio_params(*args: str) -> StdioServerParameters:
    """``python -m tci_emulator mcp ARGS``, importing this checkout (the SDK's stdio client
    passes only a minimal environment on)."""
    return StdioServerParameters(command=sys.executable, args=["-m", "tci_emulator", "mcp", *args],
                                 env={"PYTHONPATH": os.environ.get("PYTHONPATH", "")})


@asynccontextmanager
async def connect(transport: str, emulator: Emulator, key: str | None = None,
                  headers: dict[str, str] | None = None) -> AsyncIterator[Client]:
    """An MCP client session with the emulator, as ``key`` (the emulator's test key by default)."""
    key = key or emulator.api_key
    if transport == "stdio":
        async with Client(_stdio_params("--url", emulator.url, "--api-key", key),
                          client_info=AGENT) as client:
            yield client
        return
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}", **(headers or {})},
                                  timeout=120) as http:
        async with Client(streamable_http_client(emulator.mcp_url, http_client=http),
                          client_info=AGENT) as client:
            yield client


def run(transport: str, emulator: Emulator, scenario: Callable[[Client], Awaitable[Any]],
        **kw: Any) -> Any:
    """Run ``scenario(client)`` in a fresh MCP client session; returns what it returns."""
    async def main_() -> Any:
        async with connect(transport, emulator, **kw) as client:
            return await scenario(client)

    return anyio.run(main_)


def failure_of(call: Callable[[], Any]) -> str:
    """What ``call`` raised, through the exception groups of the client's task groups."""
    def leaves(exc: BaseException) -> str:
        if isinstance(exc, BaseExceptionGroup):
            return " | ".join(leaves(e) for e in exc.exceptions)
        return f"{type(exc).__name__}: {exc}"

    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the test inspects whatever it was
        return leaves(exc)
    raise AssertionError("expected the call to fail")


def texts(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_tools_are_listed_with_schemas_for_a_model(transport: str, tci_emulator: Emulator) -> None:
    async def scenario(client: Client) -> Any:
        return (await client.list_tools()).tools

    tools = {tool.name: tool for tool in run(transport, tci_emulator, scenario)}
    assert set(tools) == {"execute", "list_sessions"}
    execute = tools["execute"]
    schema = execute.input_schema
    assert schema["required"] == ["code"]
    assert set(schema["properties"]) == {"code", "session_id", "files"}
    upload = schema["$defs"]["FileUpload"]
    assert upload["properties"]["encoding"]["enum"] == ["string", "base64"]
    assert set(upload["required"]) == {"name", "encoding", "content"}
    assert execute.output_schema is not None
    assert set(execute.output_schema["required"]) == {"session_id", "status", "outputs"}
    assert execute.description is not None and "$0.03" in execute.description
    assert "session_id" in execute.description
    assert tools["list_sessions"].annotations is not None
    assert tools["list_sessions"].annotations.read_only_hint is True


def test_state_is_kept_across_calls_with_the_returned_session_id(
        transport: str, tci_emulator: Emulator) -> None:
    async def scenario(client: Client) -> tuple[CallToolResult, CallToolResult, Any]:
        first = await client.call_tool("execute", {"code": "x = 41"})
        sid = first.structured_content["session_id"]  # type: ignore[index]
        second = await client.call_tool("execute", {"code": "print(x + 1)", "session_id": sid})
        listed = await client.call_tool("list_sessions", {})
        return first, second, listed

    first, second, listed = run(transport, tci_emulator, scenario)
    assert not first.is_error and not second.is_error
    sid = first.structured_content["session_id"]
    assert second.structured_content == {"session_id": sid, "status": "success",
                                         "outputs": [{"type": "stdout", "data": "42\n"}]}
    assert second.content[0] == TextContent(text="42\n")
    assert f"[session_id: {sid}]" in texts(second)
    assert [s["id"] for s in listed.structured_content["sessions"]] == [sid]
    # Two API calls for the ledger: one session, two executions, one charge.
    assert tci_emulator.usage()["total"] == {"sessions": 1, "executions": 2, "cost_usd": 0.03}


def test_a_plot_comes_back_as_an_image_block_that_decodes_to_a_png(
        transport: str, tci_emulator: Emulator) -> None:
    code = ("import matplotlib\nmatplotlib.use('agg')\nimport matplotlib.pyplot as plt\n"
            "%matplotlib inline\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()")

    async def scenario(client: Client) -> CallToolResult:
        return await client.call_tool("execute", {"code": code})

    result = run(transport, tci_emulator, scenario)
    assert not result.is_error, texts(result)
    images = [block for block in result.content if isinstance(block, ImageContent)]
    assert len(images) == 1 and images[0].mime_type == "image/png"
    assert base64.b64decode(images[0].data).startswith(PNG_MAGIC)
    # The figure's text/plain placeholder is not repeated as text next to the image.
    assert "<Figure" not in texts(result)


def test_an_exception_is_a_tool_error_carrying_the_traceback(
        transport: str, tci_emulator: Emulator) -> None:
    async def scenario(client: Client) -> CallToolResult:
        return await client.call_tool("execute", {"code": "print('before')\n1/0"})

    result = run(transport, tci_emulator, scenario)
    assert result.is_error
    assert result.content[0] == TextContent(text="before\n")
    assert "ZeroDivisionError: division by zero" in texts(result)
    assert result.structured_content is not None
    assert [o["type"] for o in result.structured_content["outputs"]] == ["stdout", "error"]


@pytest.mark.tci_emulator(budget_usd="0.03")
def test_a_budget_of_one_session_makes_the_second_new_session_a_tool_error(
        transport: str, tci_emulator: Emulator) -> None:
    async def scenario(client: Client) -> tuple[CallToolResult, CallToolResult, CallToolResult]:
        first = await client.call_tool("execute", {"code": "y = 'kept'"})
        refused = await client.call_tool("execute", {"code": "print('never-printed')"})
        sid = first.structured_content["session_id"]  # type: ignore[index]
        again = await client.call_tool("execute", {"code": "print(y)", "session_id": sid})
        return first, refused, again

    first, refused, again = run(transport, tci_emulator, scenario)
    assert not first.is_error
    assert refused.is_error
    assert "402 budget_exceeded" in texts(refused) and "budget of $0.03" in texts(refused)
    assert "never-printed" not in texts(refused)  # the code never ran
    assert not again.is_error and again.content[0] == TextContent(text="kept\n")
    assert tci_emulator.usage()["total"] == {"sessions": 1, "executions": 2, "cost_usd": 0.03}


def test_a_503_fault_rule_surfaces_as_a_tool_error_and_is_not_retried(
        transport: str, tci_emulator: Emulator) -> None:
    (rule,) = tci_emulator.faults.add({"operation": "execute", "action": "http_error",
                                       "status": 503, "times": 1})

    async def scenario(client: Client) -> tuple[CallToolResult, CallToolResult]:
        return (await client.call_tool("execute", {"code": "print(1)"}),
                await client.call_tool("execute", {"code": "print(2)"}))

    failed, served = run(transport, tci_emulator, scenario)
    assert failed.is_error and "HTTP 503" in texts(failed) and "retried" in texts(failed)
    assert not served.is_error and served.content[0] == TextContent(text="2\n")
    executes = [e for e in tci_emulator.requests() if e["path"] == "/v1/tci/execute"]
    assert [(e["status"], e["fault"]) for e in executes] == [(503, rule["id"]), (200, None)]


def test_the_journal_names_the_mcp_client(transport: str, tci_emulator: Emulator) -> None:
    async def scenario(client: Client) -> CallToolResult:
        return await client.call_tool("execute", {"code": "1"})

    run(transport, tci_emulator, scenario)
    (entry,) = [e for e in tci_emulator.requests() if e["path"] == "/v1/tci/execute"]
    assert entry["status"] == 200
    assert entry["sdk"]["user_agent"].startswith("tci-emulator-mcp/")
    assert "test-agent/1.2" in entry["sdk"]["user_agent"]


def test_the_transcript_resource_reads_back_as_a_valid_notebook(
        transport: str, tci_emulator: Emulator) -> None:
    async def scenario(client: Client) -> tuple[str, Any, Any]:
        first = await client.call_tool("execute", {"code": "z = 2"})
        sid = first.structured_content["session_id"]  # type: ignore[index]
        await client.call_tool("execute", {"code": "print(z * 21)", "session_id": sid})
        templates = (await client.list_resource_templates()).resource_templates
        return sid, templates, await client.read_resource(f"tci://sessions/{sid}/notebook")

    sid, templates, read = run(transport, tci_emulator, scenario)
    assert [t.uri_template for t in templates] == ["tci://sessions/{session_id}/notebook"]
    (contents,) = read.contents
    assert contents.mime_type == "application/x-ipynb+json"
    notebook = nbformat.reads(contents.text, as_version=4)
    nbformat.validate(notebook)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.source for cell in code_cells] == ["z = 2", "print(z * 21)"]
    assert code_cells[1].outputs[0]["text"] == "42\n"
    assert notebook.metadata["tci_emulator"]["session_id"] == sid


def test_another_keys_transcript_is_not_found(transport: str, tci_emulator: Emulator) -> None:
    async def create(client: Client) -> str:
        result = await client.call_tool("execute", {"code": "secret = 1"})
        return str(result.structured_content["session_id"])  # type: ignore[index]

    async def peek(client: Client) -> None:
        await client.read_resource(f"tci://sessions/{sid}/notebook")

    sid = run(transport, tci_emulator, create)
    refused = failure_of(lambda: run(transport, tci_emulator, peek, key="someone-else"))
    assert f"MCPError: No session {sid} of yours is known." in refused


def test_usage_resource_shows_the_callers_own_usage(transport: str, tci_emulator: Emulator,
                                                    http: Http) -> None:
    http.run("1")  # another key's session, not the agent's

    async def scenario(client: Client) -> Any:
        await client.call_tool("execute", {"code": "1"})
        return await client.read_resource("tci://usage")

    (contents,) = run(transport, tci_emulator, scenario, key="agent-key").contents
    usage = json.loads(contents.text)
    assert (usage["sessions"], usage["executions"], usage["cost_usd"]) == (1, 1, 0.03)
    assert usage["price_per_session_usd"] == 0.03 and usage["budget_left_usd"] is None
    assert len(usage["session_rows"]) == 1


@pytest.mark.tci_emulator(admin=False, pool_size=0)
def test_resources_say_so_when_the_control_plane_is_off(tci_emulator: Emulator) -> None:
    async def scenario(client: Client) -> Any:
        return await client.read_resource("tci://usage")

    refused = failure_of(lambda: run("http", tci_emulator, scenario))
    assert "control plane refused the read" in refused and "--no-admin" in refused, refused


@pytest.mark.parametrize("rule, expected", [
    ({"action": "http_error", "status": 429, "headers": {"Retry-After": "7"}},
     "HTTP 429 rate_limited"),
    ({"action": "reset_connection"}, "closed the connection without an answer"),
    ({"action": "malformed_body", "mode": "not_json"}, "not valid JSON"),
])
def test_other_faults_are_tool_errors_that_say_what_happened(
        rule: dict[str, Any], expected: str, tci_emulator: Emulator) -> None:
    tci_emulator.faults.add({"operation": "execute", "times": 1, **rule})

    async def scenario(client: Client) -> tuple[CallToolResult, CallToolResult]:
        return (await client.call_tool("execute", {"code": "print(1)"}),
                await client.call_tool("execute", {"code": "print(2)"}))

    failed, served = run("http", tci_emulator, scenario)
    assert failed.is_error and expected in texts(failed), texts(failed)
    assert not served.is_error  # the server and the MCP face are still serving


# -- the HTTP door ----------------------------------------------------------------------------


def _initialize_body() -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}}


def _raw_post(emulator: Emulator, headers: dict[str, str]) -> requests.Response:
    return requests.post(emulator.mcp_url, json=_initialize_body(), timeout=60, headers={
        "Accept": "application/json, text/event-stream", **headers})


@pytest.mark.tci_emulator(api_keys=("right-key",))
def test_a_wrong_key_is_refused_over_http(tci_emulator: Emulator) -> None:
    async def scenario(client: Client) -> Any:
        return await client.list_tools()

    refused = failure_of(lambda: run("http", tci_emulator, scenario, key="wrong-key"))
    assert "MCPError: Invalid API key provided" in refused, refused
    for headers in ({"Authorization": "Bearer wrong-key"}, {}):
        response = _raw_post(tci_emulator, headers)
        assert response.status_code == 401
        assert response.json()["error"]["data"]["code"] == "invalid_api_key"
    assert run("http", tci_emulator, scenario, key="right-key").tools  # the right key works


def test_a_foreign_origin_is_refused_over_http(tci_emulator: Emulator) -> None:
    async def scenario(client: Client) -> Any:
        return await client.list_tools()

    refused = failure_of(lambda: run("http", tci_emulator, scenario,
                                     headers={"Origin": "http://evil.example"}))
    assert "MCPError" in refused, refused
    # The server's front door refuses both before the MCP app sees them, as on every route.
    auth = {"Authorization": f"Bearer {tci_emulator.api_key}"}
    response = _raw_post(tci_emulator, {**auth, "Origin": "http://evil.example"})
    assert response.status_code == 403
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "cross_origin_refused"
    rebinding = _raw_post(tci_emulator, {**auth, "Host": "evil.example"})
    assert rebinding.status_code == 403
    assert rebinding.json()["error"]["code"] == "host_not_allowed"
    own_origin = f"http://127.0.0.1:{tci_emulator.server.port}"
    local = _raw_post(tci_emulator, {**auth, "Origin": own_origin})
    assert local.status_code == 200, local.text


@pytest.mark.tci_emulator(max_request_bytes=1000, pool_size=0)
def test_the_http_door_answers_json_rpc_errors_for_what_it_does_not_serve(
        tci_emulator: Emulator) -> None:
    url, auth = tci_emulator.mcp_url, {"Authorization": f"Bearer {tci_emulator.api_key}"}
    listen = requests.get(url, headers={**auth, "Accept": "text/event-stream"}, timeout=60)
    assert listen.status_code == 405 and listen.headers["Allow"] == "POST"  # never a held stream
    cases = [
        (requests.delete(url, headers=auth, timeout=60), 405, "method_not_allowed"),
        (requests.post(url, data=b"{}", timeout=60, headers={**auth, "Content-Type": "text/plain"}),
         400, "invalid_request"),
    ]
    for response, status, code in [(listen, 405, "method_not_allowed"), *cases]:
        assert response.status_code == status
        body = response.json()
        assert body["jsonrpc"] == "2.0" and body["error"]["data"]["code"] == code, body
    # A body over --max-request-bytes is refused by the HTTP server before any app reads it.
    oversized = requests.post(url, data=b"[" + b"1," * 1000 + b"1]", timeout=60,
                              headers={**auth, "Content-Type": "application/json"})
    assert oversized.status_code == 413
    assert oversized.json()["error"]["code"] == "payload_too_large"
    garbled = requests.post(url, data=b"{nope", timeout=60,
                            headers={**auth, "Content-Type": "application/json"})
    assert garbled.status_code == 400 and garbled.json()["error"]["code"] == -32700
    assert requests.get(tci_emulator.url + "/_emulator/health", timeout=60).ok


@pytest.mark.tci_emulator(mcp=False)
def test_no_mcp_switches_the_http_face_off(tci_emulator: Emulator) -> None:
    response = _raw_post(tci_emulator, {"Authorization": f"Bearer {tci_emulator.api_key}"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


# -- tci-emulator mcp with an emulator of its own ----------------------------------------------


def test_mcp_command_runs_an_emulator_of_its_own_with_the_serve_settings() -> None:
    async def scenario() -> tuple[CallToolResult, CallToolResult, Any]:
        params = _stdio_params("--pool-size", "1", "--budget-usd", "0.03", "--no-access-log")
        async with Client(params, client_info=AGENT) as client:
            first = await client.call_tool("execute", {"code": "import os\nprint(os.getpid())"})
            refused = await client.call_tool("execute", {"code": "1"})
            return first, refused, await client.read_resource("tci://usage")

    first, refused, usage = anyio.run(scenario)
    assert not first.is_error and int(texts(first).split()[0]) > 0
    assert refused.is_error and "budget" in texts(refused)
    assert json.loads(usage.contents[0].text)["budget_usd"] == 0.03


def test_session_output_on_the_kernels_file_descriptors_never_reaches_the_wire() -> None:
    """Session code writing forged JSON-RPC answers straight to fd 1 (which the kernel's
    output capture echoes to the stream it inherited) cannot answer for the server: the
    client gets the real result, with the forgery only as the session's own stdout."""
    forged = ('{"jsonrpc": "2.0", "id": %d, "result": {"content": '
              '[{"type": "text", "text": "forged"}]}}\n')
    code = (f"import os\nfor i in range(40):\n    os.write(1, ({forged!r} % i).encode())\n"
            "print('ok')")

    async def scenario() -> CallToolResult:
        async with Client(_stdio_params("--pool-size", "0", "--no-access-log")) as client:
            result = await client.call_tool("execute", {"code": code})
            await client.list_tools()  # the session is still in step after it
            return result

    result = anyio.run(scenario)
    assert not result.is_error and result.structured_content is not None, result
    stdout = "".join(o["data"] for o in result.structured_content["outputs"]
                     if o["type"] == "stdout")
    # The kernel echoes what reaches fd 1 from a reader thread, so the forged lines and print's
    # "ok" and "\n" may arrive interleaved: all 40 are there, and nothing else but "ok\n".
    assert stdout.count('"forged"') == 40
    assert re.sub(r'\{"jsonrpc": .*?"forged"\}\]\}\}\n', "", stdout) == "ok\n"


@pytest.mark.parametrize("args, code, said", [
    (["--pool-size", "1"], 0, "MCP over stdio; the emulator serves http://127.0.0.1:"),
    (["--faults", '{"action": "nope"}'], 2, "cannot start the emulator: fault rules"),
])
def test_mcp_command_stops_when_the_client_hangs_up_or_says_why_it_cannot_start(
        args: list[str], code: int, said: str) -> None:
    params = _stdio_params(*args)
    done = subprocess.run([params.command, *params.args], env={**os.environ, **(params.env or {})},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert done.returncode == code, done.stderr
    assert said in done.stderr
    assert done.stdout == ""  # nothing but protocol messages may reach standard output


def test_mcp_with_url_refuses_settings_of_the_running_emulator(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mcp", "--url", "http://127.0.0.1:9", "--budget-usd", "1"]) == 2
    assert "drop --budget-usd" in capsys.readouterr().err


def test_to_content_marks_stderr_and_keeps_other_mime_types_structured_only() -> None:
    blocks, failed = to_content([
        {"type": "stderr", "data": "careful\n"},
        {"type": "display_data", "data": {"text/html": "<b>x</b>", "text/plain": "x"}},
        {"type": "execute_result", "data": {"application/json": {"a": 1}}},
        {"type": "display_data", "data": {"image/png": "<script>not base64", "text/plain": "y"}},
    ])
    assert not failed
    assert blocks == [TextContent(text=STDERR_MARK + "careful\n"), TextContent(text="x"),
                      TextContent(text="[an image/png output was left out: its data is not "
                                       "base64]")]
