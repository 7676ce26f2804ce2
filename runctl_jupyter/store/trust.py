"""A shared record is code: whether its pickled objects may be loaded (docs/reliability.md, "Trust").

A record carries its run's notebook objects pickled in `metadata.runctl.objects_b64`,
which no cell shows, and unpickling can run any code. Trust is Jupyter's own: the
notebook signatures nbformat's `NotebookNotary` keeps under the Jupyter data folder
(`jupyter --data-dir`, or JUPYTER_DATA_DIR), an HMAC over the whole notebook with a
secret that never leaves this machine, the same one JupyterLab and `jupyter trust` use.

A record is trusted when that notary has signed it, or when it is the record of a
run of this home (the run folder with its id holds the very objects.pkl it carries,
which this home wrote when it started the run): then it is signed, so its copies are
trusted too, and JupyterLab shows it trusted. Any other record with objects is
refused until the user says `--trust` (which signs it, as `jupyter trust` would).
"""

from __future__ import annotations

import base64
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import RunctlError


@contextmanager
def _notary() -> Iterator[Any]:
    from nbformat.sign import NotebookNotary

    notary = NotebookNotary()
    try:
        yield notary
    finally:
        close = getattr(notary, "close", None)  # nbformat >= 5.11 holds the database open
        if close is not None:
            close()


def _read(path: Path) -> Any:
    """The notebook as Jupyter reads it (what its signature is computed over)."""
    import nbformat

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nbformat.read(str(path), as_version=4)


def _carried(notebook: Any) -> bytes | None:
    encoded = ((notebook.get("metadata") or {}).get("runctl") or {}).get("objects_b64")
    return base64.b64decode(encoded) if encoded else None


def is_own_record(notebook: Any, run_dir: Path) -> bool:
    """The record of the run in `run_dir`: its id, and the objects.pkl this home wrote."""
    spec = ((notebook.get("metadata") or {}).get("runctl") or {}).get("spec") or {}
    if spec.get("run_id") != Path(run_dir).name or not Path(run_dir).is_dir():
        return False
    objects = Path(run_dir) / "objects.pkl"
    return (objects.read_bytes() if objects.is_file() else None) == _carried(notebook)


def sign_own_record(record: str | os.PathLike, run_dir: Path) -> bool:
    """Sign `record` when it is the record of the run in `run_dir`; True when signed.
    Never raises: the store's refresh calls it, and an unsigned record of this home is
    still trusted by its run folder (`check_record_trust`)."""
    try:
        notebook = _read(Path(record))
        if not is_own_record(notebook, run_dir):
            return False
        with _notary() as notary:
            notary.sign(notebook)
        return True
    except Exception:  # noqa: BLE001 - not there yet, not a notebook, a locked database
        return False


def check_record_trust(path: str | os.PathLike, runs_dir: Path, trust: bool = False) -> None:
    """RunctlError (one line: what it holds, how to trust it) unless the record's objects
    may be unpickled; a record with none needs no trust (its code is in its cells)."""
    path = Path(path)
    notebook = _read(path)
    data = _carried(notebook)
    if data is None:
        return
    with _notary() as notary:
        if notary.check_signature(notebook):
            return
        run_id = str((notebook.metadata.get("runctl", {}).get("spec") or {}).get("run_id", ""))
        if trust or (run_id and is_own_record(notebook, runs_dir / run_id)):
            notary.sign(notebook)
            return
    names = notebook.metadata["runctl"]["spec"].get("objects") or []
    imports = pickle_imports(data)
    raise RunctlError(
        f"{path} was not written or trusted here and holds pickled objects "
        f"({', '.join(map(str, names)) or 'unnamed'}) that would import "
        f"{', '.join(imports) or 'nothing'} when loaded, and unpickling can run any code: "
        f"if you trust where it came from, add --trust"
    )


_STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING"}


def pickle_imports(data: bytes, limit: int = 8) -> list[str]:
    """`module.name` of what the pickle imports, read from its opcodes without running
    it (the record's own claims about its objects are not to be believed)."""
    import pickletools

    found: list[str] = []
    memo: dict[int, Any] = {}
    pushed: list[Any] = []  # the values pushed so far, enough to name a STACK_GLOBAL
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(pushed) >= 2:
                found.append(f"{pushed[-2]}.{pushed[-1]}")
            if op.name in _STRINGS:
                pushed.append(arg)
            elif op.name == "MEMOIZE":
                memo[len(memo)] = pushed[-1] if pushed else None
            elif op.name in ("PUT", "BINPUT", "LONG_BINPUT") and isinstance(arg, int):
                memo[arg] = pushed[-1] if pushed else None
            elif op.name in ("GET", "BINGET", "LONG_BINGET") and isinstance(arg, int):
                pushed.append(memo.get(arg))
            else:
                pushed.append(None)
    except Exception:  # noqa: BLE001 - a damaged pickle: say so rather than guess
        found.append("(an unreadable pickle)")
    unique = list(dict.fromkeys(found))
    more = [f"{len(unique) - limit} more"] if len(unique) > limit else []
    return unique[:limit] + more
