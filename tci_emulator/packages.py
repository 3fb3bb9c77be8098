"""The packages TCI documented as pre-installed, and help when they are missing.

They come with the ``packages`` extra (``pip install 'tci-emulator[packages]'``; ``sandbox`` is
its older name). Without it sessions still run, but ``import pandas`` fails; the error item then
ends with a line saying which extra provides the package, and ``serve`` says at start which of
them are missing, so the user learns the fix where they fall.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping

__all__ = ["EXTRA", "HINT_PREFIX", "PREINSTALLED", "missing_hint", "missing_packages"]

EXTRA = "packages"
HINT_PREFIX = "tci-emulator: "  # starts the line added to an error item

# Import name -> distribution name, for every package of TCI's documented set (the extra in
# setup.cfg lists the distributions; opencv-python-headless stands in for opencv-python).
PREINSTALLED: Mapping[str, str] = {
    "aiohttp": "aiohttp", "bs4": "beautifulsoup4", "bokeh": "bokeh", "gensim": "gensim",
    "imageio": "imageio", "joblib": "joblib", "librosa": "librosa", "matplotlib": "matplotlib",
    "nltk": "nltk", "numpy": "numpy", "cv2": "opencv-python-headless", "openpyxl": "openpyxl",
    "pandas": "pandas", "plotly": "plotly", "pytest": "pytest", "docx": "python-docx",
    "pytz": "pytz", "requests": "requests", "skimage": "scikit-image",
    "sklearn": "scikit-learn", "scipy": "scipy", "seaborn": "seaborn", "soundfile": "soundfile",
    "spacy": "spacy", "textblob": "textblob", "tornado": "tornado", "urllib3": "urllib3",
    "xarray": "xarray", "xlrd": "xlrd", "sympy": "sympy",
}

# CPython's message for a module that is nowhere on the path.
_NO_MODULE = re.compile(r"No module named '([^']+)'")


def missing_hint(ename: str, evalue: str) -> str | None:
    """The line to add to a session's ``ModuleNotFoundError`` for a package of TCI's set, or
    ``None`` for any other error (a user's own module gets no advice)."""
    if ename != "ModuleNotFoundError":
        return None
    match = _NO_MODULE.search(evalue)
    if match is None:
        return None
    top = match.group(1).split(".", 1)[0]
    dist = PREINSTALLED.get(top)
    if dist is None:
        return None
    return (f"{HINT_PREFIX}{dist} is one of the packages TCI has pre-installed; install them "
            f"where the emulator runs with: pip install 'tci-emulator[{EXTRA}]'")


def missing_packages() -> list[str]:
    """Distributions of TCI's set that the emulator's own interpreter cannot import (which is
    what a local kernel runs), in the order of :data:`PREINSTALLED`."""
    return [dist for name, dist in PREINSTALLED.items()
            if importlib.util.find_spec(name) is None]
