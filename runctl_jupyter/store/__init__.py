"""The store: run folders (folders.py) and their SQLite index (index.py), the one
source of truth every reader goes through."""

from .index import Store

__all__ = ["Store"]
