"""One config, four sources: defaults, TCI_EMULATOR_* variables, CLI flags and the pytest
plugin's options, all read through the same functions."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
from decimal import Decimal
from pathlib import Path

import pytest

from tci_emulator.config import (
    TOOL_VARIABLES,
    Config,
    add_arguments,
    argument_specs,
    check_environment,
    config_from,
    env_names,
    non_default_settings,
    plugin_default,
    plugin_fields,
    settings_from,
)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults() -> None:
    config = config_from(parse(), {})
    assert config == Config()
    assert (config.host, config.port, config.session_lifespan) == ("127.0.0.1", 8787, 3600.0)
    assert config.price_per_session == Decimal("0.03") and config.budget_usd is None


def test_environment_fills_every_kind_of_setting() -> None:
    config = config_from(parse(), {
        "TCI_EMULATOR_PORT": "9000", "TCI_EMULATOR_SESSION_LIFESPAN": "1800",
        "TCI_EMULATOR_BUDGET_USD": "1.50", "TCI_EMULATOR_API_KEY": "a, b,",
        "TCI_EMULATOR_SPEC_ERRORS": "true", "TCI_EMULATOR_STATE_DIR": "/tmp/x",
        "TCI_EMULATOR_ADMIN": "0"})
    assert config.port == 9000 and config.session_lifespan == 1800.0
    assert config.budget_usd == Decimal("1.50") and config.api_keys == ("a", "b")
    assert config.spec_errors is True and config.admin is False
    assert config.state_dir == Path("/tmp/x")


def test_flags_win_over_environment() -> None:
    args = parse("--port", "1234", "--api-key", "x", "--api-key", "y,z", "--no-admin",
                 "--price-per-session", "0.05")
    config = config_from(args, {"TCI_EMULATOR_PORT": "9000", "TCI_EMULATOR_ADMIN": "1"})
    assert config.port == 1234 and config.api_keys == ("x", "y", "z") and config.admin is False
    assert config.price_per_session == Decimal("0.05")


@pytest.mark.parametrize("name,value", [("TCI_EMULATOR_PORT", "eighty"),
                                        ("TCI_EMULATOR_SPEC_ERRORS", "maybe"),
                                        ("TCI_EMULATOR_BUDGET_USD", "lots")])
def test_bad_environment_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        config_from(parse(), {name: value})


def test_overrides_win_and_are_coerced() -> None:
    config = config_from(None, {"TCI_EMULATOR_PORT": "9000"}, port=0, budget_usd="0.06",
                         state_dir="/tmp/s")
    assert config.port == 0 and config.budget_usd == Decimal("0.06")
    assert config.state_dir == Path("/tmp/s")


@pytest.mark.parametrize("setting", [{"reap_interval": 0}, {"pool_size": -1},
                                     {"execution_timeout": -5}, {"port": 70000},
                                     {"max_sessions": 0}])
def test_values_that_would_break_the_emulator_are_refused(setting: dict[str, object]) -> None:
    [name] = setting
    with pytest.raises(ValueError, match=name):
        config_from(None, {}, **setting)


def test_each_variable_is_the_prefix_plus_the_flags_own_name() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    flags = {action.dest: action.option_strings[0] for action in parser._actions
             if action.dest in Config.__dataclass_fields__}
    for f in dataclasses.fields(Config):
        assert env_names(f)[0] == "TCI_EMULATOR_" + flags[f.name][2:].replace("-", "_").upper()
    assert flags["api_keys"] == "--api-key"


def test_api_key_variable_locks_the_server_to_that_key() -> None:
    assert config_from(parse(), {"TCI_EMULATOR_API_KEY": "secret"}).api_keys == ("secret",)


def test_plural_api_keys_variable_is_kept_as_an_alias() -> None:
    assert config_from(parse(), {"TCI_EMULATOR_API_KEYS": "a,b"}).api_keys == ("a", "b")
    both = {"TCI_EMULATOR_API_KEY": "a", "TCI_EMULATOR_API_KEYS": "a"}
    assert config_from(parse(), both).api_keys == ("a",)


def test_alias_and_main_variable_with_different_values_are_refused() -> None:
    with pytest.raises(ValueError, match="TCI_EMULATOR_API_KEY and TCI_EMULATOR_API_KEYS"):
        config_from(parse(), {"TCI_EMULATOR_API_KEY": "a", "TCI_EMULATOR_API_KEYS": "b"})


@pytest.mark.parametrize("name,closest", [("TCI_EMULATOR_API_KYE", "TCI_EMULATOR_API_KEY"),
                                          ("TCI_EMULATOR_POOLSIZE", "TCI_EMULATOR_POOL_SIZE"),
                                          ("TCI_EMULATOR_SESSION_LIFETIME",
                                           "TCI_EMULATOR_SESSION_LIFESPAN")])
def test_unknown_variable_is_refused_in_one_line_naming_the_closest(name: str,
                                                                    closest: str) -> None:
    with pytest.raises(ValueError) as raised:
        config_from(parse(), {name: "1", "TCI_EMULATOR_PORT": "0"})
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"unknown variable {name}; did you mean {closest}?")


def test_unknown_variable_far_from_any_setting_is_still_refused() -> None:
    with pytest.raises(ValueError, match="^unknown variable TCI_EMULATOR_XYZZY; did you mean "
                                         "TCI_EMULATOR_[A-Z_]+\\?"):
        check_environment({"TCI_EMULATOR_XYZZY": ""})


def test_tool_variables_and_other_prefixes_are_accepted() -> None:
    check_environment({name: "x" for name in TOOL_VARIABLES}
                      | {"TCI_BASE_URL": "x", "TOGETHER_API_KEY": "k", "TCI_EMULATORX": "y"})
    assert "TCI_EMULATOR_URL" in TOOL_VARIABLES


def test_settings_that_differ_from_the_defaults_show_secrets_as_fingerprints() -> None:
    config = config_from(parse("--api-key", "secret", "--no-admin", "--port", "0",
                               "--admin-token", "tok", "--preload", "numpy,pandas"), {})
    shown = non_default_settings(config)
    digest = hashlib.sha256(b"secret").hexdigest()
    assert shown == ["--port 0", f"--api-key sha256:{digest}", "--preload numpy",
                     "--preload pandas", "--no-admin",
                     f"--admin-token sha256:{hashlib.sha256(b'tok').hexdigest()}"]
    assert not any("secret" in line or "tok " in line for line in shown)
    assert non_default_settings(Config()) == []


def test_every_text_source_is_read_by_one_function_naming_its_source() -> None:
    texts = {"pool_size": ("ini value tci_pool_size = '3'", "3"),
             "api_keys": ("ini value tci_api_key = 'a, b'", "a, b"),
             "mcp": ("ini value tci_mcp = 'off'", "off")}
    assert settings_from({"pool_size": 5, "admin": None}, texts) == {
        "pool_size": 5, "api_keys": ("a", "b"), "mcp": False}
    with pytest.raises(ValueError, match="^ini value tci_pool_size = 'many': "):
        settings_from({}, {"pool_size": ("ini value tci_pool_size = 'many'", "many")})


def test_a_prefix_gives_the_same_options_under_other_names() -> None:
    parser = argparse.ArgumentParser()
    for f, flag, keywords in argument_specs(prefix="tci-"):
        parser.add_argument(flag, dest=f.name, **keywords)
    args = parser.parse_args(["--tci-api-key", "k1,k2", "--no-tci-mcp", "--tci-budget-usd",
                              "0.5", "--tci-session-lifespan", "60"])
    config = config_from(args, {})
    assert (config.api_keys, config.mcp) == (("k1", "k2"), False)
    assert (config.budget_usd, config.session_lifespan) == (Decimal("0.5"), 60.0)


def test_the_plugin_offers_every_setting_but_where_it_listens() -> None:
    offered = {f.name for f in plugin_fields()}
    assert set(Config.__dataclass_fields__) - offered == {"host", "port", "allow_remote"}
    defaults = {f.name: plugin_default(f) for f in plugin_fields()
                if plugin_default(f) != f.default}
    assert defaults == {"pool_size": 1, "access_log": False}
