"""The run store: SQLite (WAL) for metadata and metrics, one folder per run for the files."""
from .store import MODEL_FILE, STATUSES, RunStore

__all__ = ["MODEL_FILE", "RunStore", "STATUSES"]
