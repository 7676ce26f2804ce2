"""The names a cell reads but does not bind first: the notebook objects it needs.

Pure `ast`, scope by scope: module-level statements are followed in order, while
functions, lambdas and classes read names when they are called, so those count
when the cell never binds them at module level. capture.py ships what this finds.
"""

from __future__ import annotations

import ast
import builtins
import sys

_BUILTINS = frozenset(dir(builtins))

_COMPS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
if sys.version_info >= (3, 11):
    _TRY = (ast.Try, ast.TryStar)
else:
    _TRY = (ast.Try,)


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
            for part in [*node.decorator_list, *node.bases, *node.keywords]:
                self.visit(part)
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


def _comprehension_outer(
    node: ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp,
) -> tuple[set[str], set[str]]:
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
        if isinstance(node, _TRY):
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
        if isinstance(node, ast.Match):
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
