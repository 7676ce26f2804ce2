"""Local schedules with real parts: the magic in a real IPython shell, a real crontab
file read back with python-crontab, each entry's command run as cron runs it (`env -i`,
a minimal PATH and HOME, no terminal), real detached runs in the store."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from pathlib import Path

import pytest
from agent_helpers import wait_for
from crontab import CronTab
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from runctl_jupyter.schedules.timing import next_fires

ROOT = Path(__file__).resolve().parent.parent  # the checkout, for cron's PYTHONPATH


def _magic(ip, line: str) -> str:
    with capture_output() as cap:
        result = ip.run_line_magic("runctl", line)
    return cap.stdout + str(result if result is not None else "")


@pytest.fixture
def tab(ip, tmp_path):
    path = tmp_path / "crontab"
    ip.run_line_magic("config", f"Runctl.crontab_file = {str(path)!r}")
    return path


def _entry(tab: Path, name: str):
    jobs = list(CronTab(tabfile=str(tab)).find_comment(f"runctl:{name}"))
    assert len(jobs) == 1, tab.read_text()
    return jobs[0]


def _run_as_cron(tab: Path, name: str, home: Path) -> subprocess.CompletedProcess:
    """The entry's command in cron's environment: no inherited variables, no TTY."""
    command = _entry(tab, name).command
    env = ["env", "-i", "PATH=/usr/bin:/bin", f"HOME={home.parent}", f"PYTHONPATH={ROOT}"]
    return subprocess.run(
        [*env, "/bin/sh", "-c", command],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,  # no controlling terminal, as under cron
    )


def _schedule_file(home: Path, name: str) -> dict:
    return json.loads((home / "schedules" / f"{name}.json").read_text())


def _runs(home: Path) -> list[Path]:
    return sorted((home / "runs").glob("*/spec.json")) if (home / "runs").is_dir() else []


def test_a_cron_schedule_is_a_crontab_entry_that_cron_can_fire(ip, tab, home):
    Path("train.py").write_text(
        "from runctl_jupyter.runtime import runctl\nrunctl.log(step=1, acc=0.5)\n"
    )
    out = _magic(
        ip, 'schedule add train.py --cron "0 3 * * 1" -p epochs=50 --schedule-name nightly'
    )
    # the next three fire times, all Mondays at 03:00 in this machine's zone
    expected = [f.strftime("%Y-%m-%d %H:%M") for f in next_fires("0 3 * * 1", 3)]
    assert all(e in out for e in expected), out
    assert all(f.weekday() == 0 and f.hour == 3 for f in next_fires("0 3 * * 1", 3))
    job = _entry(tab, "nightly")
    assert str(job.slices) == "0 3 * * 1" and job.is_enabled()
    assert job.command.endswith("-m runctl_jupyter schedule fire nightly")
    assert f"RUNCTL_HOME={home.resolve()}" in job.command

    done = _run_as_cron(tab, "nightly", home)
    assert done.returncode == 0, done.stderr
    assert "fired run" in done.stdout
    run_id = _schedule_file(home, "nightly")["history"][-1]["run"]
    spec = json.loads((home / "runs" / run_id / "spec.json").read_text())
    assert spec["params"] == {"epochs": 50}
    assert spec["trigger"]["schedule"] == "nightly"
    assert spec["trigger"]["reason"] == "cron 0 3 * * 1"
    assert abs(spec["trigger"]["fired"] - time.time()) < 120
    wait_for(lambda: "succeeded" in _magic(ip, "schedules"), timeout=60, interval=0.3)
    shown = _magic(ip, f"show {run_id}")
    assert "fired by" in shown and "schedule nightly (cron 0 3 * * 1)" in shown
    record = (home / "runs" / run_id / "record.ipynb").read_text()
    assert "Fired by" in record and "schedule nightly" in record


def test_pause_resume_remove_and_run_now(ip, tab, home):
    Path("job.py").write_text("print('ok')\n")
    _magic(ip, 'schedule add job.py --cron "*/15 * * * *"')
    assert "paused" in _magic(ip, "schedule pause job")
    assert not _entry(tab, "job").is_enabled()
    assert tab.read_text().lstrip().startswith("#")  # cron skips it
    done = _run_as_cron(tab, "job", home)
    assert done.returncode == 0 and done.stdout == ""  # nothing for cron to mail
    assert _runs(home) == []
    assert "is paused: nothing fired" in _magic(ip, "schedule fire job")
    assert "paused" in _magic(ip, "schedules")
    _magic(ip, "schedule resume job")
    assert _entry(tab, "job").is_enabled()
    out = _magic(ip, "schedule run job")  # fire now
    assert "fired run" in out and len(_runs(home)) == 1
    spec = json.loads(_runs(home)[0].read_text())
    assert spec["trigger"]["reason"] == "run by hand"
    assert "removed" in _magic(ip, "schedule remove job")
    assert "runctl:job" not in tab.read_text()
    assert not (home / "schedules" / "job.json").exists()
    assert len(_runs(home)) == 1  # its runs stay


def test_fires_never_overlap_a_running_run_unless_allowed(ip, tab, home):
    Path("slow.py").write_text("import time\ntime.sleep(60)\n")
    _magic(ip, 'schedule add slow.py --cron "* * * * *"')
    first = _run_as_cron(tab, "slow", home)
    assert "fired run" in first.stdout, first.stderr
    second = _run_as_cron(tab, "slow", home)
    assert "skipped" in second.stdout and "still running" in second.stdout
    assert len(_runs(home)) == 1
    history = _schedule_file(home, "slow")["history"]
    assert [h["status"] for h in history] == ["started", "skipped"]
    assert "skipped" in _magic(ip, "schedules")
    shown = _magic(ip, "schedule show slow")  # the history of fires
    assert "started" in shown and "still running" in shown

    _magic(ip, 'schedule add slow.py --cron "* * * * *" --allow-overlap --schedule-name slow2')
    for _ in range(2):
        assert "fired run" in _run_as_cron(tab, "slow2", home).stdout
    assert len(_runs(home)) == 3
    for spec in _runs(home):
        _magic(ip, f"stop {spec.parent.name} --force")


def test_a_failed_fired_run_shows_in_schedules(ip, tab, home):
    Path("broken.py").write_text("raise ValueError('bad data')\n")
    _magic(ip, 'schedule add broken.py --rate "6 hours"')
    assert "0 */6 * * *" == str(_entry(tab, "broken").slices)
    _run_as_cron(tab, "broken", home)
    listing = wait_for(
        lambda: (text := _magic(ip, "schedules")) and "failed" in text and text, timeout=60
    )
    assert "broken" in listing and "rate 6 hour" in listing


@pytest.mark.parametrize(
    "line, says",
    [
        ('schedule add train.py --cron "61 * * * *"', "61, not in 0-59"),
        ('schedule add train.py --cron "0 3 * *"', "--cron"),
        ("schedule add train.py --on-new-data s3:///incoming/", "has no bucket"),
        ("schedule add train.py --on-new-data /data/incoming", "give an S3 prefix"),
        ("schedule add train.py", "exactly one of --cron"),
        ('schedule add train.py --cron "0 3 * * 1" --rate "1 day"', "exactly one of"),
        ('schedule add missing.py --cron "0 3 * * 1"', "no file 'missing.py'"),
        ('schedule add train.py --rate "7 hours"', "must divide an hour or a day"),
        (  # a local crontab fires in this machine's zone: --timezone is an AWS schedule's
            'schedule add train.py --cron "0 3 * * 1" --timezone Europe/Paris',
            "--timezone goes with an AWS time schedule",
        ),
        ('schedule add train.py --cron "0 3 * * 1" --max-data-age 7d', "goes with --on-new-data"),
        (
            "schedule add train.py --on-new-data s3://my-data/in/ --max-data-age soon",
            "--max-data-age",
        ),
        ('schedule add train.py --cron "0 3 * * 1" --schedule-name "a b"', "schedule name"),
        ('schedule add train.py --cron "0 3 * * 1" --instance-type g5.xlarge', "--backend aws"),
        ('schedule pause train --cron "0 3 * * 1"', "only `schedule add`"),
        ("schedule pause nope", "no schedule 'nope'"),
        ("schedule run '../x'", "schedule name"),
        ('schedule add nb.ipynb --cron "0 3 * * 1" --backend aws', "drop --backend aws"),
        ('schedule add train.py --cron "0 3 * * 1" -p epochs=5 --detach', "always detached"),
    ],
)
def test_bad_lines_say_what_to_do_and_create_nothing(ip, tab, home, line, says):
    Path("train.py").write_text("print(1)\n")
    Path("nb.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    with pytest.raises(UsageError, match=None) as caught:
        ip.run_line_magic("runctl", line)
    message = str(caught.value)
    assert says in message and "\n" not in message.strip(), message
    assert not tab.exists() or "runctl:" not in tab.read_text()
    assert not list((home / "schedules").glob("*.json")) if (home / "schedules").exists() else True
    assert _runs(home) == []


def test_a_taken_name_is_refused_and_the_first_schedule_kept(ip, tab, home):
    Path("train.py").write_text("print(1)\n")
    _magic(ip, 'schedule add train.py --cron "0 3 * * 1"')
    with pytest.raises(UsageError, match="schedule 'train' exists"):
        ip.run_line_magic("runctl", 'schedule add train.py --cron "0 4 * * *"')
    assert str(_entry(tab, "train").slices) == "0 3 * * 1"
    assert _schedule_file(home, "train")["cron"] == "0 3 * * 1"


def test_next_fire_times_follow_cron_day_rules_and_time_zones():
    monday = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.timezone.utc)  # a Saturday
    fires = next_fires("0 3 1 * 1", 3, after=monday, tz="UTC")  # the 1st OR a Monday
    assert [f.day for f in fires] == [7, 14, 21]
    fires = next_fires("0 0 29 2 *", 1, after=monday, tz="UTC")
    assert fires[0].date() == dt.date(2028, 2, 29)
    # 02:30 does not exist in Paris on 2026-03-29 (DST starts): that day is skipped
    spring = dt.datetime(2026, 3, 28, 12, 0, tzinfo=dt.timezone.utc)
    fires = next_fires("30 2 * * *", 2, after=spring, tz="Europe/Paris")
    assert [f.day for f in fires] == [30, 31]


def test_a_notebook_schedule_fires_like_execute_with_its_params(ip, tab, home):
    import nbformat

    nb = nbformat.v4.new_notebook()
    params_cell = nbformat.v4.new_code_cell("epochs = 1")
    params_cell.metadata["tags"] = ["parameters"]
    nb.cells = [params_cell, nbformat.v4.new_code_cell("print('epochs is', epochs * 10)")]
    Path("examples").mkdir()
    nbformat.write(nb, "examples/quickstart.ipynb")
    out = _magic(ip, 'schedule add examples/quickstart.ipynb --cron "0 3 * * 1" -p epochs=50')
    assert "schedule quickstart added" in out
    assert _schedule_file(home, "quickstart")["target"] == str(
        Path("examples/quickstart.ipynb").resolve()
    )
    done = _run_as_cron(tab, "quickstart", home)
    assert "fired run" in done.stdout, done.stderr
    run_id = _schedule_file(home, "quickstart")["history"][-1]["run"]
    output = home / "runs" / run_id / "output.ipynb"
    wait_for(output.is_file, timeout=120, interval=0.5)
    wait_for(lambda: "succeeded" in _magic(ip, "schedules"), timeout=120, interval=0.5)
    executed = nbformat.read(str(output), as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "epochs is 500" in printed
    spec = json.loads((home / "runs" / run_id / "spec.json").read_text())
    assert spec["kind"] == "notebook" and spec["trigger"]["schedule"] == "quickstart"


def test_a_fire_that_cannot_start_its_run_is_recorded_and_shown(ip, tab, home):
    Path("gone.py").write_text("print(1)\n")
    _magic(ip, 'schedule add gone.py --cron "0 3 * * 1"')
    Path("gone.py").unlink()
    done = _run_as_cron(tab, "gone", home)
    assert done.returncode == 2 and "could not start a run of schedule gone" in done.stderr
    assert done.stderr.count("\n") == 1  # one line
    assert _schedule_file(home, "gone")["history"][-1]["status"] == "failed"
    assert "last fire failed: could not start" in _magic(ip, "schedules")


def test_the_aws_spelling_of_a_schedule_for_the_eventbridge_clock():
    from runctl_jupyter.errors import RunctlError
    from runctl_jupyter.schedules.timing import aws_expression, parse_rate

    # six fields, weekdays by name (AWS counts 1-7 from Sunday), `?` in one day field
    assert aws_expression("0 3 * * 1", None) == "cron(0 3 ? * MON *)"
    assert aws_expression("0 3 * * 0,7", None) == "cron(0 3 ? * SUN *)"
    assert aws_expression("@daily", None) == "cron(0 0 * * ? *)"
    assert aws_expression("30 6 1 */3 *", None) == "cron(30 6 1 1,4,7,10 ? *)"
    assert aws_expression(None, parse_rate("1 hours")) == "rate(1 hour)"
    assert aws_expression(None, parse_rate("6h")) == "rate(6 hours)"
    with pytest.raises(RunctlError, match="day of the month OR a weekday"):
        aws_expression("0 3 1 * 1", None)


def test_the_command_list_built_first_does_not_break_schedule_checks():
    """`%load_ext` builds the top-level help with a stand-in parser class; the schedule
    checks must still read the real parser (they once iterated the stand-in)."""
    from runctl_jupyter.commands import UsageProblem, build_parser, format_help, parse

    build_parser("runctl")
    format_help("runctl")
    with pytest.raises(UsageProblem, match="only `schedule add` takes these"):
        parse(["schedule", "pause", "train", "--cron", "0 3 * * 1"])
