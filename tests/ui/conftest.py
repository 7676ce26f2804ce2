"""One JupyterLab for all the UI tests (starting it and seeding its store is the
slow part): labkit.start_lab, shared by the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from labkit import start_lab


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    with start_lab(tmp_path_factory.mktemp("lab")) as served:
        yield served
