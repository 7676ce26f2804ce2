"""The Python API behind the magic and the shell: train, attach, stop, resume, ...

from runctl_jupyter.session import Session
run = Session().train(code="...", params={"lr": 0.1}, detach=True)
run.wait()

`Session` is one object that routes: runs (runs/), sweeps (sweeps/), comparisons
(display/compare_panel.py), cost (cost/) and AWS (aws/).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from .errors import Reported, RunctlError, RunFailed
from .runs.results import (
    LogText,
    ReportText,
    ResourceTable,
    Run,
    RunDetails,
    RunTable,
    format_duration,
    one_line,
)
from .runs.start import RunStarter

if TYPE_CHECKING:
    from .aws.commands import ResourceList
    from .cost.prices import Price
    from .cost.report import CostReport
    from .display.compare_panel import ComparePanel
    from .sweeps.handle import Sweep
    from .sweeps.results import SweepDetails, SweepTable


class Session(RunStarter):
    """One per kernel (or shell command): settings, the store and the backends."""

    def call(self, method: str, kwargs: dict[str, Any]) -> Any:
        """What the magic and the shell run for a parsed line (commands.to_call): the
        method, with this notebook's context memory around a launch."""
        function = getattr(self, method, None) if not method.startswith("_") else None
        if function is None:
            raise RunctlError(f"`%runctl {method}` is not available in this version yet")
        if method not in ("train", "sweep") or kwargs.get("resume"):
            return function(**kwargs)
        return self._launch_in_context(function, method, kwargs)

    # -- context memory (runs/context.py) ----------------------------------------------
    def _context(self) -> Any:
        from .runs.context import Context, context_key

        return Context(self.store.home, context_key(getattr(self.shell, "user_ns", None)))

    def _launch_in_context(self, function: Any, method: str, kwargs: dict[str, Any]) -> Any:
        memory = self._context()
        if not kwargs.setdefault("options", {}).pop("fresh", False):
            line = memory.fill(kwargs, self._kept_instance, one_instance=method == "train")
            if line:
                print(line, flush=True)
        if (kwargs.get("backend") or self.config.backend) == "aws" and self.config.suggestions:
            self._suggest_idle_kept()
        try:
            result = function(**kwargs)
        except RunFailed as exc:  # a run was made: what it was launched with is remembered
            memory.remember(kwargs, exc.run_id)
            raise
        memory.remember(kwargs, getattr(result, "id", None) if method == "train" else None)
        if method == "train" and not kwargs.get("detach"):
            self._register_models(result.id)
        return result

    def _register_models(self, run_id: str) -> None:
        """After a run ends here: the versions it asked for (`register_model`,
        `--register-model`), numbered now (store/model_sync.py)."""
        from .registry import Registry
        from .store.model_sync import sync_run

        for line in sync_run(self.store, Registry(self.store.home), run_id):
            print(line, flush=True)

    def models(
        self,
        action: str = "list",
        name: str | None = None,
        target: Any = None,
        alias: str = "production",
        mlflow: str | None = None,
    ) -> Any:
        """`runctl models [show NAME | register NAME RUN | promote NAME VERSION |
        rollback NAME | export NAME VERSION --mlflow URI]` (runs/models.py)."""
        from .runs.models import models

        return models(self, action, name, target, alias, mlflow)

    def schedule(self, action: str, name: str | None = None, **kwargs: Any) -> Any:
        """`runctl schedule add|pause|resume|remove|run|fire|show` (runctl_jupyter/schedules/)."""
        from .schedules.api import schedule

        return schedule(self, action, name, **kwargs)

    def schedules(self) -> Any:
        """`runctl schedules`: name, when, next fire, last run and its status, enabled."""
        from .schedules.api import ScheduleTable, with_fired
        from .schedules.files import all_schedules

        return ScheduleTable(self, [with_fired(self, s) for s in all_schedules(self.store.home)])

    def _kept_instance(self, run_id: str) -> tuple[str | None, str]:
        """The instance `run_id` kept or reused, if it ended and the instance still
        runs: (its id, "") or (None, why not, "" when there is nothing to say)."""
        from .events import FINAL_STATUSES
        from .runs.context import kept_target

        try:
            row = self.store.get(run_id)
        except RunctlError:
            return None, ""
        kept = kept_target(self.store, row)
        if kept is None:
            return None, ""
        instance, region = kept
        if row.get("status") not in FINAL_STATUSES:
            return None, f"{instance} is still busy with run {run_id}: a new instance"
        state = self.backend("aws").instance_state(instance, region)
        if state != "running":
            return None, f"the kept instance {instance} is {state or 'gone'}: a new instance"
        return instance, ""

    def suggest(self, rule: str, line: str) -> None:
        """Show a suggestion before a launch (cost/suggestions.py), once per notebook."""
        config = self.config
        if not config.suggestions or rule in config.quiet_suggestions:
            return
        if self._context().first_time(rule):
            print(
                f"suggestion: {line} (once per notebook; c.Runctl.quiet_suggestions = "
                f"[{rule!r}] silences it, c.Runctl.suggestions = False all of them)",
                flush=True,
            )

    def _suggest_idle_kept(self) -> None:
        from .runs.context import idle_kept_instances

        state_of = self.backend("aws").instance_state
        for instance, hours in idle_kept_instances(self.store, state_of):
            self.suggest(
                "kept-idle",
                f"{instance} was kept and has run idle for {hours:.1f} h: reuse it "
                f"(--instance {instance}) or stop it (aws ec2 stop-instances --instance-ids "
                f"{instance}); --idle-minutes M makes a kept instance stop itself",
            )

    def context(self, clear: bool = False) -> LogText:
        """`%runctl context`: what this notebook (shell: folder) launched with last."""
        memory = self._context()
        if clear:
            memory.clear()
            return LogText(f"forgot the context of {memory.key}\n")
        data = memory.read()
        lines = [f"context of {memory.key}"]
        if not data:
            return LogText(lines[0] + ": nothing yet (a train or sweep with options sets it)\n")
        from .runs.context import REMEMBERED

        for field in (*REMEMBERED, "last_run"):
            if data.get(field) is not None:
                lines.append(f"  {field.replace('_', ' '):<14} {data[field]}")
        if data.get("last_run"):
            instance, why_not = self._kept_instance(data["last_run"])
            if instance or why_not:
                lines.append(f"  {'instance':<14} {instance or why_not}")
        lines.append("(a bare train reuses these; --fresh ignores them; --clear forgets them)")
        return LogText("\n".join(lines) + "\n")

    # -- reading -------------------------------------------------------------------
    def runs(
        self,
        experiment: str | None = None,
        status: str | None = None,
        limit: int | None = 20,
        project: str | None = None,
        sweep: str | None = None,
        owner: str | None = None,
    ) -> RunTable:
        self.store.refresh()
        if owner is not None:  # teammates' runs too: new summaries first, time-bounded
            self.team.pull()
        if sweep is not None:
            from .sweeps.api import find

            handle = find(self, sweep)
            if handle is None:
                raise RunctlError(f"no sweep {sweep!r}: see `runctl sweeps` for sweep ids")
            sweep = handle.id
        rows = self.store.list_runs(
            experiment=experiment,
            status=status,
            project=project,
            sweep_id=sweep,
            limit=limit,
            owner=owner,
        )
        filters = {"experiment": experiment, "status": status, "project": project, "sweep": sweep}
        if owner is not None:
            filters["owner"] = owner
        summaries = self.store.summaries([r["id"] for r in rows])
        return RunTable(rows, summaries, session=self, filters=filters)

    def show(self, ref: str) -> RunDetails | SweepDetails:
        """A run's details, or a sweep's (sweep ids start with `s`)."""
        from .sweeps.api import lookup
        from .sweeps.api import show as show_sweep

        found = lookup(self, ref)
        if found is not None:
            return show_sweep(self, found.id)
        run = self.run(ref)
        self.store.refresh(run.id)
        return RunDetails(run.row, self.store.metrics(run.id), self.store.checkpoints(run.id))

    def dev(self, **kwargs: Any) -> Any:
        """A dev run: each change restarts it as its next attempt (runs/dev.py)."""
        from .runs.dev import start_dev

        return start_dev(self, **kwargs)

    def sweep(self, **kwargs: Any) -> Sweep:
        """Many runs over a search space (runctl_jupyter/sweeps/)."""
        from .sweeps.api import sweep

        return sweep(self, **kwargs)

    def sweeps(self, **kwargs: Any) -> SweepTable:
        from .sweeps.api import sweeps

        return sweeps(self, **kwargs)

    def aws(
        self, action: str, region: str | None = None, team: str | None = None, admin: bool = False
    ) -> LogText:
        """`runctl aws setup | policy | doctor` (runctl_jupyter/aws/commands.py);
        `aws policy --team T [--admin]` for a team's member (admin)."""
        from .aws.commands import aws

        report = aws(action, config=self.backend("aws"), region=region, team=team, admin=admin)
        if not report.ok:
            raise Reported(report.problem or "fix what is marked FAIL above", str(report))
        return LogText(str(report))

    def resources(
        self,
        regions: list[str] | None = None,
        all_regions: bool = False,
        all_owners: bool = False,
    ) -> ResourceTable:
        """Every runctl-managed cloud resource with its owner, run, state, $/h and $/month;
        what could not be read is named under the table (and the shell exits non-zero)."""
        from .aws.commands import resources

        listing = resources(
            self._run_status, config=self.backend("aws"), regions=regions, all_regions=all_regions
        )
        return ResourceTable(listing, self._resource_costs(listing))

    def _resource_costs(self, found: ResourceList) -> dict[str, dict[str, Any]]:
        """{resource id: {rate, spent, basis}} (cost/resource_costs.py)."""
        from .cost.prices import Prices
        from .cost.resource_costs import resource_costs

        def run_row(run_id: str) -> dict[str, Any] | None:
            try:
                return self.store.get(run_id)
            except RunctlError:
                return None

        return resource_costs(found, Prices(self.store.home), run_row)

    def cleanup(
        self,
        yes: bool = False,
        all_owners: bool = False,
        regions: list[str] | None = None,
        all_regions: bool = False,
        partial: bool = False,
    ) -> ReportText:
        """List orphaned resources; delete them with --yes (or after a yes at a terminal);
        on a partial listing only with --partial too."""
        from .aws.commands import cleanup_orphans

        interactive = self.shell is None and sys.stdin is not None and sys.stdin.isatty()
        confirm = (
            (lambda question: input(f"{question} [y/N] ").strip().lower() in ("y", "yes"))
            if interactive
            else None
        )
        owner = self.config.owner if self._owner_chosen() else None
        report = cleanup_orphans(
            self._run_status,
            owner=owner,
            all_owners=all_owners,
            yes=yes,
            confirm=confirm,
            config=self.backend("aws"),
            regions=regions,
            all_regions=all_regions,
            partial=partial,
        )
        return ReportText(report, partial=bool(report.failures))

    def cost(self, **kwargs: Any) -> CostReport | Price:
        """`runctl cost` (spend report) or `runctl cost price TYPE` (runctl_jupyter/cost/report.py)."""
        from .cost.report import cost

        return cost(self, **kwargs)

    def compare(
        self,
        refs: list[str] | tuple[str, ...] = (),
        experiment: str | None = None,
        sweep: str | None = None,
        metric: str | None = None,
    ) -> ComparePanel:
        """Runs side by side: curves, the params that differ, cost against objective."""
        from .display.compare_panel import compare

        objective = None
        if sweep is not None:
            from .sweeps.api import find

            handle = find(self, sweep)
            if handle is None:
                raise RunctlError(f"no sweep {sweep!r}: see `runctl sweeps` for sweep ids")
            sweep, objective = handle.id, handle.objective
        if not refs and experiment is None and sweep is None:
            raise RunctlError("compare needs runs: RUN RUN ..., --experiment NAME or --sweep SWEEP")
        self.store.refresh()
        refs = [self.team.resolve(r) if "/" in r else r for r in refs]  # owner/RUN
        return compare(
            self.store, refs, experiment=experiment, sweep=sweep, metric=metric, objective=objective
        )


__all__ = ["Session", "Run", "format_duration", "one_line"]
