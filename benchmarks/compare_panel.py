"""compare_panel: building the ComparePanel of 100 runs x 1,000 steps x 3 metrics, seconds.

The runs are written as run folders (the agent's EventWriter, the same data as
the store benchmarks) and indexed; each repetition builds
`runctl_jupyter.display.compare_panel.compare(store, ids)` (what `%runctl
compare` calls) and renders its static outputs (`outputs()`: the table, the
overlaid curves, cost vs objective, parallel coordinates), which is what the
cell shows. Budget (issue 3): under 1 s.
"""

from __future__ import annotations

import json

from . import dataset
from .common import Ctx, NotLanded, Result, median, timed
from .store_bench import _write_run_folders

ABOUT = {
    "compare_panel": (
        "seconds to build `compare(store, ids)` for 100 runs x 1,000 steps x 3 metrics and "
        "render its static outputs (table, overlaid curves, cost vs objective, parallel "
        "coordinates; `ComparePanel.outputs()`), the same data as the store benchmarks. The "
        "four small ipywidgets controls a kernel adds are not included."
    )
}


def run(ctx: Ctx) -> dict[str, Result]:
    try:
        from runctl_jupyter.display.compare_panel import compare
        from runctl_jupyter.store import Store
    except ImportError as exc:
        raise NotLanded(f"runctl_jupyter.display.compare_panel: {exc}") from exc

    runs = ctx.size(100, 10)
    sizes = dataset.Sizes(runs=runs, hist_runs=runs, steps=ctx.size(1_000, 100))
    home = ctx.scratch("compare_home")
    _write_run_folders(home, sizes)
    store = Store(home)
    store.reindex()
    ids = [row.run_id for row in dataset.runs(sizes)]
    sizes_out: dict[str, int] = {}

    def build() -> None:
        panel = compare(store, ids)
        outputs = panel.outputs()
        sizes_out["bytes"] = len(json.dumps(outputs, default=str))
        sizes_out["rows"] = len(panel.table())

    if not ctx.quick:
        build()  # imports (plotly helpers), page cache
    samples = [timed(build) for _ in range(ctx.reps)]
    store.close()
    if sizes_out.get("rows") != runs:
        raise AssertionError(f"compare panel shows {sizes_out.get('rows')} rows, expected {runs}")
    return {
        "compare_panel": Result(
            unit="s",
            better="lower",
            ours=round(median(samples), 4),
            detail={
                "runs": runs,
                "steps": sizes.steps,
                "metrics": len(dataset.METRICS),
                "reps": ctx.reps,
                "samples": [round(x, 4) for x in samples],
                "outputs_kb": round(sizes_out["bytes"] / 1024, 1),
            },
        )
    }
