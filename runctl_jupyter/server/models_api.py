"""GET /runctl/api/models: the registry for the sidebar's Models tab (versions made
from ended runs first, as `runctl models` does)."""

from __future__ import annotations

from typing import Any

from ..registry import Registry
from ..store.model_sync import sync


def _number(value: Any) -> Any:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def models_payload(store: Any) -> dict:
    registry = Registry(store.home)
    sync(store, registry)
    models = []
    for name in registry.names():
        aliases = registry.aliases(name)
        by_version: dict[int, list[str]] = {}
        for alias, version in aliases.items():
            by_version.setdefault(version, []).append(alias)
        versions = [
            {
                "version": v["version"],
                "run_id": v.get("run_id"),
                "created": v.get("created"),
                "bytes": v.get("bytes"),
                "sha256": str(v.get("digest", ""))[:12],
                "metrics": {k: _number(x) for k, x in (v.get("metrics") or {}).items()},
                "aliases": sorted(by_version.get(v["version"], [])),
                "source": v.get("source"),
            }
            for v in registry.versions(name)
        ]
        models.append({"name": name, "aliases": aliases, "versions": versions[::-1]})
    return {"models": models}
