"""commands/ (the one parser of the magic and the shell) and cli.py (the `runctl` command)."""

from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from runctl_jupyter import cli
from runctl_jupyter.commands import (
    HelpRequested,
    UsageProblem,
    format_help,
    parse,
    split_line,
    to_call,
)
from runctl_jupyter.errors import RunctlError
from runctl_jupyter.session import Session

REPO = Path(__file__).resolve().parents[1]


def p(line: str, prog: str = "runctl"):
    return parse(split_line(line), prog=prog)


# ---------------------------------------------------------------- splitting


def test_quotes_group_words_and_nothing_is_expanded():
    words = split_line("train -p note='a b' -p \"x=$(touch /tmp/pwned)\" -p home=$HOME -p t=`id`")
    assert words == [
        "train",
        "-p",
        "note=a b",
        "-p",
        "x=$(touch /tmp/pwned)",
        "-p",
        "home=$HOME",
        "-p",
        "t=`id`",
    ]


@pytest.mark.parametrize("line", ["train -p note='a b", 'train -p "x', "train -p x=1 \\"])
def test_an_unbalanced_quote_is_a_usage_problem(line):
    with pytest.raises(UsageProblem, match="cannot split the line"):
        split_line(line)


# ---------------------------------------------------------------- train


def test_train_params_are_typed_and_merge_in_command_line_order():
    ns = p("train -p lr=1e-3 --hyperparams epochs=50,lr=0.01,hidden=[64,32] -p note='a b'")
    assert ns.params == {"epochs": 50, "lr": 0.01, "hidden": [64, 32], "note": "a b"}
    ns = p("train --hyperparams lr=0.01 -p lr=0.5")
    assert ns.params == {"lr": 0.5}


def test_train_aliases_reach_one_spelling():
    ns = p(
        "train s.py --experiment-name e --monitor-metrics loss,acc --early-stopping patience=4 "
        "--checkpoint-interval 100 --data-s3 s3://b/d/ --num-gpus 2 --param a=1"
    )
    assert (ns.experiment, ns.metrics, ns.data, ns.gpus) == ("e", ["loss", "acc"], "s3://b/d/", 2)
    assert ns.early_stop["patience"] == 4 and ns.early_stop["metric"] is None
    assert ns.checkpoint_every == {"every": 100, "unit": "steps"}
    assert ns.params == {"a": 1}
    same = p(
        "train s.py --experiment e --metrics loss --metrics acc,loss --early-stop patience=4 "
        "--checkpoint-every 100 --data s3://b/d/ --gpus 2 -p a=1"
    )
    assert vars(same) == vars(ns)


def test_everything_after_a_bare_double_dash_is_script_args():
    ns = p("train train.py --detach -- --lr 3 -p x -- y")
    assert ns.script == "train.py" and ns.detach is True
    assert ns.args == ["--lr", "3", "-p", "x", "--", "y"]
    assert ns.params == {}


def test_options_and_script_can_come_in_any_order():
    ns = p("train --experiment e train.py --detach -p a=1")
    assert (ns.script, ns.experiment, ns.detach, ns.params) == ("train.py", "e", True, {"a": 1})


def test_spot_and_on_demand():
    assert p("train").spot is None
    assert p("train --spot").spot is True
    assert p("train --on-demand").spot is False
    with pytest.raises(UsageProblem, match="not allowed with"):
        p("train --spot --on-demand")


def test_every_train_option_parses():
    ns = p(
        "train s.py --name n --project pr --tag a --tag b --backend aws --instance-type g5.xlarge "
        "--max-hours 1.5 --cost-limit 3 --no-vars --yes --keep --sync src --sync lib --pip numpy,torch "
        "--requirements r.txt --volume vol-1 --ami ami-1 --region eu-west-1 --idle-minutes 10 --grace 5 "
        "--stall-minutes 20 --stop-on-stall --max-interruptions 3 --fallback on-demand --keep-checkpoints 2 "
        "--nproc-per-node 2 --nodes 2 --validate-data --params cfg"
    )
    assert ns.tags == ["a", "b"] and ns.sync == ["src", "lib"] and ns.pip == ["numpy", "torch"]
    assert (ns.max_hours, ns.cost_limit, ns.grace_seconds, ns.idle_minutes) == (1.5, 3.0, 5.0, 10.0)
    assert ns.ship_objects is False and ns.yes and ns.keep and ns.stop_on_stall and ns.validate_data
    assert (ns.nproc_per_node, ns.nodes, ns.max_interruptions, ns.keep_checkpoints) == (2, 2, 3, 2)
    assert ns.fallback == ["on-demand"] and ns.params_var == "cfg" and ns.region == "eu-west-1"


def test_gpus_all_and_checkpoint_minutes():
    ns = p("train --gpus all --checkpoint-every 10m")
    assert ns.gpus == "all" and ns.checkpoint_every == {"every": 10.0, "unit": "minutes"}


@pytest.mark.parametrize(
    "line, match",
    [
        ("train --max-hours 0", "--max-hours: must be a number > 0"),
        ("train --max-hours soon", "--max-hours: expected a number"),
        ("train --cost-limit -1", "--cost-limit"),
        ("train --gpus 0", "number of GPUs or 'all'"),
        ("train --checkpoint-every 1.5", "whole number"),
        ("train --checkpoint-every often", "N \\(steps\\) or Nm"),
        ("train --early-stop val_loss,patience=3", "METRIC:max or METRIC:min"),
        ("train --pip auto --pip numpy", "cannot be mixed"),
        ("train --instance i-1 --instance-type g5.xlarge", "leave out --instance-type"),
        ("train -p lr", "bad -p 'lr': expected KEY=VALUE"),
        ("train --hyperparams 'lr=[1,'", "bad --hyperparams lr"),
    ],
)
def test_bad_train_values_are_usage_problems(line, match):
    with pytest.raises(UsageProblem, match=match):
        p(line)


def test_unknown_option_names_it_and_points_to_help():
    with pytest.raises(UsageProblem) as info:
        p("train s.py --lr 3")
    assert (
        str(info.value) == "runctl train: unrecognized arguments: --lr 3 (see runctl train --help)"
    )
    assert "usage: runctl train" in info.value.usage
    assert "\n" not in str(info.value)


def test_options_are_never_abbreviated():
    with pytest.raises(UsageProblem, match="unrecognized arguments: --exp"):
        p("train --exp e")


def test_unknown_command_suggests_the_close_one():
    with pytest.raises(UsageProblem, match="unknown command 'trian'; did you mean 'train'"):
        p("trian -p a=1")


def test_double_dash_args_only_for_train_and_sweep():
    with pytest.raises(UsageProblem, match="only train, dev and sweep take script arguments"):
        p("runs -- x")


# ---------------------------------------------------------------- help


def test_help_is_raised_with_its_text_never_exits():
    with pytest.raises(HelpRequested) as info:
        p("train --help")
    assert "--experiment NAME, --experiment-name NAME" in info.value.text
    assert "usage: runctl train [SCRIPT]" in info.value.text
    for words in ([], ["-h"], ["--help"]):
        with pytest.raises(HelpRequested) as info:
            parse(words)
        assert "sweep" in info.value.text and "compare" in info.value.text


def test_help_uses_the_magic_spelling_in_a_kernel():
    text = format_help("%runctl", "train")
    assert text.startswith("usage: %runctl train [SCRIPT]")
    assert "%%runctl train -p lr=0.05" in text
    assert "(%%runctl train)" in format_help("%runctl")


# ---------------------------------------------------------------- sweep


def test_sweep_grid_and_its_alias_combine():
    ns = p(
        "sweep --grid lr=0.001,0.01 --hyperparams 'batch_size:32,64 hidden:[64],[8,8]' "
        "-p epochs=3 --max-parallel 4 --objective val_acc:max"
    )
    assert ns.grid == {"lr": [0.001, 0.01], "batch_size": [32, 64], "hidden": [[64], [8, 8]]}
    assert ns.params == {"epochs": 3} and ns.search == "grid" and ns.max_parallel == 4
    assert ns.objective == {"metric": "val_acc", "mode": "max"}


def test_random_sweep_over_a_space():
    ns = p("sweep --random 20 --space lr=loguniform(1e-4,1e-1) --space layers=choice(2,3) --seed 7")
    assert (ns.search, ns.trials, ns.seed) == ("random", 20, 7)
    assert ns.space["lr"] == {"dist": "loguniform", "args": [0.0001, 0.1]}


def test_optuna_sweep_and_the_rest_of_the_sweep_options():
    ns = p(
        "sweep nb.ipynb --search optuna --trials 30 --space lr=uniform(0,1) --prune asha "
        "--stop-on-failure --max-failures 2 --cost-limit 10 --early-stop val_loss:min,patience=3 "
        "--detach --yes --backend aws --instance-type g5.xlarge --experiment e --name s"
    )
    assert (ns.target, ns.search, ns.trials, ns.prune) == ("nb.ipynb", "optuna", 30, "asha")
    assert ns.stop_on_failure and ns.max_failures == 2 and ns.cost_limit == 10.0
    assert ns.early_stop["metric"] == "val_loss" and ns.detach and ns.yes


def test_resume_a_sweep():
    ns = p("sweep --resume digits-sweep --retry-failed")
    assert ns.resume == "digits-sweep" and ns.retry_failed


@pytest.mark.parametrize(
    "line, match",
    [
        ("sweep", "nothing to sweep"),
        ("sweep --grid lr=1,2 --grid lr=3", "given twice"),
        ("sweep --grid lr=1,2 --hyperparams lr:3,4", "given twice"),
        ("sweep --grid lr=", "no values"),
        ("sweep --grid lr=1,2 -p lr=3", "both fixed \\(-p\\) and swept"),
        ("sweep --search optuna --space lr=uniform(0,1)", "--trials N"),
        (
            "sweep --random 3 --search optuna --space lr=uniform(0,1)",
            "cannot go with --search optuna",
        ),
        ("sweep --random 3", "needs a --space"),
        ("sweep --space lr=uniform(0,1) --grid b=1,2", "for random or optuna"),
        ("sweep --grid lr=1,2 --retry-failed", "goes with --resume"),
        ("sweep --random 2 --space lr=gauss(0,1)", "unknown distribution 'gauss'"),
        ("sweep --grid lr=1 --objective acc", "METRIC:max or METRIC:min"),
        ("sweep --grid lr=1 --prune mean", "invalid choice: 'mean'"),
        ("sweep --grid lr=1 --max-parallel 0", "must be at least 1"),
    ],
)
def test_bad_sweeps_are_usage_problems(line, match):
    with pytest.raises(UsageProblem, match=match):
        p(line)


# ---------------------------------------------------------------- the other commands


def test_runs_filters_and_limit():
    ns = p("runs --experiment-name e --status running --limit 5 --project pr --sweep s1")
    assert (ns.experiment, ns.status, ns.limit, ns.project, ns.sweep) == (
        "e",
        "running",
        5,
        "pr",
        "s1",
    )
    assert p("runs").limit == 20 and p("runs --all").limit is None
    with pytest.raises(UsageProblem, match="invalid choice: 'done'"):
        p("runs --status done")


def test_run_commands():
    assert p("show abc").ref == "abc"
    ns = p("logs abc -f --tail 5")
    assert (ns.ref, ns.follow, ns.tail) == ("abc", True, 5)
    assert p("stop abc --force").force is True and p("stop abc").force is False
    assert p("resume abc --detach").detach is True
    ns = p("rerun path/to/record.ipynb -p lr=0.5 --hyperparams epochs=2 --detach")
    assert (ns.ref, ns.params, ns.detach) == (
        "path/to/record.ipynb",
        {"lr": 0.5, "epochs": 2},
        True,
    )
    with pytest.raises(UsageProblem, match="required: RUN"):
        p("attach")


def test_compare_takes_runs_between_options():
    ns = p("compare a b --metric acc c")
    assert ns.refs == ["a", "b", "c"] and ns.metric == "acc"
    assert p("compare --sweep s").sweep == "s" and p("compare --experiment e").refs == []


def test_cost_and_cost_price():
    ns = p("cost")
    assert (ns.action, ns.instance_type) == ("report", None)
    ns = p("cost price g5.xlarge --region eu-west-1 --spot --offline")
    assert (ns.action, ns.instance_type, ns.region, ns.spot, ns.offline) == (
        "price",
        "g5.xlarge",
        "eu-west-1",
        True,
        True,
    )
    with pytest.raises(UsageProblem, match="say which instance type"):
        p("cost price")
    with pytest.raises(UsageProblem, match="unknown cost command 'prices'"):
        p("cost prices g5.xlarge")


def test_cloud_and_notebook_commands():
    ns = p("resources --region us-east-1 --region eu-west-1 --all-owners")
    assert ns.regions == ["us-east-1", "eu-west-1"] and ns.all_owners
    assert p("cleanup --yes").yes and not p("cleanup").yes
    ns = p("execute train.ipynb -p epochs=3 --experiment-name nightly --name n1 --detach")
    assert (ns.notebook, ns.params, ns.experiment, ns.name, ns.detach) == (
        "train.ipynb",
        {"epochs": 3},
        "nightly",
        "n1",
        True,
    )
    assert p("aws doctor --region us-west-2").action == "doctor"
    with pytest.raises(UsageProblem, match="invalid choice: 'setpu'"):
        p("aws setpu")
    assert p("sweeps").command == "sweeps"


def test_the_magic_and_the_shell_parse_alike():
    line = "train s.py -p lr=1e-3 --experiment e --metrics a,b --spot -- x"
    assert vars(p(line, prog="%runctl")) == vars(p(line, prog="runctl"))


# ---------------------------------------------------------------- to the Session API


def _binds(method: str, kwargs: dict) -> None:
    """The kwargs fit the real Session method's signature."""
    inspect.signature(getattr(Session, method)).bind(None, **kwargs)


def test_train_maps_to_session_train_with_every_other_option_in_options():
    method, kw = to_call(p("train s.py -p lr=1 --instance-type g5.xlarge --spot --tag t -- a"))
    assert method == "train"
    _binds("train", dict(kw, code=None, user_ns={}))
    assert kw["script"] == "s.py" and kw["args"] == ("a",) and kw["tags"] == ("t",)
    assert kw["params"] == {"lr": 1} and kw["ship_objects"] is True
    assert kw["options"]["instance_type"] == "g5.xlarge" and kw["options"]["spot"] is True
    ns = p("train s.py")
    expected = set(vars(ns)) - set(kw) - {"command", "params_var"}
    assert set(kw["options"]) == expected
    assert "grace_seconds" in expected and "checkpoint_every" in expected


@pytest.mark.parametrize(
    "line",
    [
        "runs --status failed",
        "show a",
        "logs a -f --tail 3",
        "attach a",
        "stop a --force",
        "resume a --detach",
        "rerun a -p lr=2",
        "execute nb.ipynb -p x=1",
        "compare a b --metric acc",
        "sweeps",
        "resources --all-owners",
        "cleanup --yes",
        "cost price t3.micro",
        "sweep s.py --grid lr=1,2",
    ],
)
def test_each_command_maps_to_a_session_method_that_accepts_its_arguments(line):
    method, kw = to_call(p(line))
    assert method == line.split()[0]
    if method == "sweep":
        kw = dict(kw, code=None, user_ns={})
    _binds(method, kw)


def test_sweep_options_leave_out_the_sweep_fields():
    _, kw = to_call(p("sweep s.py --random 3 --space lr=uniform(0,1) --instance-type t3.micro"))
    assert kw["search"] == "random" and kw["trials"] == 3
    assert kw["options"]["instance_type"] == "t3.micro"
    assert not {"random", "grid", "space", "trials", "cost_limit"} & set(kw["options"])


# ---------------------------------------------------------------- the shell command


def test_cli_help_prints_and_exits_zero(capsys):
    assert cli.main(["--help"]) == 0
    assert "usage: runctl" in capsys.readouterr().out
    assert cli.main(["logs", "--help"]) == 0
    assert "--follow" in capsys.readouterr().out


def test_cli_usage_error_is_one_line_on_stderr_exit_2(capsys):
    assert cli.main(["train", "s.py", "--lr", "3"]) == 2
    err = capsys.readouterr().err
    assert err == "runctl: error: train: unrecognized arguments: --lr 3 (see runctl train --help)\n"


def test_a_region_that_is_not_a_region_name_is_one_line_before_any_aws_call(capsys):
    assert cli.main(["resources", "--region", "us-east-1,no such region!"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "'no such region!' is not an AWS region name" in err
    regions = p("cleanup --region us-east-1,eu-west-1 --region ap-south-1").regions
    assert regions == ["us-east-1", "eu-west-1", "ap-south-1"]


def test_cli_train_needs_a_script(capsys):
    assert cli.main(["train", "-p", "a=1"]) == 2
    assert "train needs SCRIPT.py in the shell" in capsys.readouterr().err


def test_cli_runs_in_an_empty_home(home, capsys):
    assert cli.main(["runs"]) == 0
    assert "no runs yet" in capsys.readouterr().out


def test_cli_unknown_run_is_an_error_naming_it(home, capsys):
    assert cli.main(["show", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("runctl: error: ") and "'nope'" in err and err.count("\n") == 1


def test_cli_params_file_must_exist(home, tmp_path, capsys):
    script = tmp_path / "s.py"
    script.write_text("pass\n")
    assert cli.main(["train", str(script), "--params", str(tmp_path / "missing.json")]) == 2
    assert "--params takes a JSON file" in capsys.readouterr().err


def _runctl(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, RUNCTL_HOME=str(home), PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "runctl_jupyter", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def test_python_m_runs_a_script_with_params_file_overrides_and_args(tmp_path, home):
    script = tmp_path / "train.py"
    script.write_text(
        "import sys, json\nfrom runctl_jupyter.runtime import runctl\n"
        "print('GOT', json.dumps(runctl.params, sort_keys=True), sys.argv[1:])\n"
    )
    (tmp_path / "cfg.json").write_text(json.dumps({"lr": 0.1, "epochs": 2}))
    out = _runctl(
        "train",
        "train.py",
        "--params",
        "cfg.json",
        "-p",
        "lr=0.5",
        "-p",
        "x=$(touch pwned)",
        "--",
        "--data",
        "d",
        cwd=tmp_path,
        home=home,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(json.dumps({"epochs": 2, "lr": 0.5, "x": "$(touch pwned)"}, sort_keys=True))
    assert f"GOT {json.dumps(got, sort_keys=True)} ['--data', 'd']" in out.stdout
    assert not (tmp_path / "pwned").exists()


def test_python_m_failed_run_exits_1_with_the_traceback(tmp_path, home):
    (tmp_path / "boom.py").write_text("def f():\n    raise ValueError('bad data')\nf()\n")
    out = _runctl("train", "boom.py", cwd=tmp_path, home=home)
    assert out.returncode == 1
    assert "ValueError: bad data" in out.stderr and "in f" in out.stderr
    assert "`runctl logs " in out.stderr and "%runctl" not in out.stderr.splitlines()[-1]


def test_python_m_version(tmp_path, home):
    out = _runctl("--version", cwd=tmp_path, home=home)
    assert out.returncode == 0 and out.stdout.startswith("runctl-jupyter ")


def test_usage_problem_is_a_runctl_error():
    assert issubclass(UsageProblem, RunctlError)


def test_cli_reads_c_runctl_from_the_ipython_profile(tmp_path, home, monkeypatch, capsys):
    profile = tmp_path / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipython_config.py").write_text("c.Runctl.experiment = 'from-profile'\n")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.py").write_text("print('ok')\n")
    assert cli.main(["train", "s.py"]) == 0
    capsys.readouterr()
    assert cli.main(["runs", "--experiment", "from-profile"]) == 0
    assert "from-profile" in capsys.readouterr().out


def test_cli_ctrl_c_detaches_exits_130_and_the_run_goes_on(tmp_path, home):
    (tmp_path / "slow.py").write_text("import time\nprint('up', flush=True)\ntime.sleep(60)\n")
    env = dict(os.environ, RUNCTL_HOME=str(home), PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "runctl_jupyter", "train", "slow.py"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stdout:  # the run's own output arrives once it runs
            if line.startswith("up"):
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "goes on" in err and "stop" in err
    run_id = out.split()[1]
    listing = _runctl("runs", "--status", "running", cwd=tmp_path, home=home)
    assert run_id in listing.stdout
    stopped = _runctl("stop", run_id, "--force", cwd=tmp_path, home=home)
    assert stopped.returncode == 0, stopped.stderr


def test_cli_ctrl_c_while_following_logs_exits_130(tmp_path, home):
    (tmp_path / "slow.py").write_text("import time\nprint('up', flush=True)\ntime.sleep(60)\n")
    started = _runctl("train", "slow.py", "--detach", cwd=tmp_path, home=home)
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.split()[1]
    env = dict(os.environ, RUNCTL_HOME=str(home), PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "runctl_jupyter", "logs", run_id, "--follow"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stdout:
            if line.startswith("up"):
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        _runctl("stop", run_id, "--force", cwd=tmp_path, home=home)
    assert proc.returncode == 130
    assert err.strip().endswith("runctl: interrupted")


def test_a_detached_run_in_the_shell_is_told_in_shell_words(tmp_path, home):
    (tmp_path / "quick.py").write_text("runctl.log(step=0, loss=1.0)\n")
    out = _runctl("train", "quick.py", "--detach", cwd=tmp_path, home=home)
    assert out.returncode == 0, out.stderr
    assert "`runctl attach " in out.stdout and "%runctl" not in out.stdout
