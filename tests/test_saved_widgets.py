"""A saved notebook holds no widget view it cannot draw without its kernel.

A real kernel (nbclient) runs a short local run, a tiny sweep in the same
experiment, `%runctl compare` of the three runs, and a RunPanel still live when
the notebook is saved. Then:
- as nbclient saves it (widget state stored): every widget view left has its
  model's state in the notebook, and finished panels left only static outputs;
- saved through a real jupyter_server with runctl's extension, as JupyterLab
  saves by default (no widget state): no widget view is left at all, the static
  outputs are there, and the live panel left its note.
The browser side (JupyterLab reopening such a file) is tests/ui/test_saved_notebook.py.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import nbclient
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from runctl_jupyter.display._widgets import LIVE_WIDGET
from runctl_jupyter.server.saving import WIDGET_STATE, WIDGET_VIEW, saved_models

pytest_plugins = ["pytest_jupyter.jupyter_server"]

ROOT = Path(__file__).resolve().parent.parent
PLOTLY = "application/vnd.plotly.v1+json"

TRAIN = """%%runctl train --name {name} --experiment saved -p lr={lr}
for step in range(5):
    runctl.log(step=step, total=5, loss=lr / (step + 1))"""

STILL_LIVE = """from runctl_jupyter.display.run_panel import RunPanel
panel = RunPanel({"id": "live0001", "name": "going", "status": "running", "backend": "local"},
                 on_stop=lambda force: None)
panel.show()
panel.update(panel.run, [{"seq": 1, "t": 0, "type": "metric", "step": 0, "values": {"loss": 1.0}}])
panel.redraw()"""

CELLS = [
    "%load_ext runctl_jupyter",
    TRAIN.format(name="saved-a", lr=0.1),
    "%%runctl sweep --grid lr=0.1,0.01 --objective loss:min --name saved-sweep --experiment saved\n"
    "runctl.log(step=0, loss=lr)",
    "%runctl compare --experiment saved",  # saved-a and the sweep's two trials
    STILL_LIVE,
]
RUN_A, SWEEP, COMPARE, LIVE = 1, 2, 3, 4


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The notebook as nbclient leaves it; its kernel imports this checkout (set here:
    conftest's autouse PYTHONPATH comes after a module fixture), RUNCTL_HOME is a temp folder."""
    home = tmp_path_factory.mktemp("runctl-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RUNCTL_HOME", str(home))
        mp.setenv(
            "PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        )
        mp.chdir(tmp_path_factory.mktemp("work"))
        nb = new_notebook(cells=[new_code_cell(source) for source in CELLS])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}  # fmt: skip
        nbclient.NotebookClient(nb, timeout=180, kernel_name="python3", store_widget_state=True).execute()  # fmt: skip
    return json.loads(json.dumps(nb))  # plain JSON, as a frontend sends it


@pytest.fixture
def jp_server_config() -> dict:
    return {"ServerApp": {"jpserver_extensions": {"runctl_jupyter": True}}}


def views(cell: dict) -> list[dict]:
    return [o for o in cell.get("outputs", []) if WIDGET_VIEW in o.get("data", {})]


def html_of(cell: dict) -> str:
    return "".join("".join(o.get("data", {}).get("text/html", "")) for o in cell["outputs"])


def test_nbclient_saves_no_widget_view_without_its_model_state(executed):
    saved = saved_models(executed)
    for i, cell in enumerate(executed["cells"]):
        for output in views(cell):
            assert output["data"][WIDGET_VIEW]["model_id"] in saved, f"cell {i}: a dead widget view"
    # finished panels: their widgets gave way to the static summary and figure
    for i in (RUN_A, SWEEP):
        assert views(executed["cells"][i]) == [], f"cell {i} kept a widget view"
    assert "runctl-summary" in html_of(executed["cells"][RUN_A])
    assert "runctl-sweep-summary" in html_of(executed["cells"][SWEEP])
    # still live when saved: its views are marked, so a save without state drops them
    live = views(executed["cells"][LIVE])
    assert live and all(o["metadata"].get(LIVE_WIDGET) for o in live)


async def test_a_save_through_the_server_keeps_only_static_outputs(executed, jp_fetch, jp_root_dir):
    nb = copy.deepcopy(executed)
    del nb["metadata"]["widgets"]  # JupyterLab's default: widget state is not saved
    body = json.dumps({"type": "notebook", "content": nb})
    await jp_fetch("api", "contents", "saved.ipynb", method="PUT", body=body)
    on_disk = json.loads((Path(jp_root_dir) / "saved.ipynb").read_text())
    cells = on_disk["cells"]

    assert [i for i, cell in enumerate(cells) if views(cell)] == []
    assert "runctl-summary" in html_of(cells[RUN_A])
    compare = cells[COMPARE]["outputs"]
    assert "runctl-compare" in html_of(cells[COMPARE]) and "saved-a" in html_of(cells[COMPARE])
    assert any(PLOTLY in o["data"] for o in compare), "the compare curves"
    assert len(compare) == len(executed["cells"][COMPARE]["outputs"]) - 1, "only the controls go"
    assert "runctl-sweep-summary" in html_of(cells[SWEEP])
    # the live panel: its note stays (how to see it again); its empty figure output goes
    (note,) = cells[LIVE]["outputs"]
    text = "".join(note["data"]["text/plain"])  # nbformat may write a text as lines
    assert "live panel" in text and "%runctl attach live0001" in text
    assert LIVE_WIDGET not in note["metadata"]
    # the document sent was not the one changed: a save does not touch the browser's copy
    assert views(nb["cells"][COMPARE])


async def test_a_save_with_widget_state_keeps_the_views_it_can_draw(
    executed, jp_fetch, jp_root_dir
):
    """ "Save Widget State Automatically" on: each view's model is in the file, so it stays."""
    body = json.dumps({"type": "notebook", "content": executed})
    await jp_fetch("api", "contents", "with-state.ipynb", method="PUT", body=body)
    on_disk = json.loads((Path(jp_root_dir) / "with-state.ipynb").read_text())
    assert on_disk["metadata"]["widgets"][WIDGET_STATE]["state"]
    kept = [len(views(cell)) for cell in on_disk["cells"]]
    assert kept == [len(views(cell)) for cell in executed["cells"]] and sum(kept) > 0
