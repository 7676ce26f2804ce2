"""The Python API behind the magic and the shell: train, attach, stop, resume, ...

from runctl_jupyter.session import Session
run = Session().train(code="...", params={"lr": 0.1}, detach=True)
run.wait()

`Session` is one object that routes: runs (runs/), sweeps (sweeps/), comparisons
(display/compare_panel.py), cost (cost/) and AWS (aws/).
"""

from __future__ import annotations

import sys
from typing import Any

from .errors import Reported, RunctlError
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


class Session(RunStarter):
    """One per kernel (or shell command): settings, the store and the backends."""

    # -- reading -------------------------------------------------------------------
    def runs(
        self,
        experiment: str | None = None,
        status: str | None = None,
        limit: int | None = 20,
        project: str | None = None,
        sweep: str | None = None,
    ) -> RunTable:
        self.store.refresh()
        if sweep is not None:
            from .sweeps.api import find

            handle = find(self, sweep)
            if handle is None:
                raise RunctlError(f"no sweep {sweep!r}: see `runctl sweeps` for sweep ids")
            sweep = handle.id
        rows = self.store.list_runs(
            experiment=experiment, status=status, project=project, sweep_id=sweep, limit=limit
        )
        filters = {"experiment": experiment, "status": status, "project": project, "sweep": sweep}
        summaries = self.store.summaries([r["id"] for r in rows])
        return RunTable(rows, summaries, session=self, filters=filters)

    def show(self, ref: str) -> Any:
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

    def sweep(self, **kwargs: Any) -> Any:
        """Many runs over a search space (runctl_jupyter/sweeps/)."""
        from .sweeps.api import sweep

        return sweep(self, **kwargs)

    def sweeps(self, **kwargs: Any) -> Any:
        from .sweeps.api import sweeps

        return sweeps(self, **kwargs)

    def aws(self, action: str, region: str | None = None) -> Any:
        """`runctl aws setup | policy | doctor` (runctl_jupyter/aws/commands.py)."""
        from .aws.commands import aws

        report = aws(action, config=self.backend("aws"), region=region)
        if not report.ok:
            raise Reported(report.problem or "fix what is marked FAIL above", str(report))
        return LogText(str(report))

    def resources(
        self,
        regions: list[str] | None = None,
        all_regions: bool = False,
        all_owners: bool = False,
    ) -> Any:
        """Every runctl-managed cloud resource with its owner, run, state, $/h and $/month;
        what could not be read is named under the table (and the shell exits non-zero)."""
        from .aws.commands import resources

        listing = resources(
            self._run_status, config=self.backend("aws"), regions=regions, all_regions=all_regions
        )
        return ResourceTable(listing, self._resource_costs(listing))

    def _resource_costs(self, found: list) -> dict[str, dict[str, Any]]:
        """{resource id: {rate, spent, basis}} (cost/resource_costs.py)."""
        from .cost.prices import Prices
        from .cost.resource_costs import resource_costs

        def run_row(run_id: str) -> dict | None:
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
    ) -> Any:
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

    def cost(self, **kwargs: Any) -> Any:
        """`runctl cost` (spend report) or `runctl cost price TYPE` (runctl_jupyter/cost/report.py)."""
        from .cost.report import cost

        return cost(self, **kwargs)

    def compare(
        self,
        refs: list[str] | tuple = (),
        experiment: str | None = None,
        sweep: str | None = None,
        metric: str | None = None,
    ) -> Any:
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
        return compare(
            self.store, refs, experiment=experiment, sweep=sweep, metric=metric, objective=objective
        )


__all__ = ["Session", "Run", "format_duration", "one_line"]
