"""Driver for the Python SDK v2 (``together==2.42.0``), run by ``.sdk/v2/bin/python``.

Protocol: see ``python_driver.py``. v2 calls ``client.code_interpreter.execute(...)`` and
``client.code_interpreter.sessions.list()``; results are the SDK's parsed models turned back into
JSON with the API's field names (``image/png``), timestamps as the datetimes the SDK parsed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from python_driver import Adapter, error_reply, execute_arguments, main


class V2(Adapter):
    """Adapter for ``together`` 2.x."""

    def ops(self) -> dict[str, Callable[[Any, dict[str, Any]], Any]]:
        return {"execute": self.execute, "list": self.list}

    @staticmethod
    def execute(client: Any, command: dict[str, Any]) -> Any:
        return client.code_interpreter.execute(**execute_arguments(command)).to_dict(mode="python")

    @staticmethod
    def list(client: Any, command: dict[str, Any]) -> Any:
        return client.code_interpreter.sessions.list().to_dict(mode="python")

    def describe(self, exc: BaseException) -> dict[str, Any]:
        body = getattr(exc, "body", None)  # the whole JSON error body
        error = body.get("error") if isinstance(body, dict) else None
        return error_reply(exc, getattr(exc, "status_code", None),
                           error.get("code") if isinstance(error, dict) else None)


if __name__ == "__main__":
    main(V2)
