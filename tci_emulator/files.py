"""Files uploaded with an execute call: validation, decoding, and the kernel-side writer.

Names are checked lexically here (non-empty, valid Unicode, no NUL, relative, never climbing out
with ``..``, at most :data:`MAX_NAME_BYTES` in all and :data:`MAX_PART_BYTES` per component, no
name used both as a file and as a folder in one request); contents are decoded (``string`` as
UTF-8, ``base64`` strictly). All of this happens before a session is created for the request, so
a refused upload never leaves behind a session (and a charge) its caller cannot see. The files
are then written *by the kernel itself* into its current working directory, which is where the
contract says uploads land, and which also works when a provisioner runs the kernel on another
machine. The writer resolves each path once more, so a symlink planted by earlier code cannot lead
a write out of the working directory.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from .errors import InvalidRequest, PayloadTooLarge

__all__ = ["UploadedFile", "parse_files", "writer_code", "utf8", "MAX_NAME_BYTES",
           "MAX_PART_BYTES"]

ENCODINGS = ("string", "base64")
MAX_NAME_BYTES = 1024  # a whole name, in UTF-8 (Linux allows 4096 for the absolute path)
MAX_PART_BYTES = 255  # one path component (NAME_MAX of Linux file systems)


@dataclass(frozen=True)
class UploadedFile:
    """One validated file: a safe relative name and its bytes."""

    name: str
    content: bytes


def utf8(text: str, param: str) -> bytes:
    """``text`` as UTF-8; a 400 naming ``param`` if it holds a lone surrogate.

    JSON may spell a lone surrogate (``"\\ud800"``) but UTF-8 cannot encode it, so neither the
    kernel protocol, a file name nor the ledger could carry it: refuse it at the door.
    """
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(f"'{param}' is not valid Unicode (it holds a lone surrogate).",
                             param=param) from None


def _check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or name == "":
        raise InvalidRequest("File name must be a non-empty string.", param=f"{where}.name")
    if len(utf8(name, f"{where}.name")) > MAX_NAME_BYTES:
        raise InvalidRequest(f"File name is longer than {MAX_NAME_BYTES} bytes.",
                             param=f"{where}.name")
    if "\x00" in name:
        raise InvalidRequest("File name must not contain NUL.", param=f"{where}.name")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise InvalidRequest(f"File name {name!r} must be relative to the session directory.",
                             param=f"{where}.name")
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        raise InvalidRequest(f"File name {name!r} escapes the session directory.",
                             param=f"{where}.name")
    if not parts or name.endswith(("/", "\\")) or parts == (".",):
        raise InvalidRequest(f"File name {name!r} names a directory, not a file.",
                             param=f"{where}.name")
    if any(len(part.encode("utf-8")) > MAX_PART_BYTES for part in parts):
        raise InvalidRequest(f"A component of the file name is longer than {MAX_PART_BYTES} "
                             "bytes.", param=f"{where}.name")
    return "/".join(parts)


def _decode(encoding: Any, content: Any, where: str) -> bytes:
    if encoding not in ENCODINGS:
        raise InvalidRequest("File encoding must be 'string' or 'base64'.",
                             param=f"{where}.encoding")
    if not isinstance(content, str):
        raise InvalidRequest("File content must be a string.", param=f"{where}.content")
    if encoding == "string":
        return utf8(content, f"{where}.content")
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("File content is not valid base64.", param=f"{where}.content") from None


def parse_files(value: Any, *, max_files: int, max_bytes: int) -> list[UploadedFile]:
    """Validate the request's ``files`` field (``None`` means no files)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest("'files' must be an array of {name, encoding, content}.",
                             param="files")
    if len(value) > max_files:
        raise InvalidRequest(f"Too many files: {len(value)} (at most {max_files}).", param="files")
    files: list[UploadedFile] = []
    names: set[str] = set()
    folders: set[str] = set()
    total = 0
    for index, item in enumerate(value):
        where = f"files[{index}]"
        if not isinstance(item, dict):
            raise InvalidRequest("Each file must be an object {name, encoding, content}.",
                                 param=where)
        for required in ("name", "encoding", "content"):
            if required not in item:
                raise InvalidRequest(f"File is missing '{required}'.", param=f"{where}.{required}")
        name = _check_name(item["name"], where)
        parents = {name.rsplit("/", i)[0] for i in range(1, name.count("/") + 1)}
        if name in folders or not parents.isdisjoint(names):
            raise InvalidRequest(f"File name {name!r} is used both as a file and as a folder.",
                                 param=f"{where}.name")
        folders |= parents
        names.add(name)
        content = _decode(item["encoding"], item["content"], where)
        total += len(content)
        if total > max_bytes:
            raise PayloadTooLarge(f"Files exceed {max_bytes} bytes in all.", param="files")
        files.append(UploadedFile(name, content))
    return files


_WRITER = '''
import base64, os
root = os.path.realpath(os.getcwd())
for name, data in FILES:
    path = os.path.realpath(os.path.join(root, name))
    if os.path.commonpath([root, path]) != root:
        raise ValueError("file name %r escapes the working directory" % name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(base64.b64decode(data))
'''


def writer_code(files: list[UploadedFile]) -> str:
    """Python source that writes ``files`` into the kernel's working directory.

    It runs in a namespace of its own, so the session's variables are untouched.
    """
    payload = [(f.name, base64.b64encode(f.content).decode("ascii")) for f in files]
    return (f"exec(compile({_WRITER!r}, '<tci-emulator files>', 'exec'), "
            f"{{'__name__': '__tci_files__', 'FILES': {payload!r}}})")
