"""What a user gets from ``pip install``: the sdist and the wheel built from it.

Both are built the way a release would be (the wheel from the unpacked sdist, which
shows that the sdist holds everything the build needs) with setuptools' PEP 517
backend, from a copy of the working tree: setuptools writes ``build/`` and
``rtlink.egg-info/`` next to the sources, and the repository's own egg-info belongs to
the editable install.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest

from tests.support import ROOT

# Directories that are no part of the sources (environments, caches, build output);
# "build" and "dist" only at the top: js-client/dist holds the committed client builds.
_NOT_SOURCES = {
    ".git", "node_modules", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
    ".hypothesis",
}
_NOT_SOURCES_AT_TOP = {".venv", ".venv-min", ".venv-lock", "build", "dist"}

_STATIC = ["rtlink/static/client.js", "rtlink/static/client.mjs", "rtlink/static/presence.mjs",
           "rtlink/static/index.html"]


def _ignore(directory: str, names: list[str]) -> set[str]:
    skip = _NOT_SOURCES | (_NOT_SOURCES_AT_TOP if Path(directory) == ROOT else set())
    return {name for name in names if name in skip or name.endswith(".egg-info")}


def _backend(hook: str, source: Path, out: Path) -> Path:
    """Run one PEP 517 hook of setuptools' backend in ``source``, without build
    isolation (the test environment has setuptools and wheel, and isolation would
    fetch them), and return the file it built in ``out``."""
    out.mkdir(exist_ok=True)
    code = f"import sys; from setuptools import build_meta; build_meta.{hook}(sys.argv[1])"
    run = subprocess.run(
        [sys.executable, "-c", code, str(out)],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, f"{hook} failed:\n{run.stdout}\n{run.stderr}"
    (made,) = out.iterdir()
    return made


class Built:
    """The sdist and the wheel built from it, and what they hold.

    Attributes:
        sdist: The sdist file.
        sdist_files: The names in the sdist, below its top directory (``rtlink-<version>/``).
        wheel: The wheel file.
        wheel_files: The names in the wheel.
        dist_info: The wheel's ``.dist-info`` directory.
        license: The wheel's ``licenses/LICENSE``.
        metadata: The wheel's ``METADATA``.
    """

    def __init__(self, tmp: Path) -> None:
        tree = tmp / "tree"
        shutil.copytree(ROOT, tree, ignore=_ignore, symlinks=True)
        self.sdist = _backend("build_sdist", tree, tmp / "sdist")
        with tarfile.open(self.sdist) as archive:
            self.sdist_files = {
                name.partition("/")[2] for name in archive.getnames() if "/" in name
            }
            # Extraction filters came in 3.11.4; 3.12 and 3.13 warn when none is given.
            if hasattr(tarfile, "data_filter"):
                archive.extractall(tmp / "unpacked", filter="data")
            else:
                archive.extractall(tmp / "unpacked")
        (unpacked,) = (tmp / "unpacked").iterdir()
        self.wheel = _backend("build_wheel", unpacked, tmp / "wheel")
        with zipfile.ZipFile(self.wheel) as archive:
            self.wheel_files = set(archive.namelist())
            (self.dist_info,) = {
                name.split("/")[0] for name in self.wheel_files if ".dist-info/" in name
            }
            self.license = archive.read(f"{self.dist_info}/licenses/LICENSE").decode()
            metadata = archive.read(f"{self.dist_info}/METADATA").decode()
        self.metadata: Message = Parser().parsestr(metadata)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """Builds once for the module: the build is most of the time these tests take."""
    return Built(tmp_path_factory.mktemp("packaging"))


def test_license_is_in_the_sdist_and_the_wheel(built: Built) -> None:
    license = (ROOT / "LICENSE").read_text()
    assert license.startswith("MIT License")
    assert "LICENSE" in built.sdist_files
    assert built.license == license


def test_metadata(built: Built) -> None:
    metadata = built.metadata
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    urls = dict(entry.split(", ", 1) for entry in metadata.get_all("Project-URL", []))
    assert {"Homepage", "Documentation", "Repository", "Issues"} <= urls.keys()
    assert all(url.startswith("https://github.com/rtlink/rtlink") for url in urls.values())
    classifiers = metadata.get_all("Classifier", [])
    assert "Typing :: Typed" in classifiers
    assert "Framework :: aiohttp" in classifiers
    # PEP 639: the expression replaces License :: classifiers (setuptools refuses both).
    assert not [c for c in classifiers if c.startswith("License ::")]
    assert metadata["Author"]
    assert metadata["Keywords"]


def test_wheel_has_the_typing_marker_and_the_browser_client(built: Built) -> None:
    assert {"rtlink/py.typed", *_STATIC} <= built.wheel_files
    # The console script's package (rtlink.cli:main) and the configuration it loads.
    assert {"rtlink/cli/__init__.py", "rtlink/config/__init__.py"} <= built.wheel_files
    # Nothing but the package and its metadata: no tests, bench or examples packages.
    tops = {name.split("/")[0] for name in built.wheel_files}
    assert tops == {"rtlink", built.dist_info}


def test_sdist_holds_what_the_build_needs_and_no_tests(built: Built) -> None:
    assert {"pyproject.toml", "README.md", "PKG-INFO", "rtlink/py.typed", *_STATIC} <= (
        built.sdist_files
    )
    # The tests need the whole repository (their support modules, js-client/, the
    # nginx and Redis harnesses); MANIFEST.in keeps them and the rest of it out.
    left_out = ("tests/", "bench/", "docs/", "examples/", "js-client/", "requirements/", ".ci/")
    assert not [name for name in built.sdist_files if name.startswith(left_out)]
