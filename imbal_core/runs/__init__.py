"""The run store: SQLite (WAL) for metadata and metrics, one folder per run for the files."""
from .store import RunStore, STATUSES

__all__ = ["RunStore", "STATUSES"]
