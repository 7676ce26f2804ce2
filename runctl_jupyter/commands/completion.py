"""Tab completion for a `%runctl` / `%%runctl` line, from the real parser (so it never
drifts), the store's index and the bundled price table.

    complete("show ex", home)      # ("ex", ["exp-3", "exp-2"])  run ids and names, newest first
    complete("train --ins", home)  # ("--ins", ["--instance", "--instance-type"])
    complete("train --ship a", home, user_ns)  # ("a", ["api_key"])  notebook variables

`text` is the line after the magic's name, up to the cursor; the answer is the word
being completed (the fragment the completions replace) and the completions, in the
order to show them. IPython-free: magics.py hooks it into IPython's completer. Cheap:
one indexed store query, no refresh of run folders; the store and the parser are
imported on the first call, never at `%load_ext`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

# commands whose positional words are runs
RUN_COMMANDS = ("show", "logs", "attach", "stop", "resume", "rerun", "compare")
LIMIT = 200

_STORES: dict[str, Any] = {}


def complete(
    text: str, home: str | os.PathLike, user_ns: Mapping[str, Any] | None = None
) -> tuple[str, list[str]]:
    """(the word being completed, its completions) for `text`, the words after
    `%runctl` up to the cursor; `user_ns` is the notebook's namespace (for --ship)."""
    from . import COMMANDS, build_parser

    words = text.split()
    current = "" if not words or text[-1:].isspace() else words.pop()
    while words and words[0] == "--debug":
        words.pop(0)
    if not words:
        top = ["--debug", "--help", "--version"] if current.startswith("-") else COMMANDS
        return current, _starting(top, current)
    command, rest = words[0], words[1:]
    parser = build_parser("%runctl").commands.get(command)
    if parser is None or "--" in rest:  # after --: the script's own arguments
        return current, []
    options = _options(parser)
    if current.startswith("--") and "=" in current:
        option, _, value = current.partition("=")
        return value, _values(options.get(option), value, home, user_ns)
    if rest and _takes_value(options.get(rest[-1])):
        return current, _values(options[rest[-1]], current, home, user_ns)
    if current.startswith("-"):
        return current, _starting(list(options), current)
    return current, _positional(parser, command, _positionals(rest, options), current, home)


def _options(parser: Any) -> dict[str, Any]:
    """Each option string of a subparser, and its argparse action; not those its help
    hides (a sweep parses `--debug` only to refuse it)."""
    return {
        spelling: action
        for action in parser._actions
        if action.help != argparse.SUPPRESS
        for spelling in action.option_strings
    }


def _takes_value(action: Any) -> bool:
    return action is not None and action.nargs != 0


def _positionals(rest: list[str], options: dict[str, bool]) -> list[str]:
    """The positional words among `rest` (option values skipped)."""
    found, skip = [], False
    for word in rest:
        if skip:
            skip = False
        elif word.startswith("-"):
            skip = _takes_value(options.get(word))
        else:
            found.append(word)
    return found


def _positional(
    parser: Any, command: str, given: list[str], current: str, home: str | os.PathLike
) -> list[str]:
    if command in RUN_COMMANDS:
        if given and command != "compare":
            return []
        return [w for w in _store_words(home, "runs", current) if w not in given]
    if command == "execute":
        return [] if given else notebook_paths(current)
    positionals = [a for a in parser._actions if not a.option_strings]
    if len(given) < len(positionals) and positionals[len(given)].choices:
        return _starting(list(positionals[len(given)].choices), current)  # aws setup ...
    return []


def _values(
    action: Any, prefix: str, home: str | os.PathLike, user_ns: Mapping[str, Any] | None
) -> list[str]:
    """The values an option takes: experiments, instance types, notebook variables,
    or its own choices."""
    dest = getattr(action, "dest", None)
    if dest == "ship":
        return _starting(notebook_variables(user_ns or {}), prefix)
    if dest == "experiment":
        return _store_words(home, "experiments", prefix)
    if dest == "instance_type":
        return instance_types(prefix)
    return _starting(list(getattr(action, "choices", None) or ()), prefix)


def _starting(words: Any, prefix: str) -> list[str]:
    return [w for w in words if w.startswith(prefix)]


def _store_words(home: str | os.PathLike, kind: str, prefix: str) -> list[str]:
    """Run ids and names, or experiment names, from the index (no refresh); nothing
    when there is no store yet (completion never creates one)."""
    from ..store import Store
    from ..store.schema import DB_FILE

    home = str(Path(home).expanduser())
    store = _STORES.get(home)
    if store is None:
        if not os.path.exists(os.path.join(home, DB_FILE)):
            return []
        store = _STORES[home] = Store(home)
    return store.completion_words(kind, prefix, LIMIT)


_IPYTHON_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython"})


def notebook_variables(user_ns: Mapping[str, Any]) -> list[str]:
    """The user's own variables, sorted: no _names, IPython's names or modules."""
    return sorted(
        name
        for name, value in list(user_ns.items())
        if not name.startswith("_")
        and name not in _IPYTHON_NAMES
        and not isinstance(value, ModuleType)
    )


def instance_types(prefix: str) -> list[str]:
    """Instance types of the bundled price table, in the table's order (every region)."""
    from ..cost.prices import table

    found: dict[str, None] = {}
    for types in table()["on_demand"].values():
        for name in types:
            if name.startswith(prefix):
                found.setdefault(name)
    return list(found)


def notebook_paths(prefix: str) -> list[str]:
    """Notebooks (*.ipynb) and folders under the folder `prefix` names, as typed."""
    head = prefix[: prefix.rfind("/") + 1]  # the folder as typed ("" for here)
    start = prefix[len(head) :]
    where = Path(os.path.expanduser(head)) if head else Path(".")
    try:
        entries = sorted(os.scandir(where), key=lambda e: e.name)
    except OSError:
        return []
    found = []
    for entry in entries:
        name = entry.name
        if not name.startswith(start) or (name.startswith(".") and not start.startswith(".")):
            continue
        if entry.is_dir():
            found.append(head + name + "/")
        elif name.endswith(".ipynb"):
            found.append(head + name)
    return found
