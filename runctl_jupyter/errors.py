"""One exception family. Every message says what happened and what to do next."""

from __future__ import annotations


class RunctlError(Exception):
    """Base class: the magic shows it as a one-line UsageError, the shell exits 2."""


class Reported(RunctlError):
    """A command's report (many lines, e.g. `aws doctor`) that ends in a problem: the
    surfaces show the report, then the error's one line."""

    def __init__(self, message: str, report: str = ""):
        super().__init__(message)
        self.report = report


class RunNotFound(RunctlError):
    pass


class AmbiguousRun(RunctlError):
    pass


class RunFailed(RunctlError):
    """A run ended in failure; carries the remote traceback for IPython to show."""

    def __init__(self, run_id: str, message: str, traceback_text: str | None = None):
        super().__init__(message)
        self.run_id = run_id
        self.traceback_text = traceback_text

    def _render_traceback_(self) -> list[str]:
        lines = []
        if self.traceback_text:
            lines.extend(self.traceback_text.rstrip("\n").splitlines())
        lines.append(str(self))
        return lines


class MissingDependency(RunctlError):
    def __init__(self, package: str, extra: str | None = None):
        hint = f"pip install 'runctl-jupyter[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{package} is needed for this; install it with: {hint}")
