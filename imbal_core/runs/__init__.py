"""The run store: SQLite (WAL) for metadata and metrics, one folder per run for the files; and the run archive,
slim copies of finished runs in plain files for version control."""

from .archive import RunArchive
from .store import HEARTBEAT_SECONDS, INTERRUPTED, LISTED_STATUSES, MODEL_FILE, STATUSES, RunStore

__all__ = ["HEARTBEAT_SECONDS", "INTERRUPTED", "LISTED_STATUSES", "MODEL_FILE", "RunArchive", "RunStore", "STATUSES"]
