"""The `%runctl` / `%%runctl` magic: words -> commands/ -> one Session call, and its tab
completion hooked into IPython's completer (the completions: commands/completion.py).

Kept cheap to import (`%load_ext runctl_jupyter` < 0.3 s): the session, widgets,
plotly, boto3 and cloudpickle are imported only when a command needs them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import (
    Magics,
    line_cell_magic,
    magics_class,
    no_var_expand,
    output_can_be_silenced,
)

from .commands import (
    HelpRequested,
    UsageProblem,
    format_help,
    parse,
    split_line,
    strip_global,
    to_call,
)
from .errors import Reported, RunctlError, RunFailed
from .params.values import merge_params

PROG = "%runctl"
COMPLETER_ID = "runctl"
_MAGIC_LINE = re.compile(r"^\s*(?:[\w.]+\s*=\s*)?(%%?)runctl\s")

_CELL_COMMANDS = ("train", "dev", "sweep")


def _help_text() -> str:
    return (
        "Run notebook cells and scripts as tracked training runs, here or on EC2 spot.\n\n"
        "    %%runctl train -p lr=0.05 -p hidden=[64,32] --experiment digits\n"
        "    <training code>\n\n"
        "    %runctl train SCRIPT.py [options] [-- SCRIPT ARGS]\n"
        "    %runctl dev SCRIPT.py --watch [options]       # edit: the run restarts\n"
        "    %%runctl sweep --grid lr=0.001,0.01 --max-parallel 2 --objective val_acc:max\n"
        "    %runctl runs | show RUN | logs RUN | attach RUN | stop RUN | resume RUN | rerun RUN\n"
        "    %runctl compare RUN RUN ... | sweeps | resources | cleanup | cost | execute NB.ipynb\n\n"
        "The line is split like a shell line (quotes group words: -p note='a b');\n"
        "nothing in it is expanded or executed. `%runctl COMMAND --help` shows a\n"
        "command's options.\n\n" + format_help(PROG)
    )


@magics_class
class RunctlMagics(Magics):
    """Holds the settings (c.Runctl, also %config Runctl) and one lazily made Session."""

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        from .config import Runctl

        self.config_obj = Runctl(parent=shell)
        if shell is not None and self.config_obj not in shell.configurables:
            shell.configurables.append(self.config_obj)  # so `%config Runctl.x = ...` works
        self._session: Any = None
        self._session_home: str | None = None

    @property
    def session(self) -> Any:
        """The Session of this shell, made on first use (again if c.Runctl.home changed)."""
        home = self.config_obj.home
        if self._session is None or self._session_home != home:
            from .session import Session

            self._session = Session(config=self.config_obj, shell=self.shell)
            self._session_home = home
        return self._session

    def build_call(self, line: str, cell: str | None = None) -> tuple[str, dict[str, Any]]:
        """The Session method and keyword arguments for a magic line (and its cell).

        Raises RunctlError (a usage problem) or HelpRequested.
        """
        ns = parse(split_line(line), prog=PROG)
        command = ns.command
        if cell is not None and command not in _CELL_COMMANDS:
            raise RunctlError(
                f"%%runctl {command} does not take a cell; write it on one line: %runctl {command} ..."
            )
        method, kwargs = to_call(ns)
        if command in _CELL_COMMANDS:
            self._add_code(ns, kwargs, cell)
            from_var = self._params_var(ns.params_var)
            if from_var:
                from .runs.secrets import refuse_secret_params

                refuse_secret_params(ns.params_var, from_var, ns.ship)
            kwargs["params"] = merge_params(from_var, ns.params)
            kwargs["user_ns"] = self.shell.user_ns if self.shell is not None else None
        return method, kwargs

    @staticmethod
    def _add_code(ns: Any, kwargs: dict[str, Any], cell: str | None) -> None:
        target_key = "target" if ns.command == "sweep" else "script"
        target = kwargs.get(target_key)
        if cell is not None:
            if target:
                raise RunctlError(
                    f"%%runctl {ns.command} got both a cell and {target!r}: run the cell "
                    f"(drop {target!r}) or the file (%runctl {ns.command} {target}, no cell)"
                )
            if ns.args:
                raise RunctlError(
                    "script arguments after -- are for a SCRIPT; a cell gets its values with -p KEY=VALUE"
                )
            if not cell.strip():
                raise RunctlError(
                    f"the cell under %%runctl {ns.command} is empty: write the training code "
                    f"below the magic line, or give a file: %runctl {ns.command} train.py"
                )
            kwargs["code"] = cell
            return
        kwargs["code"] = None
        if not target:
            if ns.command == "sweep" and ns.resume:
                return
            raise RunctlError(
                f"%runctl {ns.command} needs a SCRIPT.py; to run a cell, put "
                f"%%runctl {ns.command} ... on the cell's first line"
            )

    def _params_var(self, name: str | None) -> dict[str, Any] | None:
        if name is None:
            return None
        if not name.isidentifier():
            raise RunctlError(
                f"--params {name!r}: give the name of a notebook variable that holds a dict, "
                "e.g. --params config"
            )
        user_ns = self.shell.user_ns if self.shell is not None else {}
        if name not in user_ns:
            raise RunctlError(
                f"--params {name}: no variable {name!r} in the notebook; define it first "
                f"({name} = {{'lr': 0.01}}) or use -p KEY=VALUE"
            )
        value = user_ns[name]
        if not isinstance(value, Mapping):
            raise RunctlError(
                f"--params {name}: {name} is a {type(value).__name__}, not a dict of hyperparameters"
            )
        return dict(value)

    @no_var_expand
    @output_can_be_silenced
    @line_cell_magic
    def runctl(self, line: str = "", cell: str | None = None) -> Any:
        # the docstring is set below from the parser's help (`%runctl?`)
        if cell is None and line.rstrip().endswith(";"):
            line = line.rstrip()[:-1]  # `%runctl runs;` silences the output, as in Python
        try:
            method, kwargs = self.build_call(line, cell)
            result = self.session.call(method, kwargs)
        except HelpRequested as exc:
            print(exc.text.rstrip("\n"))
            return None
        except RunFailed:
            raise  # shows the run's own traceback (_render_traceback_) and stops Run All
        except UsageProblem as exc:
            raise UsageError(str(exc)) from None
        except Exception as exc:
            self._one_line(exc, line)
            raise  # not ours: a bug, with its traceback
        return result

    def _one_line(self, exc: Exception, line: str) -> None:
        """A runctl or AWS error (aws/errors.py) as a one-line UsageError; with `--debug`
        or c.Runctl.debug, re-raised whole (its traceback, for a bug report)."""
        if isinstance(exc, RunctlError):
            error: RunctlError = exc
        elif type(exc).__module__.split(".")[0] in ("botocore", "boto3", "s3transfer"):
            from .aws.errors import translate

            error = translate(exc)
        else:
            return
        if strip_global(split_line(line))[0] or self.config_obj.debug:
            return  # the caller re-raises it: IPython shows the whole traceback
        if isinstance(error, Reported) and error.report:
            print(error.report.rstrip("\n"))
        raise UsageError(str(error)) from None


RunctlMagics.runctl.__doc__ = _help_text()


def register_completer(shell: Any) -> None:
    """Tab completion on `%runctl ...` lines and a `%%runctl ...` cell's first line:
    an IPython matcher (API v2, IPython >= 8.6), added once per shell. It imports the
    parser and the store only when a line is completed (commands/completion.py)."""
    from IPython.core.completer import SimpleCompletion, context_matcher

    completer = getattr(shell, "Completer", None)
    if completer is None or any(
        getattr(m, "matcher_identifier", None) == COMPLETER_ID for m in completer.custom_matchers
    ):
        return

    @context_matcher(identifier=COMPLETER_ID, priority=100)
    def runctl_matcher(context: Any) -> dict[str, Any]:
        line = context.text_until_cursor
        found = _MAGIC_LINE.match(line)
        magics = shell.magics_manager.registry.get("RunctlMagics")
        if found is None or magics is None or (found.group(1) == "%%" and context.cursor_line):
            return {"completions": [], "suppress": False}
        from .commands.completion import complete

        fragment, words = complete(line[found.end() :], magics.config_obj.home, shell.user_ns)
        return {
            "completions": [SimpleCompletion(word, type="runctl") for word in words],
            "matched_fragment": fragment,
            "suppress": True,
            "ordered": True,
        }

    completer.custom_matchers.append(runctl_matcher)


_HELP_END = re.compile(r"^(\s*)%%?runctl\s+(?P<words>[^?\s][^?]*?)\s*\?\??\s*$")


def help_end_to_option(lines: list[str]) -> list[str]:
    """`%runctl train?` (or `%%runctl sweep??` on a cell) -> `%runctl train --help`.

    IPython's own `?` would look up an object named `train`; this runs first (a cleanup
    transform) so a subcommand's `?` shows its options, like `%runctl?` shows the list.
    A cell whose first line asks for help is only that request: its body is not run."""
    for i, line in enumerate(lines):
        found = _HELP_END.match(line.rstrip("\n"))
        if found is None or (line.lstrip().startswith("%%") and i > 0):
            continue
        request = f"{found.group(1)}%runctl {found.group('words')} --help\n"
        return (
            [request] if line.lstrip().startswith("%%") else [*lines[:i], request, *lines[i + 1 :]]
        )
    return lines


def register_help_transformer(shell: Any) -> None:
    """Add help_end_to_option to the shell's cleanup transforms, once."""
    transforms = getattr(shell, "input_transformers_cleanup", None)
    if transforms is not None and help_end_to_option not in transforms:
        transforms.append(help_end_to_option)
