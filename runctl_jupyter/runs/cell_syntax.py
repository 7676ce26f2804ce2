"""Can the cell run as plain Python? A run executes it without IPython, so a
SyntaxError, a %magic or a top-level await is refused before the run starts, with
the line and what to write instead. IPython is imported only to find a magic's line.
"""

from __future__ import annotations

import ast

from ..errors import RunctlError


def check_syntax(code: str, line_offset: int = 0) -> None:
    """Raise RunctlError naming the line if `code` cannot run as plain Python.

    IPython syntax (`%time`, `!ls`, `x?`) gets its own message: a run executes
    the cell as plain Python, where magics and shell escapes do not exist.
    `line_offset` is added to reported line numbers (the `%%runctl` line above
    the cell body makes it 1).
    """
    try:
        compile(code, "<cell>", "exec", dont_inherit=True)
        return
    except SyntaxError as exc:
        error = exc
    magic_line = _ipython_syntax_line(code)
    if magic_line is not None:
        raise RunctlError(
            f"line {magic_line + line_offset} of the cell uses IPython syntax (a %magic, !shell "
            "or ? help), which is not available inside a runctl run (the cell runs as plain "
            "Python): use the Python equivalent (e.g. subprocess.run for !cmd) or move that "
            "line to another cell"
        )
    line = (error.lineno or 1) + line_offset
    message = error.msg or "invalid syntax"
    if "outside function" in message and ("await" in message or "async" in message):
        raise RunctlError(
            f"line {line} of the cell uses top-level await, which a notebook allows but a run "
            "(plain Python) does not: put the code in `async def main():` and call "
            "`asyncio.run(main())`"
        )
    raise RunctlError(
        f"{type(error).__name__} in the cell, line {line}: {message}: fix the cell and run it again"
    )


def _ipython_syntax_line(code: str) -> int | None:
    """The first line IPython's transformer turns into a get_ipython() call, if any."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # no IPython (a plain shell): nothing to detect
        return None
    try:
        transformed = TransformerManager().transform_cell(code)
    except Exception:  # the transformer gave up: report the plain SyntaxError
        return None
    if transformed == code or "get_ipython()" not in transformed:
        return None
    try:
        tree = ast.parse(transformed)
    except SyntaxError:
        tree = None
    if tree is not None:
        lines = [
            node.lineno
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "get_ipython"
        ]
        if lines:
            return min(lines)
    for number, text in enumerate(transformed.splitlines(), 1):
        if "get_ipython()" in text:
            return number
    return None
