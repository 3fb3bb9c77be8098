"""Validation of uploaded files (names and encodings) before anything reaches a kernel."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from tci_emulator.errors import InvalidRequest, PayloadTooLarge
from tci_emulator.files import UploadedFile, parse_files, write_files


def one(name: Any = "a.txt", encoding: Any = "string", content: Any = "x") -> list[Any]:
    return [{"name": name, "encoding": encoding, "content": content}]


def test_string_is_utf8_and_base64_is_decoded() -> None:
    files = parse_files([{"name": "t.txt", "encoding": "string", "content": "é"},
                         {"name": "dir/b.bin", "encoding": "base64",
                          "content": base64.b64encode(b"\x00\xff").decode()}],
                        max_files=10, max_bytes=100)
    assert files == [UploadedFile("t.txt", "é".encode()), UploadedFile("dir/b.bin", b"\x00\xff")]


@pytest.mark.parametrize("name", ["", "/etc/passwd", "\\x", "C:\\x", "../x", "a/../../x",
                                  "a\x00b", "dir/", ".", 5, None])
def test_bad_names_are_refused(name: Any) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_files(one(name=name), max_files=10, max_bytes=100)
    assert info.value.param == "files[0].name"


def test_harmless_dots_are_normalised() -> None:
    [file] = parse_files(one(name="./a//b/./c.txt"), max_files=10, max_bytes=100)
    assert file.name == "a/b/c.txt"


@pytest.mark.parametrize("encoding,content,param", [
    ("utf-16", "x", "files[0].encoding"), ("base64", "not base64!", "files[0].content"),
    ("base64", "YQ", "files[0].content"), ("string", 7, "files[0].content")])
def test_bad_encodings_and_contents_are_refused(encoding: Any, content: Any, param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_files(one(encoding=encoding, content=content), max_files=10, max_bytes=100)
    assert info.value.param == param


def test_limits_on_count_and_total_size() -> None:
    with pytest.raises(InvalidRequest):
        parse_files(one() * 3, max_files=2, max_bytes=100)
    with pytest.raises(PayloadTooLarge):
        parse_files(one(content="x" * 60) * 2, max_files=5, max_bytes=100)
    assert parse_files(None, max_files=0, max_bytes=0) == []


# -- writing beneath the session's directory (no kernel needed) -------------------------------

def test_write_files_creates_folders_and_replaces_a_planted_hard_link(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside.txt"
    root.mkdir()
    outside.write_text("original")
    os.link(outside, root / "linked.txt")
    write_files(root, [UploadedFile("a/b/c.txt", b"deep"), UploadedFile("linked.txt", b"new")])
    assert (root / "a/b/c.txt").read_bytes() == b"deep"
    assert (root / "linked.txt").read_bytes() == b"new" and outside.read_text() == "original"
    assert sorted(p.name for p in root.iterdir()) == ["a", "linked.txt"]  # no temporary left


@pytest.mark.parametrize("plant,message", [
    (lambda root: os.mkfifo(root / "x"), "FIFO"),
    (lambda root: (root / "x").mkdir(), "folder"),
    (lambda root: os.symlink("/tmp", root / "d"), "symbolic link"),
])
def test_write_files_refuses_what_is_in_the_way_at_once(tmp_path: Path, plant: Any,
                                                        message: str) -> None:
    plant(tmp_path)
    name = "d/x" if message == "symbolic link" else "x"
    with pytest.raises(InvalidRequest) as info:
        write_files(tmp_path, [UploadedFile("ok.txt", b"1"), UploadedFile(name, b"2")])
    assert info.value.param == "files[1].name" and message in str(info.value)
    assert (tmp_path / "ok.txt").read_bytes() == b"1"


def test_a_colon_in_a_name_is_accepted_but_a_windows_drive_is_not() -> None:
    assert parse_files(one(name="a:b"), max_files=10, max_bytes=100)[0].name == "a:b"
    with pytest.raises(InvalidRequest):
        parse_files(one(name="C:/x"), max_files=10, max_bytes=100)
