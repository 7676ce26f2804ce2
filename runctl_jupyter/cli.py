"""The `runctl` shell command: the magic's subcommands, the same parser, the same Session.

    runctl train train.py -p lr=0.01 --detach
    runctl runs --experiment digits
    runctl aws doctor

Exit codes: 0 ok, 1 a run failed, 2 a usage or runctl error (an AWS error too: one
line, `aws/errors.py`), 3 a partial listing (`resources`, `cleanup`: a describe call
failed; what it could not read is named), 130 interrupted. `runctl --debug ...` (or
c.Runctl.debug) prints an error's full traceback before its line, for a bug report.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .commands import HelpRequested, UsageProblem, parse, strip_global, to_call
from .errors import Reported, RunctlError, RunFailed
from .params.values import merge_params

PROG = "runctl"

# commands that start or follow a run: Ctrl-C leaves the run going
_RUN_COMMANDS = ("train", "dev", "sweep", "resume", "rerun", "execute", "attach")


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _shell_text(message: str) -> str:
    """A message for the terminal: no magic spelling, no repeated prog."""
    message = message.replace("`%runctl ", "`runctl ")
    for prefix in (f"{PROG}: ", f"{PROG} "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def _params_file(path: str | None) -> dict[str, Any] | None:
    """In the shell, `--params FILE.json` (a notebook variable only exists in a kernel)."""
    if path is None:
        return None
    file = Path(path).expanduser()
    if not file.is_file():
        raise RunctlError(
            f"--params {path}: in the shell --params takes a JSON file of hyperparameters "
            "and there is no such file; check the path or use -p KEY=VALUE"
        )
    try:
        value = json.loads(file.read_text())
    except (ValueError, OSError) as exc:
        raise RunctlError(
            f"--params {path}: not a JSON file ({exc}); fix it or use -p KEY=VALUE"
        ) from None
    if not isinstance(value, dict):
        raise RunctlError(
            f"--params {path}: the file holds a {type(value).__name__}, not a JSON object"
        )
    return value


def build_call(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """The Session method and keyword arguments for a command line (no cell in a shell)."""
    ns = parse(argv, prog=PROG)
    method, kwargs = to_call(ns)
    if ns.command in ("train", "dev") and not ns.script:
        raise UsageProblem(
            f"{ns.command} needs SCRIPT.py in the shell (runctl {ns.command} train.py); "
            f"a cell runs with %%runctl {ns.command} in a notebook"
        )
    if ns.command == "sweep" and not ns.target and not ns.resume:
        raise UsageProblem(
            "sweep needs SCRIPT.py or NOTEBOOK.ipynb in the shell, or --resume SWEEP; "
            "a cell sweeps with %%runctl sweep in a notebook"
        )
    if ns.command in ("train", "dev", "sweep"):
        kwargs["code"] = None
        kwargs["params"] = merge_params(_params_file(ns.params_var), ns.params)
    return method, kwargs


def _detached_by_interrupt(method: str, kwargs: dict[str, Any], result: Any) -> bool:
    """A blocking train/resume/rerun/execute/attach that returns a still-active run was
    interrupted (the Session detaches on Ctrl-C and has already said how to stop it)."""
    if method not in _RUN_COMMANDS or kwargs.get("detach"):
        return False
    from .events import ACTIVE_STATUSES

    try:
        return getattr(result, "status", None) in ACTIVE_STATUSES
    except RunctlError:
        return False


def _warn_profile(path: Path, exc: Exception) -> None:
    _err(f"{PROG}: warning: ignoring {path}: {exc}")


def _make_session() -> Any:
    from .config import Runctl, profile_config
    from .session import Session

    return Session(config=Runctl(config=profile_config(_warn_profile)), shell=None)


def main(argv: list[str] | None = None) -> int:
    """Run one `runctl` command; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return _main(argv)
    except BrokenPipeError:  # `runctl runs | head`
        import os

        # as the Python docs advise: point stdout at devnull so the exit flush is quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _print(text: str) -> None:
    print(text if text.endswith("\n") else text + "\n", end="", flush=True)


def _aws_error(exc: BaseException) -> RunctlError | None:
    """A botocore exception as its one line (aws/errors.py); None for anything else (a bug)."""
    if type(exc).__module__.split(".")[0] not in ("botocore", "boto3", "s3transfer"):
        return None
    from .aws.errors import translate

    return translate(exc)


def _fail(exc: BaseException, line: RunctlError, debug: bool) -> int:
    """An error as one line on stderr (after its traceback with --debug); exit code 2."""
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(line, Reported) and line.report:
        _print(_shell_text(line.report))
    _err(f"{PROG}: error: {_shell_text(str(line))}")
    return 2


def _main(argv: list[str]) -> int:
    debug, words = strip_global(argv)
    command = words[0] if words else None
    try:
        method, kwargs = build_call(argv)
        session = _make_session()
        debug = debug or bool(getattr(session.config, "debug", False))
        result = session.call(method, kwargs)
    except HelpRequested as exc:
        _print(exc.text)
        return 0
    except RunFailed as exc:  # its traceback was streamed with the run's output already
        _err(f"{PROG}: {_shell_text(str(exc))}")
        return 1
    except UsageProblem as exc:
        _err(f"{PROG}: error: {_shell_text(str(exc))}")
        return 2
    except RunctlError as exc:
        return _fail(exc, exc, debug)
    except Exception as exc:
        line = _aws_error(exc)
        if line is None:
            raise
        return _fail(exc, line, debug)
    except KeyboardInterrupt:
        if command in _RUN_COMMANDS:
            _err(
                f"\n{PROG}: interrupted; a run started here goes on in the background: "
                f"`{PROG} runs` lists it, `{PROG} attach RUN` follows it, `{PROG} stop RUN` stops it"
            )
        else:
            _err(f"\n{PROG}: interrupted")
        return 130
    if result is not None:
        _print(_shell_text(str(result)))
    if _detached_by_interrupt(method, kwargs, result) or getattr(result, "interrupted", False):
        return 130  # Ctrl-C detached from the run: stop `runctl a && runctl b` chains
    return int(getattr(result, "exit_code", 0) or 0)  # 3: a partial listing


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
