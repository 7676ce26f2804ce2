"""store_team_list: the store benchmark's team case (store_bench.run_team), a module of
its own so that it runs without the MLflow peer the local cases compare against."""

from __future__ import annotations

from .store_bench import TEAM_ABOUT
from .store_bench import run_team as run

ABOUT = {"store_team_list": TEAM_ABOUT}
__all__ = ["ABOUT", "run"]
