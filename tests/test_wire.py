"""The hand-written signer and decoder speak jupyter-client's protocol exactly.

Messages are signed by one side and verified and decoded by the other, both ways, against
``jupyter_client.session.Session`` itself: what the emulator sends a kernel must verify there,
and what a kernel sends must verify here, buffers included; a forged message is refused by both.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest
from jupyter_client.session import Session

from tci_emulator.kernels.errors import KernelError
from tci_emulator.kernels.wire import PROTOCOL_VERSION, decode, encode, msg_type, parent_id

SCHEMES = ["hmac-sha256", "hmac-sha512", "hmac-md5"]


def _pair(scheme: str) -> tuple[Session, Session]:
    """Two sessions sharing a key: the emulator's side and the kernel's side."""
    key = uuid.uuid4().hex.encode()
    return (Session(key=key, signature_scheme=scheme, username="tci-emulator"),
            Session(key=key, signature_scheme=scheme, username="kernel"))


def _from_kernel(kernel: Session, kind: str, content: dict[str, object], *, parent: str,
                 buffers: Sequence[bytes] = ()) -> list[bytes]:
    """Frames as a kernel sends them (``Session.send``): routing identity, then the message,
    then its buffers (which the signature does not cover)."""
    message = kernel.msg(kind, content, parent={"msg_id": parent, "msg_type": "execute_request"})
    return [*kernel.serialize(message, ident=[b"routing-id"]), *buffers]


def _tamper(frame: bytes) -> bytes:
    return bytes([frame[0] ^ 1]) + frame[1:]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_request_signed_here_verifies_and_decodes_in_jupyter_client(scheme: str) -> None:
    ours, kernel = _pair(scheme)
    content = {"code": "print('é\\n')", "silent": False, "user_expressions": {}}
    msg_id, frames = encode(ours, "execute_request", content, buffers=[b"\x00\xffraw"])
    _, parts = kernel.feed_identities(frames)
    message = kernel.deserialize(parts)  # raises on a bad signature
    assert message["header"]["msg_id"] == msg_id
    assert message["header"]["msg_type"] == "execute_request"
    assert message["header"]["version"] == PROTOCOL_VERSION
    assert message["header"]["session"] == ours.session
    assert message["content"] == content
    assert [bytes(b) for b in message["buffers"]] == [b"\x00\xffraw"]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_message_signed_by_jupyter_client_verifies_and_decodes_here(scheme: str) -> None:
    ours, kernel = _pair(scheme)
    content = {"data": {"text/plain": "42"}, "metadata": {}, "execution_count": 1}
    frames = _from_kernel(kernel, "execute_result", content, parent="request-1",
                          buffers=[b"first", b"\x00second"])
    message = decode(ours, frames)
    assert msg_type(message) == message["msg_type"] == "execute_result"
    assert parent_id(message) == "request-1"
    assert message["content"] == content
    assert message["buffers"] == [b"first", b"\x00second"]


@pytest.mark.parametrize("part", [1, 2, 5], ids=["signature", "header", "content"])
def test_a_tampered_message_is_refused_by_both_sides(part: int) -> None:
    ours, kernel = _pair("hmac-sha256")
    frames = _from_kernel(kernel, "stream", {"name": "stdout", "text": "hi"}, parent="p")
    delimiter = frames.index(b"<IDS|MSG>")
    frames[delimiter + part] = _tamper(frames[delimiter + part])
    with pytest.raises(KernelError, match="invalid signature"):
        decode(ours, frames)
    _, sent = encode(ours, "kernel_info_request", {})
    sent[part] = _tamper(sent[part])
    with pytest.raises(ValueError, match="Invalid Signature"):
        kernel.deserialize(kernel.feed_identities(sent)[1])


def test_a_message_signed_with_another_key_is_refused() -> None:
    ours, _ = _pair("hmac-sha256")
    _, stranger = _pair("hmac-sha256")
    with pytest.raises(KernelError, match="invalid signature"):
        decode(ours, _from_kernel(stranger, "status", {"execution_state": "idle"}, parent="p"))


def test_an_unsigned_session_exchanges_unsigned_messages() -> None:
    ours, kernel = Session(key=b""), Session(key=b"")
    frames = _from_kernel(kernel, "status", {"execution_state": "busy"}, parent="p")
    assert decode(ours, frames)["content"] == {"execution_state": "busy"}
    _, sent = encode(ours, "kernel_info_request", {})
    assert kernel.deserialize(kernel.feed_identities(sent)[1])["msg_type"] == "kernel_info_request"


def test_content_that_is_not_utf8_is_decoded_with_replacement_characters() -> None:
    ours, kernel = _pair("hmac-sha256")
    header = kernel.pack(kernel.msg_header("stream"))
    parts = [header, b'{"msg_id": "p"}', b"{}", b'{"name": "stdout", "text": "\xff!"}']
    frames = [b"<IDS|MSG>", kernel.sign(parts), *parts]
    assert decode(ours, frames)["content"]["text"] == "\ufffd!"


def test_the_echo_of_the_code_is_not_parsed() -> None:
    ours, kernel = _pair("hmac-sha256")
    frames = _from_kernel(kernel, "execute_input", {"code": "x" * 1000, "execution_count": 1},
                          parent="p")
    message = decode(ours, frames)
    assert message["msg_type"] == "execute_input" and message["content"] == {}


def test_a_message_with_parts_missing_is_refused() -> None:
    ours, kernel = _pair("hmac-sha256")
    frames = _from_kernel(kernel, "status", {"execution_state": "idle"}, parent="p")
    with pytest.raises(KernelError, match="too few parts"):
        decode(ours, frames[:-2])
