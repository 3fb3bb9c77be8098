"""Packages in sessions: TCI's pre-installed set, and ``!pip install`` isolated per session."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import zipfile
from pathlib import Path

import pytest

from tci_emulator.packages import PREINSTALLED, missing_hint

from .helpers import Http, stdout_of


def test_every_preinstalled_package_imports_in_a_session(http: Http) -> None:
    code = ("import importlib\nfailed = []\n"
            f"for name in {sorted(PREINSTALLED)!r}:\n"
            "    try:\n        importlib.import_module(name)\n"
            "    except Exception as exc:\n        failed.append(f'{name}: {exc!r}')\n"
            "print(failed)")
    assert stdout_of(http.run(code)) == "[]\n"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(directory: Path, name: str = "tci_tiny_pkg", version: str = "0.1") -> Path:
    """A minimal pure-Python wheel, built here so the test needs no network."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": b"MESSAGE = 'tiny package loaded'\n",
        f"{dist_info}/METADATA":
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tci-emulator-tests\n"
                              b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [_record_line(path, data) for path, data in files.items()]
    record.append(f"{dist_info}/RECORD,,")
    path = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for member, data in files.items():
            wheel.writestr(member, data)
        wheel.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return path


def test_pip_install_stays_inside_its_session(http: Http, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    # Uploaded with the call: the sandbox shows a session nothing of the host's files.
    upload = {"name": wheel.name, "encoding": "base64",
              "content": base64.b64encode(wheel.read_bytes()).decode()}
    installer = http.run(f"!pip install --no-index --quiet {wheel.name}",
                         files=[upload])["session_id"]
    assert stdout_of(http.run("import tci_tiny_pkg\nprint(tci_tiny_pkg.MESSAGE)", installer)) == \
        "tiny package loaded\n"
    # A subprocess of the session sees it too (PYTHONPATH carries the session's target).
    assert "tiny package loaded" in stdout_of(http.run(
        "!python -c 'import tci_tiny_pkg; print(tci_tiny_pkg.MESSAGE)'", installer))
    other = http.run("import importlib.util\nprint(importlib.util.find_spec('tci_tiny_pkg'))")
    assert stdout_of(other) == "None\n"
    assert importlib.util.find_spec("tci_tiny_pkg") is None  # the server's own interpreter


def test_missing_preinstalled_package_error_ends_with_the_extra_that_provides_it(
        http: Http) -> None:
    # A session whose path has no site-packages: pandas is as missing as without the extra.
    # (IPython's traceback formatter is imported first: it lives there too.)
    code = ("import sys, stack_data\n"
            "sys.path[:] = [p for p in sys.path if 'site-packages' not in p]\n"
            "import pandas.core.frame")
    [error] = [o["data"] for o in http.run(code)["outputs"] if o["type"] == "error"]
    *_, name_line, hint = error.splitlines()
    assert name_line == "ModuleNotFoundError: No module named 'pandas'"
    assert hint == ("tci-emulator: pandas is one of the packages TCI has pre-installed; install "
                    "them where the emulator runs with: pip install 'tci-emulator[packages]'")


def test_missing_module_outside_the_preinstalled_set_gets_no_hint(http: Http) -> None:
    [error] = [o["data"] for o in http.run("import no_such_module_tci")["outputs"]
               if o["type"] == "error"]
    assert error.splitlines()[-1] == "ModuleNotFoundError: No module named 'no_such_module_tci'"
    assert "tci-emulator" not in error


@pytest.mark.parametrize("ename,evalue,dist", [
    ("ModuleNotFoundError", "No module named 'sklearn'", "scikit-learn"),
    ("ModuleNotFoundError", "No module named 'cv2.data'", "opencv-python-headless"),
    ("ModuleNotFoundError", "No module named 'mypackage'", None),
    ("ImportError", "No module named 'pandas'", None),
    ("ModuleNotFoundError", "import of pandas halted; None in sys.modules", None),
])
def test_hint_names_the_distribution_of_the_top_level_module(ename: str, evalue: str,
                                                              dist: str | None) -> None:
    hint = missing_hint(ename, evalue)
    if dist is None:
        assert hint is None
    else:
        assert hint is not None and hint.startswith(f"tci-emulator: {dist} is one of")
