"""The model registry (issue 15, must-have 4): versions from runs with their lineage,
aliases with history (exact rollback), --register-if parsed (never eval'd), load_model
verifying the artifact's digest; through a real IPython shell and real runs."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from runctl_jupyter.params.conditions import holds, parse_condition
from runctl_jupyter.params.values import BadParam
from runctl_jupyter.registry import Registry, RegistryError, digest_of
from runctl_jupyter.runtime import Runtime

SAVES = "runctl.log(step=0, acc={acc})\nrunctl.save_checkpoint({{'w': {acc}}})\n"


def _train(ip, line: str, cell: str) -> str:
    with capture_output() as cap:
        ip.run_cell_magic("runctl", f"train {line}", cell)
    return cap.stdout


def _magic(ip, line: str) -> str:
    with capture_output() as cap:
        result = ip.run_line_magic("runctl", line)
    return cap.stdout + str(result)


# ---------------------------------------------------------------- the condition


def test_register_if_is_a_parsed_comparison_never_python():
    tree = parse_condition("val_acc >= 0.95 and loss < 0.1")
    assert holds(tree, {"val_acc": 0.97, "loss": 0.05}) == (True, "val_acc >= 0.95 and loss < 0.1")
    ok, why = holds(tree, {"val_acc": 0.9, "loss": 0.05})
    assert not ok and why == "val_acc >= 0.95 is false (val_acc=0.9)"
    ok, why = holds(parse_condition("acc > 0.5 or -1 < loss"), {"acc": 0.1})
    assert not ok and "logged no loss" in why
    for bad in ("val_acc >=", "__import__('os').system('x')", "acc > other.x", "acc", "1 < 2"):
        with pytest.raises(BadParam, match="--register-if"):
            parse_condition(bad)


# ---------------------------------------------------------------- the registry's files


def test_versions_aliases_and_an_exact_rollback(tmp_path):
    registry = Registry(tmp_path)
    art = tmp_path / "model.bin"
    art.write_bytes(b"weights")
    digest, size = digest_of(art)
    for _ in range(3):
        registry.register("digits", str(art), digest, size, run_id="r1")
    assert [v["version"] for v in registry.versions("digits")] == [1, 2, 3]
    registry.promote("digits", 1, "production")
    registry.promote("digits", 3, "production")
    registry.promote("digits", 2, "staging")
    assert registry.aliases("digits") == {"production": 3, "staging": 2}
    move = registry.rollback("digits", "production")
    assert (move["version"], move["previous"]) == (1, 3)
    assert registry.aliases("digits")["production"] == 1
    assert len(registry.alias_history("digits")) == 4  # every move is kept
    with pytest.raises(RegistryError, match="has no version 9"):
        registry.promote("digits", 9, "production")
    with pytest.raises(RegistryError, match="only at version 2"):
        registry.rollback("digits", "staging")
    for bad in ("a b", "team/digits", ""):
        with pytest.raises(RegistryError, match="no '/' or spaces"):
            registry.register(bad, str(art), digest, size)
    assert registry.load("digits", alias="production") == art
    art.write_bytes(b"tampered")
    with pytest.raises(RegistryError, match="changed since it was registered"):
        registry.load("digits", version=1)


# ---------------------------------------------------------------- from runs, in a notebook


def test_register_model_and_register_if_through_the_magic(ip, home):
    out = _train(ip, '--register-model digits --register-if "acc >= 0.5"', SAVES.format(acc=0.8))
    assert "registered digits version 1 from run" in out, out
    out = _train(ip, '--register-model digits --register-if "acc >= 0.5"', SAVES.format(acc=0.3))
    assert "digits not registered: acc >= 0.5 is false (acc=0.3)" in out, out
    assert Runtime(environ={}).load_model("digits") == {"w": 0.8}

    out = _train(ip, "", "runctl.log(step=0, acc=0.9)\nrunctl.register_model([1, 2, 3], 'clf')\n")
    assert "registered clf version 1" in out, out
    listing = _magic(ip, "models")
    assert "digits" in listing and "clf" in listing and "acc=0.8" in listing
    assert "already" not in listing  # runs read again by a later listing say nothing new

    out = _train(ip, "--register-model digits", SAVES.format(acc=0.6))
    assert "registered digits version 2" in out
    _magic(ip, "models promote digits 1 --alias production")
    shown = _magic(ip, "models promote digits 2 --alias production")
    assert "digits production -> version 2 (was version 1)" in shown
    shown = _magic(ip, "models rollback digits")
    assert "digits production -> version 1 (back from 2)" in shown
    assert Runtime(environ={}).load_model("digits", alias="production") == {"w": 0.8}
    table = _magic(ip, "models show digits")
    row_1 = next(line for line in table.splitlines() if line.startswith("1 "))
    assert "production" in row_1 and "--register-model, acc >= 0.5" in row_1


def test_bad_registry_lines_are_one_line_and_create_nothing(ip, home):
    for line, cell, match in (
        ('train --register-model digits --register-if "acc >="', "pass\n", "not a comparison"),
        ('train --register-if "acc > 1"', "pass\n", "goes with --register-model"),
        ("train --register-model 'my model'", "pass\n", "no '/' or spaces"),
    ):
        with pytest.raises(UsageError, match=match):
            ip.run_cell_magic("runctl", line, cell)
    with pytest.raises(UsageError, match="VERSION is a number"):
        ip.run_line_magic("runctl", "models promote digits latest")
    with pytest.raises(UsageError, match="no model 'digits'"):
        ip.run_line_magic("runctl", "models show digits")
    assert not (home / "runs").exists() or not list((home / "runs").iterdir())


def test_a_sweep_registers_its_best_trial(ip, home):
    cell = "runctl.log(step=0, acc=lr)\nrunctl.save_checkpoint({'lr': lr})\n"
    with capture_output():
        ip.run_cell_magic(
            "runctl",
            "sweep --grid lr=0.2,0.7,0.4 --objective acc:max --register-model swept",
            cell,
        )
    versions = Registry(home).versions("swept")
    assert len(versions) == 1, versions  # the best trial only, not one per trial
    assert versions[0]["params"]["lr"] == 0.7
    assert Runtime(environ={}).load_model("swept") == {"lr": 0.7}


def test_a_version_exports_into_a_real_mlflow_registry(ip, home, tmp_path):
    from mlflow import MlflowClient

    _train(ip, "--register-model digits -p lr=0.1", SAVES.format(acc=0.8))
    _magic(ip, "models promote digits 1 --alias production")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = _magic(ip, f"models export digits 1 --mlflow {uri}")
    assert "exported digits version 1" in out and "aliases production" in out, out
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version_by_alias("digits", "production")
    assert version.tags["runctl.sha256"] == Registry(home).get("digits", 1)["digest"]
    run = client.get_run(version.run_id)
    assert run.data.params["lr"] == "0.1" and run.data.metrics["acc"] == 0.8
    assert run.data.tags["runctl.run_id"] == Registry(home).get("digits", 1)["run_id"]
    listed = [f.path for f in client.list_artifacts(version.run_id, "model")]
    assert listed == ["model/step-00000000.pkl"], listed
    with pytest.raises(UsageError, match="--mlflow URI goes with export"):
        ip.run_line_magic("runctl", "models export digits 1")
