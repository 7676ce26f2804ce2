"""The notebook objects a cell uses but does not define, and how they travel.

Kernel side; cloudpickle is imported only when a function needs it.

A cell runs in its own process, so anything it reads from earlier cells (a
function, a class, a data array) must be shipped: `free_names` (free_names.py)
finds the names the cell reads but does not bind first, `collect_objects` keeps
those present in the user's namespace, `ship_objects` cloudpickles them (local
modules by value), and `load_objects` unpickles them in the run's process.
`pack_objects` does it all for a new run or sweep, holding back the objects that
look like secrets (secrets.py) unless the user named them in `--ship NAME`.
"""

from __future__ import annotations

import os
import re
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from ..errors import RunctlError
from .free_names import free_names

# IPython's own names in a user namespace: never shipped.
_IPYTHON_NAMES = frozenset(
    {"In", "Out", "_", "__", "___", "_oh", "_dh", "_ih", "_sh", "get_ipython", "exit", "quit"}
)
_IPYTHON_NAME_RE = re.compile(r"^_(i+|i\d+|\d+)$")


def _is_ipython_name(name: str) -> bool:
    return name in _IPYTHON_NAMES or bool(_IPYTHON_NAME_RE.match(name))


def collect_objects(
    code: str, user_ns: dict[str, Any], exclude: Iterable[str] = ()
) -> dict[str, Any]:
    """The notebook objects the cell reads from `user_ns`, sorted by name.

    IPython's own names, the `runctl` object and `exclude` (the run's params,
    which are injected separately) are left out.
    """
    skip = set(exclude) | {"runctl"}
    names = sorted(free_names(code))
    return {
        name: user_ns[name]
        for name in names
        if name in user_ns and name not in skip and not _is_ipython_name(name)
    }


def _install_roots() -> list[str]:
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        try:
            roots.add(sysconfig.get_path(key))
        except KeyError:
            continue
    return [os.path.join(os.path.realpath(root), "") for root in roots if root]


def _local_modules(workdir: str | os.PathLike) -> list[str]:
    """Imported modules whose file lives under `workdir` (not an installed package).

    Paths are compared as strings (no file system call per module: a kernel has
    imported a thousand or more); symlinks are resolved for the few that match.
    """
    root = os.path.join(os.path.realpath(workdir), "")
    installed = [prefix for prefix in _install_roots() if prefix != root]
    names = []
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not isinstance(path, str) or name == "__main__" or name.startswith("runctl_jupyter"):
            continue
        path = os.path.abspath(path)
        if not path.startswith(root):
            continue
        path = os.path.realpath(path)
        if not path.startswith(root):
            continue
        parts = path.split(os.sep)
        if "site-packages" in parts or "dist-packages" in parts:
            continue
        if any(path.startswith(prefix) for prefix in installed):
            continue
        names.append(name)
    # Register top-level names only: a registered package covers its submodules.
    kept: list[str] = []
    for name in sorted(names, key=len):
        if not any(name.startswith(parent + ".") for parent in kept):
            kept.append(name)
    return kept


def _describe(exc: BaseException) -> str:
    first = (str(exc).splitlines() or [""])[0]
    if len(first) > 120:
        first = first[:117] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def ship_objects(objects: dict[str, Any], workdir: str | os.PathLike) -> bytes:
    """cloudpickle `objects` (a name -> object dict) for the run's process.

    Modules imported from files under `workdir` travel by value, so a run on
    another machine does not need the notebook's folder. Objects that cannot be
    pickled are all named in one RunctlError.
    """
    import cloudpickle

    registered = set(cloudpickle.list_registry_pickle_by_value())
    added = []
    for name in _local_modules(workdir):
        if name in registered:
            continue
        try:
            cloudpickle.register_pickle_by_value(sys.modules[name])
        except (ValueError, KeyError):
            continue
        added.append(name)
    try:
        try:
            return cloudpickle.dumps(objects)
        except Exception:  # find every culprit below
            pass
        failures = []
        for name, value in objects.items():
            try:
                cloudpickle.dumps(value)
            except Exception as exc:  # noqa: BLE001 - any pickling error is reported
                failures.append(f"'{name}' ({_describe(exc)})")
        if not failures:  # only fails together (e.g. a recursion limit): say so
            failures = ["(together)"]
        raise RunctlError(
            f"cannot ship notebook object(s) {', '.join(failures)}: "
            "create them inside the cell, or run with --no-vars"
        )
    finally:
        for name in added:
            module = sys.modules.get(name)
            if module is not None:
                try:
                    cloudpickle.unregister_pickle_by_value(module)
                except ValueError:
                    pass


class Shipment(NamedTuple):
    data: bytes | None  # the pickled objects, None when there are none
    names: list[str]  # what was shipped
    held_back: dict[str, str]  # name -> why it looks like a secret


def pack_objects(
    code: str,
    user_ns: dict[str, Any],
    workdir: str | os.PathLike,
    exclude: Iterable[str] = (),
    ship: Iterable[str] = (),
) -> Shipment:
    """The notebook objects the cell reads (and the `--ship` names), pickled, less
    those that look like secrets: the held-back names are said in one line on
    stderr, and hidden from the pickler, so a shipped function does not take them
    along as its globals either."""
    from .secrets import hold_back, key_like_texts, named_secrets, reached_globals

    ship = set(ship)
    for name in sorted(ship):
        if name not in user_ns:
            raise RunctlError(
                f"--ship {name}: there is no notebook variable {name!r}; check the name"
            )
    found = collect_objects(code, user_ns, exclude)
    found.update({name: user_ns[name] for name in ship if name not in exclude})
    held = hold_back(found, ship)
    objects = {name: value for name, value in found.items() if name not in held}
    held.update(hold_back(reached_globals(objects, user_ns), ship))
    secrets = {**named_secrets(user_ns, ship), **{name: user_ns[name] for name in held}}
    held_texts = key_like_texts(secrets)
    with _hidden(user_ns, held):
        data = ship_objects(objects, workdir) if objects else None
        carriers = _carriers(data, objects, workdir, ship, held_texts)
        if carriers:  # e.g. a client made with api_key=api_key, a key id in a closure
            held.update(carriers)
            objects = {name: value for name, value in objects.items() if name not in held}
            data = ship_objects(objects, workdir) if objects else None
    if held:
        reasons = ", ".join(f"{name} ({why})" for name, why in sorted(held.items()))
        print(
            f"[runctl] held back notebook variables that look like secrets: {reasons}; "
            "the run does not get them (add --ship NAME to send one)",
            file=sys.stderr,
            flush=True,
        )
    return Shipment(data, sorted(objects), held)


@contextmanager
def _hidden(user_ns: dict[str, Any], names: Iterable[str]) -> Iterator[None]:
    """Take `names` out of the notebook's namespace for a moment: cloudpickle ships a
    function with the globals it reads, found in that namespace."""
    taken = {name: user_ns.pop(name) for name in names if name in user_ns}
    try:
        yield
    finally:
        user_ns.update(taken)


def _carriers(
    data: bytes | None,
    objects: dict[str, Any],
    workdir: str | os.PathLike,
    ship: set[str],
    held_texts: dict[str, list[bytes]],
) -> dict[str, str]:
    """{name: why} for the objects whose pickle carries a secret (secrets.secret_inside:
    found in the bytes, so anywhere inside them); each object is pickled alone only
    when the whole carries one."""
    from .secrets import secret_inside

    if data is None or secret_inside(data, held_texts) is None:
        return {}
    found = {}
    for name, value in objects.items():
        why = (
            None
            if name in ship
            else secret_inside(ship_objects({name: value}, workdir), held_texts)
        )
        if why is not None:
            found[name] = why
    return found


def load_objects(data: bytes) -> dict[str, Any]:
    """The dict `ship_objects` made (in the run's process)."""
    import cloudpickle

    try:
        objects = cloudpickle.loads(data)
    except Exception as exc:  # noqa: BLE001 - one message for any unpickling error
        raise RunctlError(
            f"cannot load the shipped notebook objects ({_describe(exc)}): install what is "
            "missing where the run executes, or run with --no-vars"
        ) from exc
    if not isinstance(objects, dict):
        raise RunctlError(
            "shipped notebook objects are not a dict: rerun the cell to ship them again"
        )
    return objects
