"""`runctl models export NAME VERSION --mlflow URI`: one registry version written into
an MLflow model registry (a run with its params, final metrics, lineage tags and the
artifact under `model/`, then a model version of the same name and its aliases), so a
team that serves from MLflow adopts runctl without keeping two registries by hand.
mlflow is an optional extra (`pip install 'runctl-jupyter[mlflow]'`), imported here only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import RunctlError
from ..registry import Registry, digest_of


def export(registry: Registry, name: str, version: int, uri: str) -> str:
    entry = registry.get(name, version)
    artifact = Path(entry["artifact"])
    if not artifact.exists() or digest_of(artifact)[0] != entry["digest"]:
        raise RunctlError(
            f"model {name!r} version {version}: its artifact is missing or changed since it was "
            "registered; nothing exported"
        )
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise RunctlError(
            "the MLflow export needs mlflow: pip install 'runctl-jupyter[mlflow]'"
        ) from None
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run_id = _log_run(client, entry, artifact)
    try:
        client.create_registered_model(name)
    except Exception as exc:  # noqa: BLE001 - mlflow says "already exists" in several ways
        if "already exists" not in str(exc).lower() and "RESOURCE_ALREADY_EXISTS" not in str(exc):
            raise
    tags = {"runctl.version": str(version), "runctl.sha256": entry["digest"]}
    made = client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id, tags=tags)
    aliases = [a for a, v in registry.aliases(name).items() if v == version]
    for alias in aliases:
        client.set_registered_model_alias(name, alias, made.version)
    also = f", aliases {', '.join(sorted(aliases))}" if aliases else ""
    return (
        f"exported {name} version {version} to {uri} as {name} version {made.version} "
        f"(MLflow run {run_id}{also})"
    )


def _log_run(client: Any, entry: dict, artifact: Path) -> str:
    experiment = f"runctl-{entry.get('experiment') or entry['name']}"
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    tags = {
        "runctl.run_id": str(entry.get("run_id") or ""),
        "runctl.attempt": str(entry.get("attempt") or ""),
        "runctl.code_sha256": str(entry.get("code_digest") or ""),
        "runctl.data_sha256": str(entry.get("data_digest") or ""),
        "runctl.source": str(entry.get("source") or ""),
    }
    run = client.create_run(
        experiment_id, tags=tags, run_name=f"{entry['name']}-v{entry['version']}"
    )
    run_id = run.info.run_id
    for key, value in (entry.get("params") or {}).items():
        client.log_param(run_id, key, str(value)[:6000])  # MLflow's documented value limit
    for key, value in (entry.get("metrics") or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            client.log_metric(run_id, key, float(value))
    if artifact.is_dir():
        client.log_artifacts(run_id, str(artifact), artifact_path="model")
    else:
        client.log_artifact(run_id, str(artifact), artifact_path="model")
    client.set_terminated(run_id)
    return run_id
