"""The JSON Schema of every body the emulator's API answers with, and a validator for it.

``responses.json`` (JSON Schema 2020-12, shipped as package data) describes the responses of
the contract (``docs/contract.md``): the execute success envelope with its output item variants,
the sessions listing, the error body of its section 8 and the OpenAPI spec's literal
``FailedExecution`` form. The
emulator's own tests validate every response they get against it, and a downstream project can do
the same with its recorded traffic, so "what a TCI response looks like" is written down once, in a
form any language's JSON Schema library reads.

:func:`validate` needs the ``jsonschema`` package (part of the ``test`` extra); :func:`load` and
:func:`definition` need nothing.
"""

from __future__ import annotations

import json
from functools import cache, lru_cache
from importlib import resources
from typing import Any

__all__ = ["DEFINITIONS", "load", "definition", "validate"]

#: The response kinds a caller can demand by name.
DEFINITIONS = ("ExecuteSuccess", "SessionsListing", "ErrorBody", "FailedExecution", "OutputItem")


@lru_cache(maxsize=1)
def _text() -> str:
    return (resources.files(__package__) / "responses.json").read_text(encoding="utf-8")


def load() -> dict[str, Any]:
    """The whole schema (a fresh copy): valid when a body is any of the response kinds."""
    schema: dict[str, Any] = json.loads(_text())
    return schema


def definition(name: str) -> dict[str, Any]:
    """A standalone schema that accepts only the response kind ``name`` (one of ``$defs``)."""
    root = load()
    if name not in root["$defs"]:
        raise KeyError(f"no definition {name!r} in the response schema")
    return {"$schema": root["$schema"], "$id": root["$id"], "$defs": root["$defs"],
            "$ref": f"#/$defs/{name}"}


@cache
def _validator(name: str | None) -> Any:
    import jsonschema  # type: ignore[import-untyped]  # test extra, imported on first use

    schema = load() if name is None else definition(name)
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def validate(body: Any, name: str | None = None) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``body`` is a response (of kind ``name``)."""
    _validator(name).validate(body)
