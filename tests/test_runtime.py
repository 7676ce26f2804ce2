"""The in-run runctl object, in and out of a run."""

from __future__ import annotations

import json

import pytest

from runctl_jupyter.runtime import Runtime


def test_outside_a_run_log_prints_and_checkpoints_are_not_kept(capsys):
    rt = Runtime(environ={})
    assert not rt.active and rt.params == {} and rt.run_id is None
    rt.log(step=3, loss=0.21, acc=0.93)
    rt.log(loss=0.2)
    assert capsys.readouterr().out.splitlines() == [
        "step 3: loss=0.21 acc=0.93",
        "step 4: loss=0.2",
    ]
    assert rt.save_checkpoint({"w": 1}) is None
    assert rt.load_checkpoint() is None
    assert rt.should_stop is False


def test_in_a_run_log_writes_one_line_per_call_to_its_own_file(tmp_path):
    (tmp_path / "params.json").write_text(json.dumps({"lr": 0.1}))
    rt = Runtime(environ={"RUNCTL_RUN_DIR": str(tmp_path), "RUNCTL_ATTEMPT": "2"})
    assert rt.params == {"lr": 0.1} and rt.run_id == tmp_path.name
    rt.log(step=1, loss=0.5, total=10)
    rt.log(acc=1)
    rt.flush()
    files = list((tmp_path / "runtime").iterdir())
    assert len(files) == 1 and files[0].name.startswith("2-")
    lines = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert [(x["step"], x["values"]) for x in lines] == [(1, {"loss": 0.5}), (2, {"acc": 1})]
    assert lines[0]["total"] == 10


def test_log_rejects_values_that_are_not_numbers(tmp_path):
    rt = Runtime(environ={"RUNCTL_RUN_DIR": str(tmp_path)})
    with pytest.raises(TypeError, match="needs a number"):
        rt.log(loss="high")


def test_numpy_scalars_are_logged_as_floats(tmp_path):
    np = pytest.importorskip("numpy")
    rt = Runtime(environ={"RUNCTL_RUN_DIR": str(tmp_path)})
    rt.log(loss=np.float32(0.5))
    rt.flush()
    line = json.loads(next((tmp_path / "runtime").iterdir()).read_text())
    assert line["values"] == {"loss": 0.5}


def test_checkpoints_round_trip_objects_and_files_latest_first(tmp_path):
    rt = Runtime(environ={"RUNCTL_RUN_DIR": str(tmp_path)})
    rt.save_checkpoint({"epoch": 1}, step=1)
    rt.save_checkpoint({"epoch": 10}, step=10)
    assert rt.load_checkpoint() == {"epoch": 10}
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"abc")
    saved = rt.save_checkpoint(str(weights), step=11)
    assert saved.name == "step-00000011"
    loaded = rt.load_checkpoint()
    assert loaded.read_bytes() == b"abc" and loaded.name == "w.bin"
    assert not any(p.name.startswith(".") for p in (tmp_path / "checkpoints").iterdir())


def test_only_rank_zero_logs_and_checkpoints(tmp_path):
    rt = Runtime(environ={"RUNCTL_RUN_DIR": str(tmp_path), "RANK": "1", "WORLD_SIZE": "2"})
    assert not rt.is_main and rt.world_size == 2
    rt.log(loss=1.0)
    assert rt.save_checkpoint({"a": 1}) is None
    assert not (tmp_path / "runtime").exists() and not (tmp_path / "checkpoints").exists()


def test_use_params_sets_params_outside_a_run():
    rt = Runtime(environ={})
    rt.use_params({"lr": 0.1})
    assert rt.params == {"lr": 0.1}
