"""Settings: one traitlets configurable, so ipython_config.py and %config work.

c.Runctl.backend = "aws"
%config Runctl.on_interrupt = "stop"
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from traitlets import Bool, Enum, Float, Int, List, TraitError, Unicode, default, validate
from traitlets.config import Config, Configurable


def default_home() -> Path:
    return Path(os.environ.get("RUNCTL_HOME") or Path.home() / ".runctl").expanduser()


def profile_config(warn: Callable[[Path, Exception], None]) -> Config:
    """Settings from IPython's default profile (ipython_config.py), as a kernel has them,
    for the processes with no kernel: the shell command and a sweep's scheduler. A broken
    profile is reported through `warn` and ignored: it must not stop the command."""
    from traitlets.config.loader import ConfigFileNotFound, PyFileConfigLoader

    ipython_dir = Path(os.environ.get("IPYTHONDIR") or Path.home() / ".ipython").expanduser()
    profile = ipython_dir / "profile_default"
    if not (profile / "ipython_config.py").is_file():
        return Config()
    try:
        return PyFileConfigLoader("ipython_config.py", str(profile)).load_config()
    except ConfigFileNotFound:
        return Config()
    except Exception as exc:  # noqa: BLE001 - any error in the user's file
        warn(profile / "ipython_config.py", exc)
        return Config()


class Runctl(Configurable):
    """runctl-jupyter settings (c.Runctl.*)."""

    home = Unicode(
        help="Folder of the store and run folders (default $RUNCTL_HOME or ~/.runctl)."
    ).tag(config=True)
    backend = Unicode("local", help="Where runs execute: local or aws.").tag(config=True)
    project = Unicode("default", help="Project name recorded on every run and tag.").tag(
        config=True
    )
    owner = Unicode(help="Owner recorded on runs and cloud tags (default: the login name).").tag(
        config=True
    )
    experiment = Unicode("default", help="Experiment used when --experiment is not given.").tag(
        config=True
    )
    on_interrupt = Enum(
        ["detach", "stop"],
        "detach",
        help="What Kernel > Interrupt does to a blocking run: detach (it goes on) or stop it.",
    ).tag(config=True)
    lost_timeout = Float(60.0, help="Seconds without a heartbeat after which a run is lost.").tag(
        config=True
    )
    grace_seconds = Float(10.0, help="Seconds between a graceful Stop (SIGTERM) and SIGKILL.").tag(
        config=True
    )
    confirm_above = Float(5.0, help="Estimated dollars above which a launch asks for --yes.").tag(
        config=True
    )
    monthly_budget = Float(
        0.0,
        help="Dollars a month per project and owner (0: none); warns at 80%, stops runs at 100%.",
    ).tag(config=True)
    team = Unicode("", help="the team whose shared store and budget this notebook uses").tag(config=True)
    team_admins = List(
        Unicode(),
        help="IAM users or roles who may stop any teammate's run (others stop only their own).",
    ).tag(config=True)
    team_budget = Float(
        0.0, help="Dollars a month for the whole team (c.Runctl.team; 0: none), checked at launch."
    ).tag(config=True)
    person_budget = Float(
        0.0, help="Dollars a month per person, every project (0: none), checked at launch."
    ).tag(config=True)
    ship_objects = Bool(True, help="Ship notebook objects a cell uses (cloudpickle).").tag(
        config=True
    )
    suggestions = Bool(
        True,
        help="Suggest before a launch when it looks like a costly mistake (once per notebook).",
    ).tag(config=True)
    quiet_suggestions = List(
        Unicode(),
        help="Suggestion rules not to show: spot-savings, spot-no-checkpoint, gpu-unused, "
        "parallel-over-budget, big-grid, kept-idle, stage-data, prewarm.",
    ).tag(config=True)
    stage_threshold_gb = Float(
        50.0,
        help="A --data prefix over this many GB, fetched from S3 by every run with no "
        "persistent volume, gets the suggestion to stage it on one (0: never).",
    ).tag(config=True)
    suggest_spot_savings_above = Float(
        1.0, help="Dollars spot would save on the estimate above which on-demand gets a suggestion."
    ).tag(config=True)
    container_runtime = Enum(
        ["auto", "podman", "docker"],
        "auto",
        help="What runs --image containers: auto (podman if installed, else docker), podman, docker.",
    ).tag(config=True)
    container_network = Unicode(
        "auto",
        help="--network for --image containers: auto (host on AWS, the runtime's default locally), "
        "or a name such as host, none, bridge.",
    ).tag(config=True)
    refresh_interval = Float(0.1, help="Seconds between reads of a live run's events.").tag(
        config=True
    )
    log_tail_lines = Int(30, help="Lines of log shown in a live run's panel.").tag(config=True)
    crontab_file = Unicode(
        help="Crontab file local schedules are written to (default $RUNCTL_CRONTAB, else the "
        "user's crontab, as `crontab -l` shows it).",
    ).tag(config=True)
    team = Unicode(
        "",
        help="Team whose S3 store runs are published to and teammates' runs pulled from "
        "(teams/<team>/ in the runctl bucket, docs/teams.md; empty: no team).",
    ).tag(config=True)
    team_beat_seconds = Float(
        120.0,
        help="Seconds between a live run's 'still alive' entries in the team store; a "
        "teammate sees it lost after 3 missed (docs/teams.md).",
    ).tag(config=True)
    debug = Bool(
        False,
        help="Show an error's full traceback (for a bug report) instead of its one line "
        "(as `runctl --debug` / `%runctl --debug`).",
    ).tag(config=True)

    @validate("team")
    def _check_team(self, proposal: dict) -> str:
        from .team_keys import check_name

        value = proposal["value"].strip()
        try:
            return check_name(value, "c.Runctl.team") if value else ""
        except ValueError as exc:
            raise TraitError(str(exc)) from None

    @default("home")
    def _home_default(self) -> str:
        return str(default_home())

    @default("owner")
    def _owner_default(self) -> str:
        try:
            import getpass  # only when no owner is set: it costs %load_ext a module

            return getpass.getuser()
        except Exception:  # no login name in some containers
            return "unknown"
