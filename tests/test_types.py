"""The type checker (mypy, configured in pyproject.toml's [tool.mypy]; docs/types.md)
over the whole package: zero errors, the public API strict. A bad call against the
public API, planted in a file outside the package, must be an error, so a checker
that checks nothing (or types the API as Any) fails here too.

One mypy run serves both tests (a lock keeps two xdist workers from running it at
once; the second run is warm). Its cache is `.mypy_cache` at the repo root: a cold
run takes ~30 s, a warm one ~1 s."""

from __future__ import annotations

import fcntl
import hashlib
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "runctl_jupyter"

# Each line a bad call the checker must reject, with the error code it must give.
PLANTED = """\
from runctl_jupyter.runtime import runctl
from runctl_jupyter.session import Session

runctl.log(step="three", loss=0.5)  # arg-type
Session().runs(limit="a")  # arg-type
Session().train(code="pass", detach=True).status + 1  # operator
Session().show("r1").row  # union-attr
runctl.params.missing()  # attr-defined
"""


def package_files() -> list[str]:
    """The package's modules, listed here rather than found by mypy: test_layers.py
    plants a module in the package for a moment, which is no part of it."""
    return sorted(
        str(p.relative_to(ROOT))
        for p in PACKAGE.rglob("*.py")
        if "labextension" not in p.parts and not p.name.startswith("_planted")
    )


@pytest.fixture(scope="module")
def mypy_run() -> tuple[list[str], str]:
    files = package_files()
    tag = hashlib.sha1(str(ROOT).encode()).hexdigest()[:12]
    work = Path(tempfile.gettempdir()) / f"runctl-mypy-{tag}"
    work.mkdir(exist_ok=True)
    planted = work / "planted_api_misuse.py"  # one path: mypy caches errors with their path
    with open(work / "lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        planted.write_text(PLANTED)
        done = subprocess.run(
            [sys.executable, "-m", "mypy", "--config-file", "pyproject.toml", *files, str(planted)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=240,
        )
    assert done.returncode in (0, 1), f"mypy did not run:\n{done.stdout}\n{done.stderr}"
    checked = re.search(r"checked (\d+) source files", done.stdout)
    assert checked and int(checked.group(1)) == len(files) + 1, done.stdout
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    return errors, done.stdout


def test_the_package_type_checks_with_no_errors(mypy_run: tuple[list[str], str]) -> None:
    errors, _ = mypy_run
    in_package = [e for e in errors if "planted_api_misuse.py:" not in e]
    assert in_package == [], "mypy (python -m mypy):\n" + "\n".join(in_package)


def test_a_bad_call_against_the_public_api_is_a_type_error(
    mypy_run: tuple[list[str], str],
) -> None:
    errors, output = mypy_run
    expected = {
        (number, line.rsplit("# ", 1)[1])
        for number, line in enumerate(PLANTED.splitlines(), 1)
        if "# " in line
    }
    found = set()
    for error in errors:
        match = re.search(r"planted_api_misuse\.py:(\d+): error: .*\[([a-z-]+)\]$", error)
        if match:
            found.add((int(match.group(1)), match.group(2)))
    assert found == expected, output


def test_the_package_ships_py_typed() -> None:
    """PEP 561: with py.typed in the wheel, a user's checker reads these types."""
    assert (PACKAGE / "py.typed").is_file()
    pyproject = (ROOT / "pyproject.toml").read_text()
    wheel = pyproject.split("[tool.hatch.build.targets.wheel]", 1)[1].split("\n[", 1)[0]
    assert 'packages = ["runctl_jupyter"]' in wheel  # the folder, whole
    ignored = (ROOT / ".gitignore").read_text().split()  # hatch leaves out what git ignores
    assert not any(p in ignored for p in ("py.typed", "*.typed", "runctl_jupyter/py.typed"))
