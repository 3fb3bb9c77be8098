"""Kernel messages to TCI output items, without a kernel."""

from __future__ import annotations

from typing import Any

from tci_emulator.outputs import TRUNCATION_MARKER, OutputCollector, error_text, strip_ansi


def msg(msg_type: str, **content: Any) -> dict[str, Any]:
    return {"header": {"msg_type": msg_type}, "content": content}


def collect(*messages: dict[str, Any], cap: int | None = None) -> list[dict[str, Any]]:
    collector = OutputCollector(cap)
    for message in messages:
        collector.add_message(message)
    return collector.outputs


def test_consecutive_stream_chunks_merge_per_stream() -> None:
    assert collect(msg("stream", name="stdout", text="a\n"),
                   msg("stream", name="stdout", text="b\n"),
                   msg("stream", name="stderr", text="warn\n"),
                   msg("stream", name="stdout", text="c\n")) == [
        {"type": "stdout", "data": "a\nb\n"}, {"type": "stderr", "data": "warn\n"},
        {"type": "stdout", "data": "c\n"}]


def test_display_items_keep_their_place_between_streams() -> None:
    bundle = {"image/png": "iVBOR", "text/plain": "<Figure>"}
    assert collect(msg("stream", name="stdout", text="x\n"), msg("display_data", data=bundle),
                   msg("execute_result", data={"text/plain": "1"}, execution_count=1)) == [
        {"type": "stdout", "data": "x\n"}, {"type": "display_data", "data": bundle},
        {"type": "execute_result", "data": {"text/plain": "1"}}]


def test_error_is_plain_text_ending_with_name_and_message() -> None:
    traceback = ["\x1b[0;31m---------\x1b[0m", "\x1b[1;32mCell In[1], line 1\x1b[0m",
                 "\x1b[0;31mValueError\x1b[0m: bad"]
    [item] = collect(msg("error", ename="ValueError", evalue="bad", traceback=traceback))
    assert item == {"type": "error", "data": "---------\nCell In[1], line 1\nValueError: bad"}
    assert error_text("KeyError", "'k'", []) == "KeyError: 'k'"
    assert error_text("SystemExit", "", None) == "SystemExit"


def test_pseudo_terminal_line_ends_are_kept_as_recorded() -> None:
    assert collect(msg("stream", name="stdout", text="a\r\nb\r\n")) == [
        {"type": "stdout", "data": "a\r\nb\r\n"}]


def test_clear_output_drops_earlier_outputs_now_or_at_next_output() -> None:
    assert collect(msg("stream", name="stdout", text="old"), msg("clear_output", wait=False),
                   msg("stream", name="stdout", text="new")) == [{"type": "stdout", "data": "new"}]
    assert collect(msg("stream", name="stdout", text="old"), msg("clear_output", wait=True)) == [
        {"type": "stdout", "data": "old"}]
    assert collect(msg("stream", name="stdout", text="old"), msg("clear_output", wait=True),
                   msg("display_data", data={"text/plain": "n"})) == [
        {"type": "display_data", "data": {"text/plain": "n"}}]


def test_output_past_the_cap_is_dropped_with_one_marker() -> None:
    items = collect(*(msg("stream", name="stdout", text="x" * 40) for _ in range(10)),
                    msg("display_data", data={"text/plain": "y" * 50}),
                    msg("error", ename="E", evalue="kept", traceback=[]), cap=100)
    marker = TRUNCATION_MARKER.format(limit=100)
    assert items == [{"type": "stdout", "data": "x" * 100 + marker},
                     {"type": "error", "data": "E: kept"}]


def test_irrelevant_messages_are_ignored() -> None:
    assert collect(msg("status", execution_state="busy"), msg("execute_input", code="1"),
                   msg("stream", name="stdout", text="")) == []


def test_strip_ansi_handles_cursor_and_osc_sequences() -> None:
    assert strip_ansi("\x1b[2K\x1b[1Ghello\x1b]0;title\x07!") == "hello!"


def test_a_huge_error_is_held_to_the_cap_keeping_its_end() -> None:
    [item] = collect(msg("error", ename="ValueError", evalue="x" * 10_000 + " END",
                         traceback=[]), cap=100)
    assert item["type"] == "error" and len(item["data"]) < 200
    assert item["data"].startswith("ValueError: xxx") and item["data"].endswith("x END")
