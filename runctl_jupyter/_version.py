"""The version, in one place: pyproject.toml reads it (hatch), `runctl --version` shows it."""

__version__ = "0.1.0"
