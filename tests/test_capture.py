"""cell_syntax.py, free_names.py, capture.py: syntax checks, free names, and shipping
notebook objects for real."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from IPython.core.interactiveshell import InteractiveShell

from runctl_jupyter.errors import RunctlError
from runctl_jupyter.runs.capture import collect_objects, load_objects, ship_objects
from runctl_jupyter.runs.cell_syntax import check_syntax
from runctl_jupyter.runs.free_names import free_names

REPO = Path(__file__).resolve().parents[1]


def run_python(script: str, *args: str, cwd: Path) -> str:
    """A fresh interpreter that can import runctl_jupyter, as the runner would."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=cwd, env=env
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def shell():
    ip = InteractiveShell.instance()
    yield ip


def fn(code: str) -> set[str]:
    return free_names(textwrap.dedent(code))


# ------------------------------------------------------------------ check_syntax


def test_valid_code_passes_syntax_check():
    check_syntax("x = 1\nfor i in range(3):\n    x += i\n")


def test_syntax_error_names_the_line():
    with pytest.raises(
        RunctlError, match=r"SyntaxError in the cell, line 3: .*fix the cell"
    ) as info:
        check_syntax("a = 1\nb = 2\nc = (\n")
    assert "\n" not in str(info.value)


def test_syntax_error_line_offset_counts_the_magic_line():
    with pytest.raises(RunctlError, match=r"line 2:"):
        check_syntax("x = = 1\n", line_offset=1)


@pytest.mark.parametrize("line", ["%time y = 2", "!ls -l", "files = !ls", "y?", "%%time"])
def test_ipython_syntax_is_refused_with_its_own_message(line):
    with pytest.raises(RunctlError, match=r"line 2 of the cell uses IPython syntax") as info:
        check_syntax(f"x = 1\n{line}\nz = 3\n")
    assert "not available inside a runctl run" in str(info.value)


def test_top_level_await_gets_a_hint():
    with pytest.raises(RunctlError, match=r"line 2 of the cell uses top-level await.*asyncio.run"):
        check_syntax("import asyncio\nawait asyncio.sleep(0)\n")


def test_explicit_get_ipython_in_valid_code_is_left_alone():
    # Libraries detect notebooks with this pattern; it is plain Python.
    check_syntax("try:\n    get_ipython()\nexcept NameError:\n    pass\n")


# ------------------------------------------------------------------ free_names


def test_free_names_simple_reads():
    assert fn("y = f(x) + len(data)") == {"f", "x", "data"}


def test_names_bound_before_use_are_not_free():
    assert fn("import numpy as np\nx = 1\nfrom os import path\ny = np.sum(x) + path.sep") == set()


def test_name_read_before_it_is_bound_is_free():
    assert fn("print(w)\nw = 1\nprint(w)") == {"w"}


def test_augmented_assignment_of_a_notebook_global_is_free():
    assert fn("x += 1") == {"x"}
    assert fn("x = 0\nx += 1") == set()


def test_function_params_and_locals_are_not_free():
    code = """
    def train(lr, epochs=10, *args, scale=2, **kw):
        total = 0
        for epoch in range(epochs):
            total += lr * epoch * scale
        return total, args, kw
    """
    assert fn(code) == set()


def test_globals_used_in_a_function_are_free_unless_the_cell_binds_them():
    code = """
    def step(w):
        return w - lr * grad(w) + bias
    bias = 0.1
    """
    assert fn(code) == {"lr", "grad"}


def test_nested_defs_see_enclosing_locals():
    code = """
    def outer(a):
        b = 2
        def inner(c):
            return a + b + c + helper(c)
        return inner
    """
    assert fn(code) == {"helper"}


def test_default_values_and_decorators_are_read_at_definition():
    code = """
    @decorate
    def f(x=default_x):
        return x
    """
    assert fn(code) == {"decorate", "default_x"}


def test_global_statement_inside_a_function():
    code = """
    def bump():
        global counter
        counter += 1
    """
    assert fn(code) == {"counter"}


def test_comprehension_variables_are_local_to_the_comprehension():
    assert fn("ys = [x * k for x in xs if x > lo]") == {"k", "xs", "lo"}
    assert fn("d = {k: v for k, v in items.items()}\nprint(k)") == {"items", "k"}
    assert fn("g = sum(i * j for i in range(3) for j in range(i))") == set()


def test_comprehension_iterable_referring_to_its_own_variable_is_free():
    assert fn("[x for x in x]") == {"x"}


def test_class_body_names_are_not_visible_in_methods():
    code = """
    class Model(Base):
        size = 3
        def forward(self):
            return size + self.size
    """
    assert fn(code) == {"Base", "size"}


def test_with_walrus_except_and_loop_targets_bind():
    code = """
    with open(path) as fh:
        text = fh.read()
    if (n := len(text)) > 0:
        print(n)
    try:
        risky()
    except ValueError as err:
        print(err)
    for i, (a, b) in enumerate(pairs):
        print(i, a, b)
    print(i)
    """
    assert fn(code) == {"path", "risky", "pairs"}


def test_del_of_a_notebook_name_is_free_and_unbinds():
    assert fn("del x") == {"x"}
    assert fn("y = 1\ndel y\nprint(y)") == {"y"}


def test_if_binds_only_when_every_branch_does():
    assert fn("if c:\n    y = 1\nprint(y)") == {"c", "y"}
    assert fn("if c:\n    y = 1\nelse:\n    y = 2\nprint(y)") == {"c"}


def test_lambda_and_builtins():
    assert fn("f = lambda v, s=scale: v * s + offset\nprint(len(range(3)))") == {"scale", "offset"}


def test_annotation_without_value_does_not_bind():
    assert fn("x: int\nprint(x)") == {"x"}


# ------------------------------------------------------------------ collect_objects


def test_collect_objects_from_a_real_shell_skips_internals_params_and_runctl(shell):
    shell.run_cell(
        "import math\ndef helper(v):\n    return v * 2\nlr = 0.1\nlock = 1", store_history=True
    )
    shell.run_cell("helper(3)", store_history=True)  # fills _, _1, Out
    shell.user_ns["runctl"] = object()
    code = "print(helper(lr), math.pi, _, _i1, Out, In, runctl, get_ipython, undefined_name)"
    objects = collect_objects(code, shell.user_ns, exclude=["lr"])
    assert sorted(objects) == ["helper", "math"]
    assert objects["helper"](2) == 4


# ------------------------------------------------------------------ ship / load


def _notebook_namespace() -> dict:
    """Definitions as a notebook's cells would make them (module __main__)."""
    ns: dict = {"__name__": "__main__"}
    exec(
        textwrap.dedent(
            """
            import numpy as np

            SCALE = 3

            def square(v):
                return v * v

            def scaled_square(v):
                return square(v) * SCALE

            class Counter:
                def __init__(self, start):
                    self.n = start
                def bump(self):
                    self.n += 1
                    return self.n

            counter = Counter(5)
            weights = np.arange(6, dtype=np.float64).reshape(2, 3)
            """
        ),
        ns,
    )
    return ns


def test_round_trip_in_another_process(tmp_path):
    ns = _notebook_namespace()
    code = "print(scaled_square(2), counter.bump(), weights.sum(), np.pi)"
    objects = collect_objects(code, ns)
    assert sorted(objects) == ["counter", "np", "scaled_square", "weights"]
    data = ship_objects(objects, tmp_path)
    (tmp_path / "objects.pkl").write_bytes(data)
    script = (
        "import sys\n"
        "from runctl_jupyter.runs.capture import load_objects\n"
        "ns = load_objects(open(sys.argv[1], 'rb').read())\n"
        "globals().update(ns)\n" + code + "\n"
    )
    out = run_python(script, str(tmp_path / "objects.pkl"), cwd=tmp_path)
    assert out.split() == ["12", "6", "15.0", "3.141592653589793"]


def test_unpicklable_objects_are_all_named_in_one_error(tmp_path):
    ns = _notebook_namespace()
    ns["lock"] = threading.Lock()
    exec("def uses_lock():\n    return lock\n", ns)
    objects = {"lock": ns["lock"], "uses_lock": ns["uses_lock"], "square": ns["square"]}
    with pytest.raises(RunctlError) as info:
        ship_objects(objects, tmp_path)
    message = str(info.value)
    assert "'lock' (TypeError: cannot pickle '_thread.lock' object)" in message
    assert "'uses_lock'" in message and "'square'" not in message
    assert message.endswith("create them inside the cell, or run with --no-vars")
    assert "\n" not in message


def test_local_module_travels_by_value(tmp_path, monkeypatch):
    (tmp_path / "mylocalmod.py").write_text("def triple(v):\n    return 3 * v\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import mylocalmod  # noqa: PLC0415 - a module of the "notebook's folder"

    try:
        ns = {"__name__": "__main__", "mylocalmod": mylocalmod}
        exec("def use(v):\n    return mylocalmod.triple(v) + 1\n", ns)
        data = ship_objects({"use": ns["use"]}, tmp_path)
    finally:
        sys.modules.pop("mylocalmod", None)
    # Elsewhere, with no mylocalmod.py on the path, it still works.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "objects.pkl").write_bytes(data)
    script = (
        "from runctl_jupyter.runs.capture import load_objects\n"
        "ns = load_objects(open('objects.pkl', 'rb').read())\n"
        "print(ns['use'](4))\n"
    )
    assert run_python(script, cwd=elsewhere).strip() == "13"
    import cloudpickle

    assert "mylocalmod" not in cloudpickle.list_registry_pickle_by_value()


def test_load_objects_error_says_what_to_do():
    with pytest.raises(RunctlError, match="cannot load the shipped notebook objects .*--no-vars"):
        load_objects(b"not a pickle")


def test_numpy_array_round_trips_exactly(tmp_path):
    arr = np.random.default_rng(0).normal(size=(50, 4))
    back = load_objects(ship_objects({"arr": arr}, tmp_path))
    assert np.array_equal(back["arr"], arr)
