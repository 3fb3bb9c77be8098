"""TCI output items as notebook outputs: pure translation, no kernel and no server (the whole
transcripts, recorded by a running emulator, are in ``test_transcripts.py``)."""

from __future__ import annotations

from tci_emulator.notebooks import nb_outputs, split_error


def test_error_items_become_error_outputs_named_by_their_last_line() -> None:
    assert split_error("Traceback...\nKeyError: 'k'") == \
        ("KeyError", "'k'", ["Traceback...", "KeyError: 'k'"])
    assert split_error("KeyboardInterrupt")[:2] == ("KeyboardInterrupt", "")
    assert split_error("something odd happened")[:2] == ("Error", "something odd happened")
    chained = "Traceback\nKeyError: 'a'\n\nDuring handling\nValueError: 2\nmore lines"
    assert split_error(chained)[:2] == ("ValueError", "2\nmore lines")
    outputs = nb_outputs([{"type": "stdout", "data": "a"}, {"type": "stderr", "data": "b"},
                          {"type": "display_data", "data": {"text/html": "<b>"}},
                          {"type": "execute_result", "data": {"text/plain": "1"}},
                          {"type": "error", "data": "ExecutionTimeout: too slow"}], 7)
    assert [o.output_type for o in outputs] == \
        ["stream", "stream", "display_data", "execute_result", "error"]
    assert (outputs[3].execution_count, outputs[4].ename, outputs[4].evalue) == \
        (7, "ExecutionTimeout", "too slow")
