"""Files uploaded with an execute call: validation, decoding, and the kernel-side writer.

Names are checked lexically here (non-empty, valid Unicode, no NUL, relative, never climbing out
with ``..``, at most :data:`MAX_NAME_BYTES` in all and :data:`MAX_PART_BYTES` per component, no
name used both as a file and as a folder in one request); contents are decoded (``string`` as
UTF-8, ``base64`` strictly). All of this happens before a session is created for the request, so
a refused upload never leaves behind a session (and a charge) its caller cannot see. The files
are then written by :func:`write_files` into the session's working directory (where
``docs/contract.md`` section 6 says uploads land) by the server, through a directory handle, so
nothing the session's code planted (symlinks, hard links, FIFOs, a changed current directory)
can move or block a write.
"""

from __future__ import annotations

import base64
import binascii
import errno
import os
import stat
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import InvalidRequest, PayloadTooLarge

__all__ = ["UploadedFile", "parse_files", "write_files", "writer_code", "utf8", "MAX_NAME_BYTES",
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
    # "C:\\x" and "C:/x" are Windows paths; "a:b" is an ordinary POSIX name.
    if name.startswith(("/", "\\")) or (len(name) > 2 and name[1] == ":" and name[2] in "/\\"):
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
        raise InvalidRequest("File content is not valid base64.",
                             param=f"{where}.content") from None


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


_NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
          (stat.S_ISBLK, "a device"), (stat.S_ISDIR, "a folder"))


def write_files(root: Path, files: Sequence[UploadedFile]) -> None:
    """Write ``files`` beneath ``root`` (the session's directory), whatever its code planted.

    The server writes, not the kernel, and never through a path string: it holds ``root``
    open and walks each name one component at a time with ``O_NOFOLLOW`` relative to the folder
    it holds, so a symlink (even one swapped in during the upload), ``..`` or the kernel's
    current directory cannot lead a write elsewhere. Each file is written to a fresh temporary
    entry and renamed over its name, so a hard link planted under that name (to a file
    outside) is replaced, never written through, and a reader never sees half a file. A FIFO,
    socket, device or folder in the way is refused at once, before anything blocks on it.

    Raises :class:`InvalidRequest` naming ``files[i].name`` of the first file that cannot be
    written; the files before it are written.
    """
    try:
        root_fd = os.open(root, _NOFOLLOW_DIR)
    except OSError as exc:
        raise InvalidRequest(f"The session's directory cannot take files: {_why(exc)}",
                             param="files") from None
    try:
        for index, file in enumerate(files):
            try:
                _write_beneath(root_fd, file)
            except (OSError, _InTheWay) as exc:
                raise InvalidRequest(f"File {file.name!r} could not be written: {_why(exc)}",
                                     param=f"files[{index}].name") from None
    finally:
        os.close(root_fd)


class _InTheWay(Exception):
    """Something that is not a regular file holds an uploaded file's name."""


def _why(exc: BaseException) -> str:
    if isinstance(exc, _InTheWay):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return "a symbolic link or a file is in the way of one of its folders."
    return os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else str(exc)


def _write_beneath(root_fd: int, file: UploadedFile) -> None:
    *folders, leaf = file.name.split("/")
    fd = root_fd
    try:
        for part in folders:
            try:
                os.mkdir(part, 0o777, dir_fd=fd)
            except FileExistsError:
                pass
            inner = os.open(part, _NOFOLLOW_DIR, dir_fd=fd)
            if fd != root_fd:
                os.close(fd)
            fd = inner
        _replace(fd, leaf, file.content)
    finally:
        if fd != root_fd:
            os.close(fd)


def _replace(dir_fd: int, leaf: str, content: bytes) -> None:
    """Write ``content`` as ``leaf`` in the folder ``dir_fd``: a new inode renamed into place."""
    try:
        mode = os.stat(leaf, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None:
        for test, kind in _KINDS:
            if test(mode):
                raise _InTheWay(f"{kind} is in the way.")
    temp = f".tci-upload-{uuid.uuid4().hex}"
    out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                  0o666, dir_fd=dir_fd)
    try:
        with os.fdopen(out, "wb", closefd=True) as handle:
            handle.write(content)
        os.rename(temp, leaf, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(temp, dir_fd=dir_fd)
        except OSError:
            pass
        raise


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
    """Python source that writes ``files`` into the kernel's working directory, for kernels
    that a provisioner runs on another machine, where the server cannot reach the directory.

    It runs in a namespace of its own, so the session's variables are untouched. It checks
    each resolved path but, running as the session's own code, cannot defend against that
    code: local kernels get :func:`write_files` instead.
    """
    payload = [(f.name, base64.b64encode(f.content).decode("ascii")) for f in files]
    return (f"exec(compile({_WRITER!r}, '<tci-emulator files>', 'exec'), "
            f"{{'__name__': '__tci_files__', 'FILES': {payload!r}}})")
