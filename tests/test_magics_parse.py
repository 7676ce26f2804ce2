"""magics.py in a real IPython shell: %load_ext, parsing, errors, help, and dispatch to a real Session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from runctl_jupyter.errors import RunFailed

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("plotly", "ipywidgets", "boto3", "botocore", "cloudpickle", "runctl_jupyter.session")


def usage_error(ip, line: str, cell: str | None = None) -> str:
    with pytest.raises(UsageError) as info:
        if cell is None:
            ip.run_line_magic("runctl", line)
        else:
            ip.run_cell_magic("runctl", line, cell)
    return str(info.value)


def fresh_python(code: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


# ---------------------------------------------------------------- loading


def test_load_ext_registers_the_line_and_cell_magic():
    out = fresh_python(
        """
        from IPython.core.interactiveshell import InteractiveShell
        ip = InteractiveShell.instance()
        before = ip.find_line_magic("runctl"), ip.find_cell_magic("runctl")
        ip.run_line_magic("load_ext", "runctl_jupyter")
        print(before == (None, None), ip.find_line_magic("runctl") is not None,
              ip.find_cell_magic("runctl") is not None)
        """
    )
    assert out.split() == ["True", "True", "True"]


def test_load_ext_is_cheap_and_imports_nothing_heavy():
    out = fresh_python(
        f"""
        import sys, time
        t0 = time.perf_counter()
        from IPython.core.interactiveshell import InteractiveShell
        ip = InteractiveShell.instance()
        t1 = time.perf_counter()
        ip.run_line_magic("load_ext", "runctl_jupyter")
        t2 = time.perf_counter()
        print(t1 - t0, t2 - t1, [m for m in {HEAVY!r} if m in sys.modules])
        """
    )
    ipython_init, load_ext, heavy = out.split(" ", 2)
    assert heavy.strip() == "[]", heavy
    assert float(load_ext) < 0.3, (
        f"load_ext took {float(load_ext):.3f}s (IPython itself {float(ipython_init):.3f}s)"
    )


def test_config_runctl_is_a_configurable_of_the_shell(ip, tmp_path):
    magic = ip.find_line_magic("runctl").__self__
    first = magic.session
    try:
        ip.run_line_magic("config", f"Runctl.home = {str(tmp_path / 'elsewhere')!r}")
        assert magic.config_obj.home == str(tmp_path / "elsewhere")
        assert magic.session is not first  # a new home gets a new session
        assert magic.session.store.home == Path(tmp_path / "elsewhere")
    finally:
        ip.config.Runctl.pop("home", None)  # %config also wrote the shell's config


# ---------------------------------------------------------------- bad lines


def test_unknown_option_is_a_one_line_usage_error(ip):
    msg = usage_error(ip, "train s.py --lr 3")
    assert msg == "%runctl train: unrecognized arguments: --lr 3 (see %runctl train --help)"


def test_bad_p_is_a_usage_error(ip):
    assert usage_error(ip, "train -p lr", "pass\n") == (
        "%runctl train: bad -p 'lr': expected KEY=VALUE, e.g. -p lr=0.01"
    )


def test_unbalanced_quote_is_a_usage_error(ip):
    assert "cannot split the line: an unbalanced quote" in usage_error(ip, "train -p note='a b")


def test_unknown_command_is_a_usage_error(ip):
    assert "unknown command 'trian'; did you mean 'train'" in usage_error(ip, "trian")


def test_a_usage_error_shows_as_one_line_and_run_all_stops(ip):
    with capture_output() as cap:
        result = ip.run_cell("%runctl train --bogus\n")
    assert isinstance(result.error_in_exec, UsageError)
    assert "Traceback" not in cap.stdout + cap.stderr
    assert "unrecognized arguments: --bogus" in cap.stdout + cap.stderr


@pytest.mark.parametrize(
    "line, cell, match",
    [
        ("runs", "x = 1\n", "%%runctl runs does not take a cell"),
        ("train", "   \n", "the cell under %%runctl train is empty"),
        ("train s.py", "x = 1\n", "got both a cell and 's.py'"),
        ("train -- --lr 3", "x = 1\n", "script arguments after -- are for a SCRIPT"),
        ("train", None, "%runctl train needs a SCRIPT.py"),
        ("sweep --grid lr=1,2", None, "%runctl sweep needs a SCRIPT.py"),
    ],
)
def test_cell_and_script_mistakes_are_usage_errors(ip, line, cell, match):
    assert match in usage_error(ip, line, cell)


def test_params_var_must_name_a_dict_in_the_notebook(ip):
    ip.user_ns["cfg_list"] = [1, 2]
    ip.user_ns.pop("nothere", None)
    assert "no variable 'nothere' in the notebook" in usage_error(
        ip, "train --params nothere", "pass\n"
    )
    assert "cfg_list is a list, not a dict" in usage_error(ip, "train --params cfg_list", "pass\n")


def test_the_line_is_never_variable_expanded(ip):
    # IPython expands $name and {expr} in magic lines unless the magic opts out
    ip.user_ns["v"] = "cfg"
    ip.user_ns["cfg"] = {"lr": 0.1}
    assert "--params '$v'" in usage_error(ip, "train --params $v", "pass\n")
    assert "--params '{1+1}'" in usage_error(ip, "train --params {1+1}", "pass\n")


# ---------------------------------------------------------------- help


def test_help_prints_and_does_not_exit(ip):
    with capture_output() as cap:
        assert ip.run_line_magic("runctl", "--help") is None
    assert "usage: %runctl" in cap.stdout and "compare" in cap.stdout
    with capture_output() as cap:
        ip.run_line_magic("runctl", "train --help")
    assert "usage: %runctl train [SCRIPT]" in cap.stdout and "--experiment-name" in cap.stdout
    with capture_output() as cap:
        ip.run_cell_magic("runctl", "sweep -h", "pass\n")
    assert "--max-parallel" in cap.stdout


HELP_GROUPS = (
    "hyperparameters:",
    "tracking:",
    "where it runs:",
    "cost and limits:",
    "data:",
    "checkpoints and interruptions:",
    "distributed:",
)


def test_a_question_mark_after_a_command_shows_its_grouped_options(ip):
    with capture_output() as cap:
        ip.run_cell("%runctl train?")
    text = cap.stdout
    assert text.startswith("usage: %runctl train [SCRIPT]"), text[:200]
    positions = [text.index(group) for group in HELP_GROUPS]
    assert positions == sorted(positions), "groups out of order"
    assert text.index("--nproc-per-node") > text.index("distributed:")
    assert text.index("--cost-limit") > text.index("cost and limits:")


def test_a_cell_asking_for_help_shows_it_and_runs_nothing(ip):
    with capture_output() as cap:
        result = ip.run_cell("%%runctl sweep??\nran = True\n")
    assert result.success
    assert "search:" in cap.stdout and "--max-parallel" in cap.stdout
    assert "ran" not in ip.user_ns
    # a line magic asking for help inside a longer cell: the other lines still run
    with capture_output() as cap:
        ip.run_cell("before = 1\n%runctl logs?\nafter = 2\n")
    assert "--follow" in cap.stdout
    assert ip.user_ns["before"] == 1 and ip.user_ns["after"] == 2
    # the bare magic keeps IPython's own ? (its docstring: the commands, one line each)
    assert ip.transform_cell("%runctl?") == "get_ipython().run_line_magic('pinfo', '%runctl')\n"


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_every_run_option_says_what_it_does(command):
    from runctl_jupyter.commands import build_parser

    parser = build_parser("%runctl").commands[command]
    silent = [a.option_strings[0] for a in parser._actions if a.option_strings and not a.help]
    assert silent == [], f"options with no help line: {silent}"


def test_a_command_usage_names_the_magic_every_time(ip):
    """argparse keeps a formatted usage after a parse and %-formats it again: '%runctl'
    once came out as "{'prog': '%runctl show'}unctl show"."""
    for _ in range(2):
        with capture_output() as cap:
            ip.run_line_magic("runctl", "show --help")
        assert cap.stdout.startswith("usage: %runctl show [-h] RUN"), cap.stdout[:80]
    from runctl_jupyter.commands import UsageProblem, parse

    with pytest.raises(UsageProblem) as info:
        parse(["show"], prog="%runctl")
    assert info.value.usage.startswith("usage: %runctl show [-h] RUN"), info.value.usage


def test_the_magic_docstring_is_its_help(ip):
    doc = ip.find_line_magic("runctl").__doc__
    assert "%%runctl train -p lr=0.05" in doc
    assert "usage: %runctl [-h] [--version] [--debug] COMMAND" in doc
    for command in ("train", "sweep", "runs", "logs", "rerun", "compare", "execute"):
        assert f"    {command}" in doc


# ---------------------------------------------------------------- dispatch to the Session


def test_runs_in_an_empty_home(ip, home):
    table = ip.run_line_magic("runctl", "runs")
    assert len(table) == 0
    assert "no runs yet" in str(table)
    assert ip.find_line_magic("runctl").__self__.session.store.home == home


def test_a_trailing_semicolon_silences_the_output(ip):
    assert ip.run_line_magic("runctl", "runs --limit 3;") is None
    assert len(ip.run_line_magic("runctl", "runs --limit 3")) == 0


def test_a_cell_runs_with_params_var_and_p_merged_later_wins(ip, tmp_path):
    ip.user_ns["cfg"] = {"lr": 0.1, "epochs": 2}
    pwned = tmp_path / "pwned"
    run = ip.run_cell_magic(
        "runctl",
        f"train --params cfg -p lr=0.5 -p note='a b' -p 'x=$(touch {pwned})' --experiment exp --name first",
        "runctl.log(step=0, lr=lr)\nprint('NOTE', note, type(epochs).__name__, x)\n",
    )
    assert run.status == "succeeded"
    assert run.params == {"lr": 0.5, "epochs": 2, "note": "a b", "x": f"$(touch {pwned})"}
    assert run.metrics == {"lr": 0.5}
    assert (run.row["experiment"], run.row["name"]) == ("exp", "first")
    assert not pwned.exists()
    logs = ip.run_line_magic("runctl", f"logs {run.id}")
    assert f"NOTE a b int $(touch {pwned})" in logs
    assert run.id in str(ip.run_line_magic("runctl", "runs --experiment exp"))


def test_an_unknown_run_is_a_usage_error(ip):
    assert "'nope'" in usage_error(ip, "show nope")


def test_a_failed_run_raises_run_failed_with_the_remote_traceback(ip):
    code = "def boom():\n    raise ValueError('bad data')\nboom()\n"
    with pytest.raises(RunFailed) as info:
        ip.run_cell_magic("runctl", "train", code)
    assert "raise ValueError('bad data')" in "\n".join(info.value._render_traceback_())
    # through run_cell, as Run All does: the error is the run's, shown with its traceback
    with capture_output() as cap:
        result = ip.run_cell("%%runctl train\n" + code)
    assert isinstance(result.error_in_exec, RunFailed)
    assert "raise ValueError('bad data')" in cap.stdout + cap.stderr


def test_keyboard_interrupt_is_not_swallowed(ip):
    run = ip.run_cell_magic(
        "runctl", "train --detach", "import time\nprint('up', flush=True)\ntime.sleep(60)\n"
    )
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            ip.run_line_magic("runctl", f"logs {run.id} --follow")
    finally:
        timer.cancel()
        ip.run_line_magic("runctl", f"stop {run.id} --force")
    assert run.refresh().status in ("stopped", "failed")
