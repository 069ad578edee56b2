"""The run store: SQLite (WAL) for metadata and metrics, one folder per run for the files."""

from .store import HEARTBEAT_SECONDS, INTERRUPTED, LISTED_STATUSES, MODEL_FILE, STATUSES, RunStore

__all__ = ["HEARTBEAT_SECONDS", "INTERRUPTED", "LISTED_STATUSES", "MODEL_FILE", "RunStore", "STATUSES"]
