"""Domain errors raised by the engine. The CLI and the app turn them into messages at the edge."""
from __future__ import annotations


class KBError(Exception):
    """Base class for every error the knowledge base reports to a user."""


class ArticleError(KBError):
    """An article cannot be read: names the file and, where known, the line."""

    def __init__(self, path: str, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {message}")


class QueryError(KBError):
    """A question the engine refuses to search (empty, whitespace only)."""


class ModelError(KBError):
    """The embedding model cannot be found or loaded."""


class IndexError_(KBError):
    """The index on disk is missing, corrupted, truncated or does not match the configuration."""


class IndexMissing(IndexError_):
    """No index has been built in the data directory yet."""


class StoreError(KBError):
    """The index's database cannot be reached, or its schema is not one this program can use. Not an
    IndexError_: the engine must not answer it by rebuilding."""


class DevSetError(KBError):
    """An evaluation file cannot be read: names the file and the line."""
