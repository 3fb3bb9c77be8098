"""Driver for the Python SDK v1 (``together==1.5.35``), run by ``.sdk/v1/bin/python``.

Protocol: see ``python_driver.py``. v1 calls ``client.code_interpreter.run(...)``; it has no call
that lists sessions, so this driver offers only ``execute``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from python_driver import Adapter, error_reply, execute_arguments, main


class V1(Adapter):
    """Adapter for ``together`` 1.x."""

    def ops(self) -> dict[str, Callable[[Any, dict[str, Any]], Any]]:
        return {"execute": self.execute}

    @staticmethod
    def execute(client: Any, command: dict[str, Any]) -> Any:
        return client.code_interpreter.run(**execute_arguments(command)).model_dump(mode="json")

    def describe(self, exc: BaseException) -> dict[str, Any]:
        # TogetherErrorResponse: the body's "error"
        api_response = getattr(exc, "api_response", None)
        return error_reply(exc, getattr(exc, "http_status", None),
                           getattr(api_response, "code", None))


if __name__ == "__main__":
    main(V1)
