"""JSON in and out of the app: the one place response bodies are serialised and request bodies
parsed, for the API and the control plane alike."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from ..errors import InvalidRequest

__all__ = ["json_response", "read_json_body"]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None, *,
                  spoil: Callable[[bytes], bytes] | None = None) -> Response:
    """A JSON response. ``spoil`` (a ``malformed_body`` fault's) is applied to a 200 body only:
    the response is built spoiled, rather than rewritten after the fact."""
    text = json.dumps(body, ensure_ascii=False)
    data = spoil(text.encode()) if spoil is not None and status == 200 else text
    return Response(data, status=status, headers=headers, mimetype="application/json")


def read_json_body() -> Any:
    """The request body parsed as JSON, whatever the content type (curl -d sends a form type)."""
    raw = request.get_data(cache=True)
    limit = request.max_content_length
    if (request.content_length is None and limit is not None and len(raw) >= limit
            and request.environ["wsgi.input"].read(1)):
        # A chunked body is cut at the limit without a word from werkzeug: look one byte on.
        raise RequestEntityTooLarge()
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.", param="body")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}", param="body") from None
    except RecursionError:
        raise InvalidRequest("The request body is not valid JSON: nested too deeply.",
                             param="body") from None
