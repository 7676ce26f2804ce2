"""Fixtures of the fault-injection suite (helpers live in fault_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fault_helpers import ImdsServer


@pytest.fixture
def imds() -> Iterator[ImdsServer]:
    server = ImdsServer()
    yield server
    server.close()
