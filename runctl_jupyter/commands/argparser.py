"""argparse for a kernel: a bad line raises `UsageProblem` (a RunctlError with a
one-line message) and `--help` raises `HelpRequested` carrying the text, because
argparse's own print-and-exit would kill the kernel the magic runs in."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from ..errors import RunctlError

__all__ = ["HelpRequested", "RunctlArgumentParser", "UsageProblem"]


class UsageProblem(RunctlError):
    """A line that does not parse; `.usage` holds the subcommand's usage text."""

    def __init__(self, message: str, usage: str | None = None):
        super().__init__(message)
        self.usage = usage


class HelpRequested(Exception):
    """`--help` was asked for; `.text` is the help to print (never sys.exit in a kernel)."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


class _HelpAction(argparse.Action):
    def __init__(
        self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None
    ):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        raise HelpRequested(parser.format_help())


class RunctlArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of printing and exiting."""

    commands: dict[str, argparse.ArgumentParser]  # the top parser's: command -> its parser

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("add_help", False)
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("exit_on_error", False)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self.add_argument("-h", "--help", action=_HelpAction, help="show this help")

    def parse_known_intermixed_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self.usage is None:
            # argparse keeps the formatted usage here and %-formats it again for every
            # later help or error: "%runctl show" would print as "{'prog': ...}unctl show"
            self.usage = self.format_usage().removeprefix("usage: ").replace("%", "%%")
        return super().parse_known_intermixed_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        raise UsageProblem(f"{self.prog}: {message} (see {self.prog} --help)", self.format_usage())

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if status:
            self.error((message or "error").strip())
        raise HelpRequested(message or "")
