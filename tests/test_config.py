"""One config, three sources: defaults, TCI_EMULATOR_* variables, CLI flags."""

from __future__ import annotations

import argparse
from decimal import Decimal
from pathlib import Path

import pytest

from tci_emulator.config import Config, add_arguments, config_from


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
        "TCI_EMULATOR_BUDGET_USD": "1.50", "TCI_EMULATOR_API_KEYS": "a, b,",
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
