"""The emulator's configuration: one frozen object that defaults, CLI flags, environment
variables and the pytest plugin's options all land in.

Every setting is declared once, as a dataclass field whose metadata gives its flag help; the CLI
flag (``--session-lifespan``) is derived from the field name (or named in the metadata, as
``--api-key`` for ``api_keys``), the environment variable is ``TCI_EMULATOR_`` plus the flag's
own name (``TCI_EMULATOR_SESSION_LIFESPAN``, ``TCI_EMULATOR_API_KEY``), and the pytest plugin's
option and ini value are ``--tci-`` and ``tci_`` plus the same name, so the sources cannot drift
apart and a setting added later gets its flag, variable, pytest option and line in the generated
reference (``docs/settings.md``, :mod:`tci_emulator.settings_reference`) for free. Text from any
of them (a flag, a variable, an ini value) is read by one function, :func:`settings_from`.
Precedence: explicit CLI flag, then environment, then default.

An unknown ``TCI_EMULATOR_*`` variable stops the start (:func:`check_environment`): a misspelt
variable would otherwise leave a server the user believes is configured, for instance locked to
one key, running with the default.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from .auth import fingerprint

__all__ = ["Config", "ENV_PREFIX", "TOOL_VARIABLES", "add_arguments", "argument_specs",
           "check_environment", "config_from", "env_names", "flag_name", "non_default_settings",
           "plugin_default", "plugin_fields", "settings_from"]

ENV_PREFIX = "TCI_EMULATOR_"

# TCI_EMULATOR_* names that are not emulator settings but are read by the command-line tools
# (`transcript`, `wait`, `serve --ready-file`): accepted by the unknown-variable check. Add a
# tool's variable here.
TOOL_VARIABLES: tuple[str, ...] = ("TCI_EMULATOR_URL", "TCI_EMULATOR_READY_FILE")


_NO_PYTEST_DEFAULT = object()


def _setting(default: Any, help: str, *, metavar: str | None = None, flag: str | None = None,
             aliases: tuple[str, ...] = (), secret: bool = False, pytest: bool = True,
             pytest_default: Any = _NO_PYTEST_DEFAULT) -> Any:
    """A setting's field. ``flag`` names the CLI flag when it is not the field name with dashes;
    ``aliases`` are extra environment variables (older names); ``secret`` values are shown only
    as fingerprints; ``pytest=False`` keeps the setting out of the pytest plugin's options (the
    plugin's emulator always listens on 127.0.0.1 and a free port);
    ``pytest_default`` is the plugin's default where it differs from the emulator's."""
    return field(default=default, metadata={"help": help, "metavar": metavar, "flag": flag,
                                            "aliases": aliases, "secret": secret,
                                            "pytest": pytest, "pytest_default": pytest_default})


@dataclass(frozen=True)
class Config:
    """All settings of one emulator. Immutable: build a new one with ``dataclasses.replace``."""

    host: str = _setting("127.0.0.1", "Interface to bind. Non-loopback needs --allow-remote and "
                         "--api-key.", metavar="HOST", pytest=False)
    port: int = _setting(8787, "Port to bind; 0 picks a free one.", metavar="PORT",
                         pytest=False)
    api_keys: tuple[str, ...] = _setting(
        (), "Accept only these bearer keys (repeatable; comma-separated in the environment). "
        "Default: any non-empty key, each its own tenant.", metavar="KEY", flag="api-key",
        aliases=("TCI_EMULATOR_API_KEYS",), secret=True)
    allow_remote: bool = _setting(False, "Allow binding a non-loopback --host.", pytest=False)
    session_lifespan: float = _setting(
        3600.0, "Seconds a session lives from creation (1800 reproduces the observed service).",
        metavar="SECONDS")
    price_per_session: Decimal = _setting(Decimal("0.03"), "USD charged when a session is created.",
                                          metavar="USD")
    budget_usd: Decimal | None = _setting(None,
                                          "Refuse new sessions (402) beyond this spend per key.",
                                          metavar="USD")
    state_dir: Path | None = _setting(None, "Keep the ledger and transcripts in this directory.",
                                      metavar="DIR")
    # One warm kernel per test process is enough for tests that each start a session or two, and
    # cheaper under xdist.
    pool_size: int = _setting(2, "Kernels kept warm ahead of new sessions.", metavar="N",
                              pytest_default=1)
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
    spec_errors: bool = _setting(False, "Answer failures as the OpenAPI spec's literal HTTP 200 "
                                 "{'data': null, 'errors': [...]} instead of 4xx/5xx "
                                 "(docs/contract.md, section 8).")
    admin: bool = _setting(True, "Serve the /_emulator control plane (--no-admin switches it off).")
    admin_token: str | None = _setting(None, "Require 'Authorization: Bearer TOKEN' on the "
                                       "control plane.", metavar="TOKEN", secret=True)
    faults: str | None = _setting(None, "Fault rules loaded at start-up: a JSON file, or inline "
                                  "JSON text starting with '[' or '{'.",
                                   metavar="FILE")
    reap_interval: float = _setting(1.0, "Seconds between sweeps for expired sessions.",
                                    metavar="SECONDS")
    # An in-process emulator (the pytest plugin's, tci_emulator.Emulator) is quiet unless asked.
    access_log: bool = _setting(True, "Log one line per request (--no-access-log to silence).",
                                pytest_default=False)
    mcp: bool = _setting(True, "Serve MCP over streamable HTTP at /mcp (needs the 'mcp' extra; "
                         "--no-mcp switches it off).")
    kernel_gateway: str | None = _setting(
        None, "Run every session's kernel on this Jupyter (Enterprise) Gateway, e.g. "
        "http://127.0.0.1:8888, instead of on this machine.", metavar="URL")
    kernel_gateway_token: str | None = _setting(
        None, "Token sent to the kernel gateway ('Authorization: token TOKEN').", metavar="TOKEN")
    kernel_gateway_kernel: str | None = _setting(
        None, "Kernel spec name on the gateway (default: --kernel-name).", metavar="NAME")
    sandbox: str = _setting(
        "auto", "Isolation of session kernels: 'namespaces' (bubblewrap; refuse to start "
        "without it), 'auto' (namespaces where bwrap works, else off with a warning) or 'off'.",
        metavar="auto|namespaces|off")
    session_network: str = _setting(
        "host", "Network of session kernels: 'host' (the machine's, so pip install works) or "
        "'none' (no socket reaches anything, the emulator included; needs the sandbox).",
        metavar="host|none")
    allowed_hosts: tuple[str, ...] = _setting(
        (), "Also serve requests whose Host header names this host (repeatable; comma-separated "
        "in the environment; '.example.test' allows its subdomains, '*' any host). localhost, "
        "127.0.0.1, [::1] and --host are always served.", metavar="NAME", flag="allowed-host")
    client_timeout: float = _setting(30.0, "Seconds a client has to send a whole request (line, "
                                     "headers and body) before the connection is closed.",
                                     metavar="SECONDS")
    keep_alive_timeout: float = _setting(75.0, "Seconds an idle keep-alive connection is kept "
                                         "open between requests.", metavar="SECONDS")
    threads: int = _setting(32, "Requests served at once (the rest wait in line); an execution "
                            "holds one for its whole run.", metavar="N")
    connection_limit: int = _setting(4096, "Most open connections; beyond it the longest-waiting "
                                     "idle one is closed, or the new one answered 503.",
                                     metavar="N")
    log_format: str = _setting("text", "Access log lines as 'text' or 'json' (one object per "
                               "line).", metavar="FORMAT")
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
        if self.kernel_gateway is not None and not self.kernel_gateway.lower().startswith(
                ("http://", "https://")):
            raise ValueError(f"kernel_gateway must be an http:// or https:// URL "
                             f"(got {self.kernel_gateway!r})")
        if self.kernel_gateway is not None and self.kernel_memory_mb is not None:
            raise ValueError("kernel_memory_mb does not apply to kernels on a kernel gateway "
                             "(they are not processes of this machine): set resource limits "
                             "on the gateway's side instead")
        for name, choices in (("sandbox", ("auto", "namespaces", "off")),
                              ("session_network", ("host", "none")),
                              ("kernel_launcher", ("fork", "spawn"))):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)} "
                                 f"(got {getattr(self, name)!r})")
        for name in ("client_timeout", "keep_alive_timeout", "threads", "connection_limit"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 (got {getattr(self, name)!r})")
        if self.log_format not in ("text", "json"):
            raise ValueError(f"log_format must be 'text' or 'json' (got {self.log_format!r})")


def flag_name(f: dataclasses.Field[Any]) -> str:
    """The CLI flag of a setting, e.g. ``--api-key`` for ``api_keys``."""
    return "--" + (f.metadata.get("flag") or f.name.replace("_", "-"))


def env_names(f: dataclasses.Field[Any]) -> tuple[str, ...]:
    """The environment variables of a setting: ``TCI_EMULATOR_`` plus its flag's own name,
    then its aliases (read only when the main variable is unset)."""
    main = ENV_PREFIX + flag_name(f)[2:].replace("-", "_").upper()
    return (main, *f.metadata.get("aliases", ()))


def check_environment(environ: Mapping[str, str]) -> None:
    """Refuse an unknown ``TCI_EMULATOR_*`` variable, naming the closest real one.

    Raises ``ValueError`` with one line; a variable set to the empty string counts too (it was
    meant for something).
    """
    known = [name for f in dataclasses.fields(Config) for name in env_names(f)]
    known += TOOL_VARIABLES
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in known:
            # Compared without the shared prefix, which would make every name look alike.
            suffixes = [k[len(ENV_PREFIX):] for k in known]
            close = difflib.get_close_matches(name[len(ENV_PREFIX):], suffixes, n=1,
                                              cutoff=0)[0]
            raise ValueError(f"unknown variable {name}; did you mean {ENV_PREFIX}{close}? "
                             f"(settings are {ENV_PREFIX} plus a flag's name: see "
                             f"tci-emulator serve --help)")


def _base_type(annotation: Any) -> Any:
    """The non-None type of an annotation such as ``int | None`` or ``tuple[str, ...]``."""
    hint = typing.get_type_hints(Config)[annotation] if isinstance(annotation, str) else annotation
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint


def decimal(text: str) -> Decimal:
    """A USD amount (named ``decimal`` because argparse says "invalid decimal value")."""
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a number: {text!r}") from None


def boolean(text: str) -> bool:
    """An on/off setting written as text (a variable, an ini value)."""
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _converter(kind: Any) -> Callable[[str], Any]:
    if kind is Decimal:
        return decimal
    if kind is bool:
        return boolean
    converter: Callable[[str], Any] = kind  # int, float, str, Path
    return converter


def _fields() -> list[tuple[dataclasses.Field[Any], Any]]:
    hints = typing.get_type_hints(Config)
    return [(f, _base_type(hints[f.name])) for f in dataclasses.fields(Config)]


def plugin_fields() -> list[dataclasses.Field[Any]]:
    """The settings the pytest plugin offers as ``--tci-*`` options and ``tci_*`` ini values."""
    return [f for f in dataclasses.fields(Config) if f.metadata["pytest"]]


def plugin_default(f: dataclasses.Field[Any]) -> Any:
    """A setting's default under the pytest plugin (the emulator's unless the field says)."""
    value = f.metadata["pytest_default"]
    return f.default if value is _NO_PYTEST_DEFAULT else value


def argument_specs(prefix: str = "") -> list[tuple[dataclasses.Field[Any], str, dict[str, Any]]]:
    """Each setting's flag (``--`` + ``prefix`` + its name) and the ``add_argument`` keywords
    that read it, but ``dest`` and ``help``: a bool is ``--x/--no-x``, a tuple repeatable, the
    rest typed by the field. The CLI and the pytest plugin both declare their options from it."""
    specs: list[tuple[dataclasses.Field[Any], str, dict[str, Any]]] = []
    for f, kind in _fields():
        flag = "--" + prefix + flag_name(f)[2:]
        if kind is bool:
            specs.append((f, flag, {"action": argparse.BooleanOptionalAction, "default": None}))
        elif typing.get_origin(kind) is tuple:
            specs.append((f, flag, {"action": "append", "default": None,
                                    "metavar": f.metadata["metavar"]}))
        else:
            specs.append((f, flag, {"type": _converter(kind), "default": None,
                                    "metavar": f.metadata["metavar"]}))
    return specs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting; unset flags stay ``None`` so the environment can fill them."""
    group = parser.add_argument_group("emulator settings (each also TCI_EMULATOR_<NAME>)")
    for f, flag, keywords in argument_specs():
        group.add_argument(flag, dest=f.name, **keywords,
                           help=f"{f.metadata['help']} [env {env_names(f)[0]}; "
                                f"default {f.default!r}]")


def _split(items: list[str]) -> tuple[str, ...]:
    """Values of a repeatable setting: each flag or variable may hold a comma-separated list."""
    return tuple(part.strip() for item in items for part in item.split(",") if part.strip())


def _env_text(f: dataclasses.Field[Any], env: Mapping[str, str]) -> tuple[str, str] | None:
    """The variable that sets ``f`` and its text, or ``None``; an alias only when the main
    variable is unset, and two different values under both names are refused."""
    found = [(name, env[name]) for name in env_names(f) if env.get(name, "") != ""]
    if len({text for _, text in found}) > 1:
        names = " and ".join(name for name, _ in found)
        raise ValueError(f"{names} are the same setting with different values: set only "
                         f"{env_names(f)[0]}")
    return found[0] if found else None


def settings_from(flags: Mapping[str, Any],
                  texts: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    """The settings given explicitly, by field name: a parsed flag's value (from
    :func:`argument_specs`; ``None`` when not given) wins over a text (``(source, text)``, from
    a variable or an ini value). Repeatable values are split on commas. Raises ``ValueError``
    starting with the source when a text does not parse. The one reader of settings' text, for
    the CLI, the environment and the pytest plugin alike."""
    values: dict[str, Any] = {}
    for f, kind in _fields():
        flag_value = flags.get(f.name)
        if flag_value is not None:
            values[f.name] = (_split(flag_value) if typing.get_origin(kind) is tuple
                              else flag_value)
        elif f.name in texts:
            source, text = texts[f.name]
            try:
                values[f.name] = (_split([text]) if typing.get_origin(kind) is tuple
                                  else _converter(kind)(text))
            except ValueError as exc:
                raise ValueError(f"{source}: {exc}") from None
    return values


def config_from(
    args: argparse.Namespace | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Config:
    """Build a :class:`Config` from parsed flags, then ``TCI_EMULATOR_*`` variables, then defaults.

    ``overrides`` win over everything (used by the Python handle and the pytest plugin).
    Raises ``ValueError`` naming the variable when an environment value does not parse, or when
    a ``TCI_EMULATOR_*`` variable is not a known one.
    """
    env = os.environ if environ is None else environ
    check_environment(env)
    texts = {f.name: found for f in dataclasses.fields(Config)
             if (found := _env_text(f, env)) is not None}
    values = settings_from(vars(args) if args is not None else {}, texts)
    values.update(overrides)
    for name in ("price_per_session", "budget_usd"):
        if values.get(name) is not None and not isinstance(values[name], Decimal):
            values[name] = Decimal(str(values[name]))
    for name in ("state_dir",):
        if values.get(name) is not None:
            values[name] = Path(values[name])
    return Config(**values)


def non_default_settings(config: Config) -> list[str]:
    """The settings of ``config`` that differ from the defaults, as ``--flag value`` (keys and
    tokens as ``sha256:<fingerprint>``), for the start-up banner."""
    shown: list[str] = []
    for f, _ in _fields():
        value = getattr(config, f.name)
        if value == f.default:
            continue
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if f.metadata.get("secret") and item is not None:
                text = f"sha256:{fingerprint(str(item))}"
            elif isinstance(item, bool):
                text = ""
            else:
                text = str(item)
            flag = flag_name(f) if item is not False else "--no-" + flag_name(f)[2:]
            shown.append(f"{flag} {text}".rstrip())
    return shown
