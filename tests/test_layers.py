"""One import direction: every `import` in the package (at module level or inside a
function) goes down the order written in docs/architecture.md ("Import order"), never
up and never sideways; and the modules shipped to an instance import only the
standard library (boto3 only in the agent's AWS side). Each failure names the line."""

from __future__ import annotations

import ast
import re
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "runctl_jupyter"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
# The agent's AWS side on EC2: its S3 and EC2 clients, --data staging with boto3's
# transfers, and the spot price refresh. The bootstrap installs boto3 there, nothing else.
AWS_SIDE = {"agent/clients.py", "agent/data.py", "agent/cost.py", "agent/ecr.py"}
AWS_PACKAGES = {"boto3", "botocore"}
# A whole-notebook run (`runctl execute`) runs papermill, and only on this machine:
# `execute` has no --backend, so the instance never takes that path.
LOCAL_ONLY = {("agent/runner.py", "papermill")}
# `train --debug` runs debugpy in the run's process: agent/debugger.py imports it inside a
# function, which the runner calls only for a --debug run (the bundle then pins debugpy).
DEBUG_ONLY = {("agent/debugger.py", "debugpy")}


def layer_order(text: str) -> dict[str, int]:
    """{unit: level} from the first indented block after `## Import order`: one level a
    line, the units first (comma separated), then two spaces and what they are."""
    section = text.split("## Import order", 1)[1]
    block = re.search(r"\n((?:    \S.*\n)+)", section)
    assert block, "docs/architecture.md: `## Import order` has no indented block"
    levels: dict[str, int] = {}
    for level, line in enumerate(block.group(1).splitlines()):
        names = re.split(r"\s{2,}", line.strip())[0]
        for name in names.split(","):
            levels[name.strip()] = level
    return levels


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str:
    """The layer a module belongs to: its top-level name in the package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


@cache
def is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (ROOT / rel.with_suffix(".py")).exists() or (ROOT / rel / "__init__.py").exists()


def imports(path: Path, top_level_only: bool = False) -> list[tuple[int, str]]:
    """(line, module) for every import of the file (or only those that run when it is
    imported), relative ones resolved; `from P import name` counts as P.name when that
    is a module."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    tree = ast.parse(path.read_text(), str(path))
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = [f"{target}.{a.name}" for a in node.names if is_module(f"{target}.{a.name}")]
            found += [(node.lineno, name) for name in subs or [target]]
    return found


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def layer_problems(levels: dict[str, int], files: list[Path]) -> list[str]:
    problems = []
    for path in files:
        here = unit_of(module_name(path))
        for line, target in imports(path):
            if not target.startswith("runctl_jupyter"):
                continue
            there = unit_of(target)
            if there == here:
                continue
            where = f"{path.relative_to(ROOT)}:{line} imports {target}"
            if here not in levels or there not in levels:
                missing = here if here not in levels else there
                problems.append(f"{where}: `{missing}` is not in the import order")
            elif levels[there] < levels[here]:
                problems.append(f"{where}: upward ({there} is above {here})")
            elif levels[there] == levels[here]:
                problems.append(f"{where}: sideways ({there} and {here} share a level)")
    return problems


def shipped() -> set[Path]:
    """The modules an instance runs: runtime, the agent and everything they import."""
    todo = [PACKAGE / "runtime.py", *sorted((PACKAGE / "agent").glob("*.py"))]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        # the package's own hooks (magics, server, lab paths) run in Jupyter, never there
        for _, target in imports(path, top_level_only=path == PACKAGE / "__init__.py"):
            if target.startswith("runctl_jupyter"):
                rel = Path(*target.split("."))
                for candidate in (ROOT / rel.with_suffix(".py"), ROOT / rel / "__init__.py"):
                    if candidate.exists():
                        todo.append(candidate)
                # importing a.b.c runs a/__init__ and a/b/__init__ too
                for i in range(1, len(rel.parts)):
                    todo.append(ROOT / Path(*rel.parts[:i]) / "__init__.py")
    return seen


def test_the_import_order_names_every_part_of_the_package():
    levels = layer_order(ARCHITECTURE.read_text())
    units = {unit_of(module_name(p)) for p in sources()}
    assert units - set(levels) == set(), "add these to docs/architecture.md's Import order"
    assert set(levels) - units == set(), "the Import order names parts that do not exist"


def test_every_import_in_the_package_names_a_module_that_exists():
    missing = [
        f"{path.relative_to(ROOT)}:{line} imports {target}, which does not exist"
        for path in sources()
        for line, target in imports(path)
        if target.startswith("runctl_jupyter") and not is_module(target)
    ]
    assert missing == [], "\n".join(missing)


def test_every_import_goes_down_the_layers():
    problems = layer_problems(layer_order(ARCHITECTURE.read_text()), sources())
    assert problems == [], "\n".join(problems)


def test_an_upward_import_is_found_and_named(tmp_path):
    levels = layer_order(ARCHITECTURE.read_text())
    planted = PACKAGE / "store" / "_planted_upward.py"
    planted.write_text("def f():\n    from ..session import Session\n    return Session\n")
    try:
        problems = layer_problems(levels, [planted])
    finally:
        planted.unlink()
    assert problems == [
        "runctl_jupyter/store/_planted_upward.py:2 imports runctl_jupyter.session: "
        "upward (session is above store)"
    ]


def test_the_modules_shipped_to_an_instance_import_only_the_standard_library():
    stdlib = set(sys.stdlib_module_names)
    problems = []
    for path in sorted(shipped()):
        rel = path.relative_to(PACKAGE).as_posix()
        for line, target in imports(path):
            top = target.split(".")[0]
            if top in stdlib or top == "runctl_jupyter" or top == "__future__":
                continue
            if top in AWS_PACKAGES and rel in AWS_SIDE or (rel, top) in LOCAL_ONLY | DEBUG_ONLY:
                continue
            problems.append(f"runctl_jupyter/{rel}:{line} imports {target}")
    assert problems == [], "shipped to instances, stdlib only:\n" + "\n".join(problems)


def embedded_python() -> list[tuple[str, str]]:
    """(where, source) of the Python the package sends as text (the boot script's
    staging step, run on the instance): strings that parse and import runctl_jupyter."""
    found = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
                if "import" not in text or "runctl_jupyter" not in text:
                    continue
                try:
                    ast.parse(text)
                except SyntaxError:
                    continue
                found.append((f"{path.relative_to(ROOT)}:{node.lineno}", text))
    return found


def test_the_python_sent_as_text_imports_names_that_exist():
    import importlib

    sent = embedded_python()
    assert any("agent" in text for _, text in sent), "the boot script's Python was not found"
    problems = []
    for where, text in sent:
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "runctl_jupyter"
            ):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    name = f"{node.module}.{alias.name}"
                    if not hasattr(module, alias.name) and not is_module(name):
                        problems.append(f"{where}: imports {name}, which does not exist")
    assert problems == [], "\n".join(problems)


def test_the_optional_imports_of_shipped_modules_run_only_when_called():
    """papermill and debugpy are imported inside the function that needs them, never
    when the module is imported (an instance without them still runs every other run)."""
    top_level = [
        f"runctl_jupyter/{rel}:{line} imports {target} at module level"
        for rel, package in sorted(LOCAL_ONLY | DEBUG_ONLY)
        for line, target in imports(PACKAGE / rel, top_level_only=True)
        if target.split(".")[0] == package
    ]
    assert top_level == []
    for rel, package in LOCAL_ONLY | DEBUG_ONLY:
        assert any(t.split(".")[0] == package for _, t in imports(PACKAGE / rel)), rel
