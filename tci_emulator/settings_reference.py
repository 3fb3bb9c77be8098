"""The settings reference, ``docs/settings.md``, written from :class:`~tci_emulator.config.Config`.

The page is generated, not written by hand, so it cannot disagree with the flags, variables and
pytest options it lists: they all come from the same field metadata. ``make docs`` rewrites it;
a test fails while the committed page differs from what this module renders.

    python -m tci_emulator.settings_reference            # print the page
    python -m tci_emulator.settings_reference --write docs/settings.md
    python -m tci_emulator.settings_reference --check docs/settings.md   # exit 1 when stale
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from .config import (
    ENV_PREFIX,
    TOOL_VARIABLES,
    Config,
    env_names,
    flag_name,
    plugin_default,
    plugin_fields,
)

__all__ = ["default_text", "main", "render"]

_INTRO = f"""\
# Settings

<!-- Generated from tci_emulator/config.py by `make docs`; edit the fields there, not this page. -->

Every setting of the emulator is one field of `tci_emulator.Config`. Each can be given as:

- a flag of `tci-emulator serve` (and `tci-emulator mcp`), e.g. `--session-lifespan 1800`;
- an environment variable, `{ENV_PREFIX}` plus the flag's name in capitals, e.g.
  `{ENV_PREFIX}SESSION_LIFESPAN=1800` (on/off settings take `1/0`, `true/false`, `yes/no`,
  `on/off`; repeatable ones a comma-separated list);
- under the pytest plugin, an option `--tci-` plus the flag's name, or an ini value `tci_` plus
  the flag's name with underscores (`--tci-session-lifespan 1800`, `tci_session_lifespan = 1800`),
  or a keyword of `@pytest.mark.tci_emulator(...)` (the field name) for one test;
- a keyword of `tci_emulator.Emulator(...)` or a field of `Config(...)` in Python.

Precedence: a flag, then the variable, then the default (under pytest: the marker, then the
option, then the ini value, then the default; the plugin reads no `{ENV_PREFIX}*` variable).
An unknown `{ENV_PREFIX}*` variable stops the start, naming the closest real one; so does a value
that does not parse or would break the emulator (a zero interval, a negative timeout), naming the
setting. Keys and tokens appear in the start-up banner only as fingerprints.

The pytest column is empty for the settings the plugin does not offer: its emulator always listens
on 127.0.0.1 and a free port. Where the plugin's default differs from the server's, the column
says so (an in-process emulator is quiet, and one warm kernel is enough for a test process).

"""

_OUTRO = f"""
Variables read by the command-line tools rather than the server, and so accepted by the
unknown-variable check: {", ".join(f"`{name}`" for name in TOOL_VARIABLES)} (the server URL
that `tci-emulator wait` and `tci-emulator transcript` talk to; the file `serve --ready-file`
writes).

The pytest plugin has one option of its own, not an emulator setting: `--tci-transcripts-dir DIR`,
where a failed test's session transcripts are written ([testing.md](testing.md)).
"""


def default_text(value: Any) -> str:
    """A default as a user would type it (``none``, ``on``/``off``, ``3600``), for the page and
    the pytest plugin's help."""
    if value is None or value == ():
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (int, Decimal, str, Path)):
        return str(value)
    return repr(value)


def _flag(f: dataclasses.Field[Any]) -> str:
    if isinstance(f.default, bool):  # an on/off setting
        return f"`{flag_name(f)}`, `--no-{flag_name(f)[2:]}`"
    return f"`{flag_name(f)} {f.metadata['metavar'] or 'VALUE'}`"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|")


def render() -> str:
    """The whole page, as ``docs/settings.md`` holds it."""
    offered = plugin_fields()
    rows = ["| flag | environment variable | pytest option / ini | default | what it does |",
            "|---|---|---|---|---|"]
    for f in dataclasses.fields(Config):
        main, *aliases = env_names(f)
        variable = f"`{main}`" + "".join(f" (or `{alias}`)" for alias in aliases)
        pytest = ""
        if f in offered:
            name = flag_name(f)[2:]
            pytest = f"`--tci-{name}`, `tci_{name.replace('-', '_')}`"
            if plugin_default(f) != f.default:
                pytest += f" (default {default_text(plugin_default(f))})"
        rows.append(f"| {_flag(f)} | {variable} | {pytest} | {default_text(f.default)} | "
                    f"{_cell(f.metadata['help'])} |")
    return _INTRO + "\n".join(rows) + "\n" + _OUTRO


def main(argv: Sequence[str] | None = None) -> int:
    """Print the page, write it (``--write``), or check a file against it (``--check``)."""
    parser = argparse.ArgumentParser(prog="python -m tci_emulator.settings_reference",
                                     description="The settings reference, from Config.")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", type=Path, metavar="FILE", help="Write the page to FILE.")
    action.add_argument("--check", type=Path, metavar="FILE",
                        help="Exit 1 when FILE differs from the page (it is stale).")
    args = parser.parse_args(argv)
    page = render()
    if args.write is not None:
        args.write.write_text(page, encoding="utf-8")
    elif args.check is not None:
        current = args.check.read_text(encoding="utf-8") if args.check.is_file() else None
        if current != page:
            print(f"{args.check} is stale: run `make docs` (python -m "
                  f"tci_emulator.settings_reference --write {args.check})", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
