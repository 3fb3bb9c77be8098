"""The emulator's configuration: one frozen object that defaults, CLI flags and environment
variables all land in.

Every setting is declared once, as a dataclass field whose metadata gives its flag help; the CLI
flag (``--session-lifespan``) and the environment variable (``TCI_EMULATOR_SESSION_LIFESPAN``)
are derived from the field name, so the three sources cannot drift apart. Precedence: explicit
CLI flag, then environment, then default.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Mapping

__all__ = ["Config", "ENV_PREFIX", "add_arguments", "config_from"]

ENV_PREFIX = "TCI_EMULATOR_"


def _setting(default: Any, help: str, *, metavar: str | None = None) -> Any:
    return field(default=default, metadata={"help": help, "metavar": metavar})


@dataclass(frozen=True)
class Config:
    """All settings of one emulator. Immutable: build a new one with ``dataclasses.replace``."""

    host: str = _setting("127.0.0.1", "Interface to bind. Non-loopback needs --allow-remote and --api-key.")
    port: int = _setting(8787, "Port to bind; 0 picks a free one.")
    api_keys: tuple[str, ...] = _setting(
        (), "Accept only these bearer keys (repeatable; comma-separated in the environment). "
        "Default: any non-empty key, each its own tenant.", metavar="KEY")
    allow_remote: bool = _setting(False, "Allow binding a non-loopback --host.")
    session_lifespan: float = _setting(
        3600.0, "Seconds a session lives from creation (1800 reproduces the observed service).",
        metavar="SECONDS")
    price_per_session: Decimal = _setting(Decimal("0.03"), "USD charged when a session is created.",
                                          metavar="USD")
    budget_usd: Decimal | None = _setting(None, "Refuse new sessions (402) beyond this spend per key.",
                                          metavar="USD")
    state_dir: Path | None = _setting(None, "Keep the ledger and transcripts in this directory.",
                                      metavar="DIR")
    pool_size: int = _setting(2, "Kernels kept warm ahead of new sessions.", metavar="N")
    preload: tuple[str, ...] = _setting((), "Modules imported into pooled kernels ahead of time "
                                        "(repeatable; comma-separated in the environment).",
                                        metavar="MODULE")
    kernel_name: str = _setting("python3", "Jupyter kernel spec (and so provisioner) for sessions.",
                                metavar="NAME")
    kernel_start_timeout: float = _setting(60.0, "Seconds a kernel may take to become ready.",
                                           metavar="SECONDS")
    execution_timeout: float = _setting(120.0, "Seconds one execution may run before it is "
                                        "interrupted.", metavar="SECONDS")
    interrupt_grace: float = _setting(3.0, "Seconds an interrupted kernel has to stop before it "
                                      "is restarted.", metavar="SECONDS")
    kernel_memory_mb: int | None = _setting(
        None, "Resident-memory cap per kernel (and its children) in MiB; a kernel over it is "
        "killed.", metavar="MB")
    max_request_bytes: int = _setting(64 * 1024 * 1024, "Largest request body (413 beyond).",
                                      metavar="BYTES")
    max_code_bytes: int = _setting(4 * 1024 * 1024, "Largest 'code' in UTF-8 bytes (413 beyond).",
                                   metavar="BYTES")
    max_files: int = _setting(100, "Most files in one request (400 beyond).", metavar="N")
    max_files_bytes: int = _setting(48 * 1024 * 1024, "Largest total decoded size of one "
                                    "request's files (413 beyond).", metavar="BYTES")
    max_output_bytes: int = _setting(8 * 1024 * 1024, "Output kept per execution; the rest is "
                                     "dropped with a visible marker.", metavar="BYTES")
    max_sessions: int = _setting(64, "Most live sessions in all (429 beyond).", metavar="N")
    max_sessions_per_key: int | None = _setting(None, "Most live sessions per key (429 beyond).",
                                                metavar="N")
    spec_errors: bool = _setting(False, "Answer failures as the SPEC's literal HTTP 200 "
                                 "{'data': null, 'errors': [...]} instead of 4xx/5xx.")
    admin: bool = _setting(True, "Serve the /_emulator control plane (--no-admin switches it off).")
    admin_token: str | None = _setting(None, "Require 'Authorization: Bearer TOKEN' on the "
                                       "control plane.", metavar="TOKEN")
    faults: str | None = _setting(None, "Fault rules loaded at start-up: a JSON file, or inline "
                                  "JSON text starting with '[' or '{'.",
                                   metavar="FILE")
    reap_interval: float = _setting(1.0, "Seconds between sweeps for expired sessions.",
                                    metavar="SECONDS")
    access_log: bool = _setting(True, "Log one line per request (--no-access-log to silence).")
    sandbox: str = _setting(
        "auto", "Isolation of session kernels: 'namespaces' (bubblewrap; refuse to start "
        "without it), 'auto' (namespaces where bwrap works, else off with a warning) or 'off'.",
        metavar="auto|namespaces|off")
    session_network: str = _setting(
        "host", "Network of session kernels: 'host' (the machine's, so pip install works) or "
        "'none' (no socket reaches anything, the emulator included; needs the sandbox).",
        metavar="host|none")
    kernel_launcher: str = _setting(
        "fork", "How session kernels start: 'fork' (from a template process that imported "
        "ipykernel once; Linux, default kernel spec) or 'spawn' (a new process per kernel, "
        "through the kernel spec and its provisioner). 'fork' falls back to 'spawn' where it "
        "cannot work; health says which is in force.", metavar="fork|spawn")

    def __post_init__(self) -> None:
        """Refuse values that would break the emulator later (a zero reap interval spins a
        core; a negative timeout never runs code), naming the setting."""
        positive = ("session_lifespan", "kernel_start_timeout", "execution_timeout",
                    "reap_interval", "max_request_bytes", "max_code_bytes", "max_files_bytes",
                    "max_output_bytes", "max_sessions", "max_sessions_per_key", "kernel_memory_mb")
        for name in positive:
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 (got {value!r})")
        for name in ("pool_size", "interrupt_grace", "max_files", "price_per_session"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (got {getattr(self, name)!r})")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0-65535 (got {self.port})")
        for name, choices in (("sandbox", ("auto", "namespaces", "off")),
                              ("session_network", ("host", "none")),
                              ("kernel_launcher", ("fork", "spawn"))):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)} "
                                 f"(got {getattr(self, name)!r})")


def _flag(name: str) -> str:
    return "--" + {"api_keys": "api-key", "faults": "faults"}.get(name, name.replace("_", "-"))


def _base_type(annotation: Any) -> Any:
    """The non-None type of an annotation such as ``int | None`` or ``tuple[str, ...]``."""
    hint = typing.get_type_hints(Config)[annotation] if isinstance(annotation, str) else annotation
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint


def _converter(kind: Any) -> Callable[[str], Any]:
    if kind is Decimal:
        def to_decimal(text: str) -> Decimal:
            try:
                return Decimal(text)
            except InvalidOperation:
                raise ValueError(f"not a number: {text!r}") from None
        return to_decimal
    if kind is bool:
        def to_bool(text: str) -> bool:
            lowered = text.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(f"not a boolean: {text!r}")
        return to_bool
    converter: Callable[[str], Any] = kind  # int, float, str, Path
    return converter


def _fields() -> list[tuple[dataclasses.Field[Any], Any]]:
    hints = typing.get_type_hints(Config)
    return [(f, _base_type(hints[f.name])) for f in dataclasses.fields(Config)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting; unset flags stay ``None`` so the environment can fill them."""
    group = parser.add_argument_group("emulator settings (each also TCI_EMULATOR_<NAME>)")
    for f, kind in _fields():
        help_text = f"{f.metadata['help']} [env {ENV_PREFIX}{f.name.upper()}; default {f.default!r}]"
        if kind is bool:
            group.add_argument(_flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction,
                               default=None, help=help_text)
        elif typing.get_origin(kind) is tuple:
            group.add_argument(_flag(f.name), dest=f.name, action="append", default=None,
                               metavar=f.metadata["metavar"], help=help_text)
        else:
            group.add_argument(_flag(f.name), dest=f.name, type=_converter(kind), default=None,
                               metavar=f.metadata["metavar"], help=help_text)


def _split(items: list[str]) -> tuple[str, ...]:
    """Values of a repeatable setting: each flag or variable may hold a comma-separated list."""
    return tuple(part.strip() for item in items for part in item.split(",") if part.strip())


def config_from(
    args: argparse.Namespace | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Config:
    """Build a :class:`Config` from parsed flags, then ``TCI_EMULATOR_*`` variables, then defaults.

    ``overrides`` win over everything (used by the Python handle and the pytest plugin).
    Raises ``ValueError`` naming the variable when an environment value does not parse.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f, kind in _fields():
        flag_value = getattr(args, f.name, None) if args is not None else None
        env_text = env.get(ENV_PREFIX + f.name.upper())
        if flag_value is not None:
            values[f.name] = (_split(flag_value) if typing.get_origin(kind) is tuple
                              else flag_value)
        elif env_text is not None and env_text != "":
            try:
                if typing.get_origin(kind) is tuple:
                    values[f.name] = _split([env_text])
                else:
                    values[f.name] = _converter(kind)(env_text)
            except ValueError as exc:
                raise ValueError(f"{ENV_PREFIX}{f.name.upper()}: {exc}") from None
    values.update(overrides)
    for name in ("price_per_session", "budget_usd"):
        if values.get(name) is not None and not isinstance(values[name], Decimal):
            values[name] = Decimal(str(values[name]))
    for name in ("state_dir",):
        if values.get(name) is not None:
            values[name] = Path(values[name])
    return Config(**values)
