"""The registry from the notebook side: versions made from ended runs first
(store/model_sync.py), then listed, shown, registered by hand, promoted, rolled back."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..display.text import table_text
from ..errors import RunctlError
from ..registry import Registry
from ..store.model_sync import sync, sync_run
from .results import LogText


def _when(t: float | None) -> str:
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M") if t else ""


def _metrics(values: dict) -> str:
    return " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in list(values.items())[:3]
    )


def models(
    session: Any, action: str, name: str | None, target: Any, alias: str, mlflow: str | None = None
) -> LogText:
    registry = Registry(session.store.home)
    said = sync(session.store, registry)
    if action == "register":
        run = session.run(str(target))
        session.store.refresh(run.id)
        from ..store.model_sync import register_checkpoint

        said.append(register_checkpoint(session.store, registry, run.id, str(name)))
    elif action == "promote":
        move = registry.promote(str(name), int(target), alias)
        was = f" (was version {move['previous']})" if move["previous"] else ""
        said.append(f"{name} {alias} -> version {target}{was}")
    elif action == "export":
        from .mlflow_export import export

        return LogText(export(registry, str(name), int(target), str(mlflow)) + "\n")
    elif action == "rollback":
        move = registry.rollback(str(name), alias)
        said.append(f"{name} {alias} -> version {move['version']} (back from {move['previous']})")
    if action in ("promote", "rollback"):
        said.append(_publish(session, registry, str(name)))
    head = "\n".join(line for line in said if line)
    body = _show(registry, str(name)) if action != "list" else _list(registry)
    return LogText(f"{head}\n{body}" if head else body)


def _publish(session: Any, registry: Registry, name: str) -> str:
    """For load_model on AWS instances (runs/model_publish.py); a failure is one line."""
    from .model_publish import publish, wanted

    if not wanted(session, registry, name):
        return ""
    try:
        return publish(session, registry, name)
    except Exception as exc:  # noqa: BLE001 - the promote is done here; say what is not
        return f"{name}: not published for runs on AWS ({exc}); promote again once it can be"


def _list(registry: Registry) -> str:
    rows = []
    for name in registry.names():
        versions = registry.versions(name)
        if not versions:
            continue
        aliases = registry.aliases(name)
        latest = versions[-1]
        rows.append(
            [
                name,
                str(len(versions)),
                ", ".join(f"{a}={v}" for a, v in sorted(aliases.items())),
                str(latest["version"]),
                _metrics(latest.get("metrics") or {}),
                str(latest.get("run_id") or ""),
            ]
        )
    if not rows:
        return (
            "no models yet: `runctl.register_model(model, NAME)` in a run, "
            "--register-model NAME on train, or `runctl models register NAME RUN`\n"
        )
    header = ["name", "versions", "aliases", "latest", "metrics", "run"]
    return table_text(header, rows) + "\n"


def _show(registry: Registry, name: str) -> str:
    versions = registry.versions(name)
    if not versions:
        raise RunctlError(f"no model {name!r}: `runctl models` lists them")
    by_version: dict[int, list[str]] = {}
    for a, v in registry.aliases(name).items():
        by_version.setdefault(v, []).append(a)
    rows = [
        [
            str(v["version"]),
            ", ".join(sorted(by_version.get(v["version"], []))),
            str(v.get("run_id") or ""),
            str(v.get("attempt") or ""),
            _when(v.get("created")),
            _metrics(v.get("metrics") or {}),
            f"{v['bytes']:,} B",
            v["digest"][:12],
            str(v.get("source") or ""),
        ]
        for v in versions
    ]
    header = ["version", "aliases", "run", "attempt", "registered", "metrics", "size", "sha256"]
    return f"{name}\n" + table_text([*header, "how"], rows) + "\n"


__all__ = ["models", "sync_run"]
