"""The bundle: complete without flags, nothing secret in the script, pins of what the code imports."""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from pathlib import Path

import pytest

from runctl_jupyter.aws import bootstrap, bundle
from runctl_jupyter.errors import RunctlError
from runctl_jupyter.store.folders import create_run


def _run(
    tmp_path: Path, code: str, objects: bytes | None = None, packages: dict | None = None
) -> tuple[Path, dict]:
    runs = tmp_path / "runs"
    runs.mkdir(exist_ok=True)
    spec = create_run(
        runs,
        kind="cell",
        code=code,
        params={"lr": 0.1, "note": "a b"},
        experiment="e",
        name="n",
        project="p",
        owner="o",
        backend="aws",
        workdir=str(tmp_path),
        objects=objects,
        object_names=["obj"] if objects else [],
        environment={"packages": packages or {}},
    )
    return runs / spec["run_id"], spec


def _members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_bundle_carries_run_files_agent_modules_and_sync_settings(tmp_path: Path):
    run_dir, spec = _run(tmp_path, "import json\nprint(lr)\n")
    data, reqs = bundle.build(run_dir, spec, {"kind": "s3", "bucket": "b"})
    files = _members(data)
    for name in (
        "run/spec.json",
        "run/code.py",
        "run/params.json",
        "run/env.json",
        "requirements.txt",
    ):
        assert name in files
    for module in bundle.AGENT_MODULES:
        assert f"pkg/runctl_jupyter/{module}" in files
    assert json.loads(files["run/spec.json"])["sync"] == {"kind": "s3", "bucket": "b"}
    assert json.loads(files["run/params.json"]) == {"lr": 0.1, "note": "a b"}
    assert reqs == []  # json is stdlib


def test_pip_auto_pins_imported_packages_to_the_notebooks_versions(tmp_path: Path):
    (tmp_path / "mylocal.py").write_text("VALUE = 3\n")
    code = "import six\nfrom yaml import safe_load\nimport os, mylocal\n"
    run_dir, spec = _run(tmp_path, code, packages={"PyYAML": "6.0.1"})
    data, reqs = bundle.build(run_dir, spec, {"kind": "s3"})
    import six

    assert reqs == ["pyyaml==6.0.1", f"six=={six.__version__}"]
    # the local module travels as a file into the run's working folder
    assert _members(data)["work/mylocal.py"] == b"VALUE = 3\n"


def test_an_import_that_resolves_to_nothing_is_refused_before_launch(tmp_path: Path):
    run_dir, spec = _run(tmp_path, "import no_such_module_xyz\n")
    with pytest.raises(RunctlError, match="no_such_module_xyz.*--pip"):
        bundle.build(run_dir, spec, {"kind": "s3"})
    bundle.build(run_dir, spec, {"kind": "s3"}, pip="none")  # the user takes charge


def test_pip_auto_pins_what_shipped_objects_need_to_unpickle(tmp_path: Path):
    from packaging.version import Version  # any installed third-party class will do

    run_dir, spec = _run(tmp_path, "print(obj)\n", objects=pickle.dumps({"obj": Version("1.0")}))
    _, reqs = bundle.build(run_dir, spec, {"kind": "s3"})
    assert any(r.startswith("packaging==") for r in reqs)


def test_pip_none_list_and_requirements_file(tmp_path: Path):
    run_dir, spec = _run(tmp_path, "import six\n")
    assert bundle.requirements_for(run_dir, spec, "none") == []
    assert bundle.requirements_for(run_dir, spec, ["torch==2.3.0"]) == ["torch==2.3.0"]
    req = tmp_path / "req.txt"
    req.write_text("# comment\nnumpy==2.0.0\n\n")
    assert bundle.requirements_for(run_dir, spec, str(req)) == ["numpy==2.0.0"]
    with pytest.raises(RunctlError, match="not found"):
        bundle.requirements_for(run_dir, spec, str(tmp_path / "missing.txt"))


def test_sync_folder_respects_gitignore(tmp_path: Path):
    src = tmp_path / "proj"
    (src / "data").mkdir(parents=True)
    (src / "pkg").mkdir()
    (src / ".git").mkdir()
    (src / ".gitignore").write_text("data/\n*.ckpt\n!keep.ckpt\n/secret.env\n")
    (src / "pkg" / "model.py").write_text("X = 1\n")
    (src / "data" / "big.bin").write_bytes(b"0" * 10)
    (src / "a.ckpt").write_text("x")
    (src / "keep.ckpt").write_text("x")
    (src / "secret.env").write_text("TOKEN=1")
    (src / ".git" / "config").write_text("x")
    names = sorted(rel for _, rel in bundle.sync_files(src))
    assert names == [".gitignore", "keep.ckpt", "pkg/model.py"]
    run_dir, spec = _run(tmp_path, "print(1)\n")
    data, _ = bundle.build(run_dir, spec, {"kind": "s3"}, sync_dirs=[src])
    assert "work/proj/pkg/model.py" in _members(data)


def test_bootstrap_script_quotes_values_and_holds_no_parameter(tmp_path: Path):
    script = bootstrap.script(
        "my-bucket", "runctl/runs/abc/bundle/attempt-1.tar.gz", "us-east-1", "abc", 1
    )
    assert "BUCKET=my-bucket" in script and "RUN_ID=abc" in script
    tricky = bootstrap.script("b", "runctl/runs/x y;rm -rf ~/bundle.tar.gz", "us-east-1", "abc", 2)
    assert "BUNDLE_KEY='runctl/runs/x y;rm -rf ~/bundle.tar.gz'" in tricky
    with pytest.raises(RunctlError, match="letters, digits"):
        bootstrap.script("b", "k", "us-east-1", "abc;reboot", 1)


def test_stop_script_writes_a_fixed_control_file():
    text = bootstrap.stop_script("abc", force=True)
    assert '\'{"stop": true, "force": true, "reason": "user"}\'' in text


def test_every_module_the_shipped_agent_imports_is_shipped_too():
    from test_layers import PACKAGE, shipped  # the agent's import closure, read with ast

    needed = {path.relative_to(PACKAGE).as_posix() for path in shipped()}
    missing = needed - set(bundle.AGENT_MODULES)
    assert not missing, f"the agent imports {sorted(missing)}, which the bundle does not ship"
