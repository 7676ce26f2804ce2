"""What a run or a sweep optimises (`--objective val_acc:max`) and when a run stops
early (`--early-stop val_loss:min,patience=10`, or the original runctl's `patience=10`)."""

from __future__ import annotations

from typing import Any

from .values import BadParam

__all__ = ["parse_early_stop", "parse_objective"]


def parse_objective(text: str, option: str = "--objective") -> dict[str, str]:
    """`"val_acc:max"` -> `{"metric": "val_acc", "mode": "max"}`."""
    metric, sep, mode = text.partition(":")
    metric, mode = metric.strip(), mode.strip().lower()
    if not metric or not sep or mode not in ("max", "min"):
        raise BadParam(
            f"bad {option} {text!r}: expected METRIC:max or METRIC:min, e.g. {option} val_acc:max"
        )
    return {"metric": metric, "mode": mode}


_EARLY_KEYS = {"patience": int, "min_delta": float, "warmup": int}


def parse_early_stop(text: str, option: str = "--early-stop") -> dict[str, Any]:
    """`"val_loss:min,patience=10,min_delta=0.001"` or the original `"patience=10"` ->
    `{"metric": "val_loss"|None, "mode": "min"|None, "patience": 10, "min_delta": 0.0, "warmup": 0}`.

    With no METRIC:MODE the run's `--objective` metric is used, else the first `--metrics` one.
    """
    out: dict[str, Any] = {
        "metric": None,
        "mode": None,
        "patience": 10,
        "min_delta": 0.0,
        "warmup": 0,
    }
    example = f"e.g. {option} val_loss:min,patience=10"
    for i, part in enumerate(p.strip() for p in text.split(",")):
        if not part:
            continue
        if "=" not in part:
            if i != 0:
                raise BadParam(f"bad {option} {text!r}: METRIC:MODE must come first, {example}")
            obj = parse_objective(part, option)
            out["metric"], out["mode"] = obj["metric"], obj["mode"]
            continue
        key, _, value = part.partition("=")
        key = key.strip()
        if key not in _EARLY_KEYS:
            raise BadParam(
                f"bad {option} {text!r}: unknown setting {key!r}; known: "
                f"{', '.join(_EARLY_KEYS)}, {example}"
            )
        try:
            num = _EARLY_KEYS[key](value.strip())
        except ValueError:
            raise BadParam(f"bad {option} {key}={value}: expected a number, {example}") from None
        if num < 0 or (key == "patience" and num < 1):
            raise BadParam(f"bad {option} {key}={value}: must be positive, {example}")
        out[key] = num
    return out
