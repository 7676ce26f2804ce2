"""Idle protection on a kept instance: it stops itself after `--idle-minutes` with no run.

Stdlib only; runs on the instance, so a closed notebook cannot leave a kept
instance billing. The bootstrap calls, after it starts a run's agent:

    python -m runctl_jupyter.agent.idle ensure ROOT --spec RUN_DIR/spec.json

which, for a `--keep` run (or one given `--idle-minutes`), writes the minutes to
`ROOT/idle.json` and starts the watcher as a daemon unless one is alive already
(`ROOT/idle.pid`; a live watcher picks the new minutes up at its next poll).

The watcher polls every 30 s. The instance is busy while any run folder under
`ROOT/runs/` has a live agent (`agent.json`: pid and process start time) or was
written to recently (a bootstrap unpacking the next run); it is idle from the
latest of those moments. After `minutes` idle it logs why and runs the action,
`shutdown -h now` by default: a kept instance is launched with
InstanceInitiatedShutdownBehavior=stop, so it stops (no more compute billing;
its volumes stay) rather than terminating. A kept spot instance comes from a
persistent request (the only spot instance EC2 can stop); its stop disables the
request, which then starts nothing until the instance is started again.

A stopped instance can run again without a bootstrap: started by hand, or by EC2
when a spot interruption stopped it and capacity came back. So `ensure` also leaves
a cloud-init per-boot script (`/var/lib/cloud/scripts/per-boot/runctl-idle`, or
`$RUNCTL_PER_BOOT_DIR`) that starts the watcher at every boot: an instance nobody
uses stops again after the idle minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_MINUTES = 30.0
POLL = 30.0
CONFIG = "idle.json"
PID = "idle.pid"
LOG = "idle.log"
SHUTDOWN = ("shutdown", "-h", "now")
PER_BOOT_DIR = "/var/lib/cloud/scripts/per-boot"  # cloud-init runs these at every boot
BOOT_HOOK = "runctl-idle"


def _proc_start(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def agent_alive(run_dir: Path) -> bool:
    """True when the run folder's agent (agent.json) is a live process."""
    try:
        info = json.loads((run_dir / "agent.json").read_text())
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    start = _proc_start(pid)
    return start is not None and (info.get("proc_start") in (None, start))


def last_activity(root: Path) -> tuple[float, bool]:
    """(the latest write under ROOT/runs/*, whether an agent is alive now)."""
    latest = 0.0
    busy = False
    runs = root / "runs"
    try:
        folders = [p for p in runs.iterdir() if p.is_dir()]
    except OSError:
        return latest, busy
    for folder in folders:
        if agent_alive(folder):
            busy = True
        for name in ("", "events.jsonl", "agent.json", "spec.json"):
            try:
                latest = max(latest, (folder / name).stat().st_mtime)
            except OSError:
                continue
    return latest, busy


def read_minutes(root: Path, default: float = DEFAULT_MINUTES) -> float:
    try:
        return float(json.loads((root / CONFIG).read_text())["minutes"])
    except (OSError, ValueError, KeyError, TypeError):
        return default


def log(root: Path, message: str) -> None:
    line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {message}\n"
    with open(root / LOG, "a", encoding="utf-8") as f:
        f.write(line)


class Watcher:
    def __init__(
        self,
        root: Path,
        action: tuple[str, ...] | list[str] = SHUTDOWN,
        poll: float = POLL,
        clock=time.time,
    ) -> None:
        self.root = Path(root)
        self.action = list(action)
        self.poll = poll
        self.clock = clock
        self.since = clock()  # idle at least since the watcher began

    def idle_seconds(self) -> float:
        """Seconds since the last sign of a run (0 while one is running)."""
        now = self.clock()
        latest, busy = last_activity(self.root)
        if busy:
            self.since = now
            return 0.0
        self.since = max(self.since, latest)
        return max(0.0, now - self.since)

    def check(self) -> bool:
        """One poll: run the action when idle too long; True when it ran."""
        minutes = read_minutes(self.root)
        idle = self.idle_seconds()
        if idle < minutes * 60:
            return False
        log(
            self.root,
            f"no run for {idle / 60:.1f} min (--idle-minutes {minutes:g}): {' '.join(self.action)}",
        )
        subprocess.run(self.action, check=False)
        return True

    def run(self) -> int:
        (self.root / PID).write_text(str(os.getpid()))
        log(self.root, f"idle watcher started (pid {os.getpid()}, {read_minutes(self.root):g} min)")
        while True:
            if self.check():
                return 0
            time.sleep(self.poll)


def watcher_alive(root: Path) -> bool:
    try:
        pid = int((root / PID).read_text())
    except (OSError, ValueError):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"runctl_jupyter.agent.idle" in cmdline


def wanted_minutes(spec: dict) -> float | None:
    """The idle minutes a run asks for: --idle-minutes, else 30 for --keep, else None."""
    options = spec.get("options") or {}
    minutes = options.get("idle_minutes")
    if minutes:
        return float(minutes)
    if options.get("keep") or (spec.get("target") or {}).get("keep"):
        return DEFAULT_MINUTES
    return None


def ensure(root: Path, spec_path: Path | None, minutes: float | None, argv_tail: list[str]) -> int:
    """Set the minutes and start the watcher as a daemon unless one is alive."""
    root = Path(root)
    if minutes is None and spec_path is not None:
        try:
            minutes = wanted_minutes(json.loads(Path(spec_path).read_text()))
        except (OSError, ValueError):
            minutes = None
    if minutes is None:
        return 0  # not a kept instance: it ends with its run
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / (CONFIG + ".tmp")
    tmp.write_text(json.dumps({"minutes": minutes}))
    os.replace(tmp, root / CONFIG)
    install_boot_hook(root, minutes, argv_tail)
    if watcher_alive(root):
        return 0
    cmd = [sys.executable, "-m", "runctl_jupyter.agent.idle", "watch", str(root), *argv_tail]
    with open(root / LOG, "ab") as out:
        subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,  # outlives the SSM command
            env=dict(os.environ),
        )
    return 0


def install_boot_hook(root: Path, minutes: float, argv_tail: list[str]) -> Path | None:
    """The per-boot script that starts the watcher again after a start; None without
    cloud-init (no per-boot folder) or without the right to write there."""
    folder = Path(os.environ.get("RUNCTL_PER_BOOT_DIR") or PER_BOOT_DIR)
    if not folder.is_dir():
        return None
    env = {k: os.environ[k] for k in ("HOME", "PYTHONPATH") if k in os.environ}
    cmd = [sys.executable, "-m", "runctl_jupyter.agent.idle", "ensure", str(root)]
    cmd += ["--minutes", f"{minutes:g}", *argv_tail]
    text = (
        "#!/bin/sh\n# runctl: a kept instance started again stops itself when nobody uses it\n"
        + "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
        + f"exec {shlex.join(cmd)}\n"
    )
    path = folder / BOOT_HOOK
    try:
        tmp = folder / (BOOT_HOOK + ".tmp")
        tmp.write_text(text)
        tmp.chmod(0o755)
        os.replace(tmp, path)
    except OSError:
        return None
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runctl_jupyter.agent.idle")
    parser.add_argument("mode", choices=("ensure", "watch"))
    parser.add_argument("root", help="the instance's runctl folder ($HOME/runctl)")
    parser.add_argument("--spec", help="ensure: the run's spec.json (its --keep / --idle-minutes)")
    parser.add_argument("--minutes", type=float, help="ensure: idle minutes (instead of --spec)")
    parser.add_argument("--poll", type=float, default=POLL)
    argv = list(sys.argv[1:] if argv is None else argv)
    action: list[str] = []
    if "--" in argv:  # after --: the command to run when idle (default: shutdown -h now)
        cut = argv.index("--")
        argv, action = argv[:cut], argv[cut + 1 :]
    args = parser.parse_args(argv)
    tail = ["--poll", str(args.poll)] + (["--", *action] if action else [])
    if args.mode == "ensure":
        return ensure(Path(args.root), Path(args.spec) if args.spec else None, args.minutes, tail)
    return Watcher(Path(args.root), tuple(action) or SHUTDOWN, args.poll).run()


if __name__ == "__main__":
    sys.exit(main())
