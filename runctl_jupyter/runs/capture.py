"""The notebook objects a cell uses but does not define, and how they travel.

Kernel side. `check_syntax` and `free_names` are pure `ast`; IPython and
cloudpickle are imported only when a function needs them.

A cell runs in its own process, so anything it reads from earlier cells (a
function, a class, a data array) must be shipped: `free_names` finds the names
the cell reads but does not bind first, `collect_objects` keeps those present in
the user's namespace, `ship_objects` cloudpickles them (local modules by value).
"""

from __future__ import annotations

import ast
import builtins
import os
import re
import sys
import sysconfig
from collections.abc import Iterable
from typing import Any

from ..errors import RunctlError

_BUILTINS = frozenset(dir(builtins))

# IPython's own names in a user namespace: never shipped.
_IPYTHON_NAMES = frozenset(
    {"In", "Out", "_", "__", "___", "_oh", "_dh", "_ih", "_sh", "get_ipython", "exit", "quit"}
)
_IPYTHON_NAME_RE = re.compile(r"^_(i+|i\d+|\d+)$")

_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_COMPS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


# --------------------------------------------------------------------------- syntax


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


# --------------------------------------------------------------------------- free names


class _Scan:
    """What one scope does with names (nested scopes summarized by their outer refs)."""

    def __init__(self) -> None:
        self.loads: set[str] = set()  # read in this scope
        self.stores: set[str] = set()  # bound in this scope
        self.deletes: set[str] = set()
        self.declared: set[str] = set()  # global / nonlocal
        self.deferred: set[str] = set()  # read by nested functions/classes (at call time)
        self.comp_loads: set[str] = set()  # read by nested comprehensions (right away)

    def visit(self, node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            self.stores.add(node.name)
            for item in node.decorator_list:
                self.visit(item)
            self._visit_signature(node.args, node.returns)
            self.deferred |= _function_outer(node)
        elif isinstance(node, ast.Lambda):
            self._visit_signature(node.args, None)
            self.deferred |= _function_outer(node)
        elif isinstance(node, ast.ClassDef):
            self.stores.add(node.name)
            for item in [*node.decorator_list, *node.bases, *node.keywords]:
                self.visit(item)
            self.deferred |= _class_outer(node)
        elif isinstance(node, _COMPS):
            # The first iterable is evaluated in this scope; the rest is the comprehension's.
            self.visit(node.generators[0].iter)
            outer, walrus = _comprehension_outer(node)
            self.comp_loads |= outer
            self.stores |= walrus
        elif isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                self.loads.add(node.id)
            elif isinstance(node.ctx, ast.Del):
                self.loads.add(node.id)
                self.deletes.add(node.id)
            else:
                self.stores.add(node.id)
        elif isinstance(node, ast.AnnAssign) and node.value is None:
            self.visit(node.annotation)  # `x: int` alone binds nothing
            if not isinstance(node.target, ast.Name):
                self.visit(node.target)
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            self.loads.add(node.target.id)  # x += 1 reads x first
            self.stores.add(node.target.id)
            self.visit(node.value)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name != "*":
                    self.stores.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            self.declared.update(node.names)
        elif isinstance(node, ast.ExceptHandler):
            if node.name:
                self.stores.add(node.name)
            self._children(node)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)):
            if node.name:
                self.stores.add(node.name)
            self._children(node)
        elif isinstance(node, ast.MatchMapping):
            if node.rest:
                self.stores.add(node.rest)
            self._children(node)
        else:
            self._children(node)

    def _children(self, node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            self.visit(child)

    def _visit_signature(self, args: ast.arguments, returns: ast.expr | None) -> None:
        for default in [*args.defaults, *args.kw_defaults]:
            if default is not None:
                self.visit(default)
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if arg is not None and arg.annotation is not None:
                self.visit(arg.annotation)
        if returns is not None:
            self.visit(returns)


def _params(args: ast.arguments) -> set[str]:
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    return {arg.arg for arg in every if arg is not None}


def _function_outer(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> set[str]:
    """Names a function body reads that resolve outside it (globals or enclosing)."""
    scan = _Scan()
    body = [node.body] if isinstance(node, ast.Lambda) else node.body
    for stmt in body:
        scan.visit(stmt)
    local = (scan.stores | scan.deletes | _params(node.args)) - scan.declared
    return (scan.loads | scan.comp_loads | scan.deferred) - local


def _class_outer(node: ast.ClassDef) -> set[str]:
    """Names a class body reads from outside; methods do not see class-level names."""
    scan = _Scan()
    for stmt in node.body:
        scan.visit(stmt)
    local = (scan.stores | scan.deletes) - scan.declared
    return ((scan.loads | scan.comp_loads) - local) | scan.deferred


def _comprehension_outer(node: ast.expr) -> tuple[set[str], set[str]]:
    """(names read from outside, walrus targets that bind in the enclosing scope)."""
    scan = _Scan()
    targets = _Scan()
    for index, gen in enumerate(node.generators):
        targets.visit(gen.target)
        if index:
            scan.visit(gen.iter)
        for cond in gen.ifs:
            scan.visit(cond)
    if isinstance(node, ast.DictComp):
        scan.visit(node.key)
        scan.visit(node.value)
    else:
        scan.visit(node.elt)
    local = targets.stores
    walrus = scan.stores - local
    return (scan.loads | scan.comp_loads | scan.deferred | targets.loads) - local, walrus


class _ModuleFlow:
    """Module-level statements in order: a read before any binding is a free name."""

    def __init__(self) -> None:
        self.free: set[str] = set()
        self.deferred: set[str] = set()
        self.bound_anywhere: set[str] = set()

    def block(self, stmts: list[ast.stmt], bound: set[str]) -> set[str]:
        for stmt in stmts:
            bound = self.stmt(stmt, bound)
        return bound

    def expr(self, node: ast.AST | None, bound: set[str]) -> set[str]:
        """Read the names in a header expression (may bind through a walrus)."""
        if node is None:
            return bound
        return self.simple(node, bound)

    def bind(self, target: ast.AST | None, bound: set[str]) -> set[str]:
        if target is None:
            return bound
        return self.simple(target, bound)

    def simple(self, node: ast.AST, bound: set[str]) -> set[str]:
        scan = _Scan()
        scan.visit(node)
        self.free |= (scan.loads | scan.comp_loads) - bound
        self.deferred |= scan.deferred
        self.bound_anywhere |= scan.stores
        return (bound | scan.stores) - scan.deletes

    def stmt(self, node: ast.stmt, bound: set[str]) -> set[str]:
        if isinstance(node, ast.If):
            bound = self.expr(node.test, bound)
            return self.block(node.body, set(bound)) & self.block(node.orelse, set(bound))
        if isinstance(node, (ast.For, ast.AsyncFor)):
            # Loops are taken to run at least once: `for epoch in ...` then `epoch` is local.
            bound = self.expr(node.iter, bound)
            bound = self.block(node.body, self.bind(node.target, bound))
            return self.block(node.orelse, bound)
        if isinstance(node, ast.While):
            bound = self.expr(node.test, bound)
            bound = self.block(node.body, bound)
            return self.block(node.orelse, bound)
        if isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                bound = self.expr(item.context_expr, bound)
                bound = self.bind(item.optional_vars, bound)
            return self.block(node.body, bound)
        if isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            after_body = self.block(node.body, set(bound))
            outcomes = [self.block(node.orelse, after_body)]
            for handler in node.handlers:
                inner = self.expr(handler.type, set(bound))
                if handler.name:
                    inner = inner | {handler.name}
                    self.bound_anywhere.add(handler.name)
                outcomes.append(self.block(handler.body, inner))
            after = set.intersection(*outcomes)
            return self.block(node.finalbody, after)
        if type(node).__name__ == "Match":
            bound = self.expr(node.subject, bound)
            for case in node.cases:
                inner = self.bind(case.pattern, set(bound))
                inner = self.expr(case.guard, inner)
                self.block(case.body, inner)
            return bound
        return self.simple(node, bound)


def free_names(code: str) -> set[str]:
    """Names the code reads that it does not bind first at module level (minus builtins).

    Module-level statements are followed in order (`x += 1` reads a notebook `x`);
    names read inside functions, lambdas and classes count when the cell never
    binds them at module level. An `if` binds a name only if every branch does;
    a loop body is taken to run.
    """
    tree = ast.parse(code)
    flow = _ModuleFlow()
    flow.block(tree.body, set())
    names = flow.free | (flow.deferred - flow.bound_anywhere)
    return {name for name in names if name not in _BUILTINS}


# --------------------------------------------------------------------------- objects


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
