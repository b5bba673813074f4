"""The branch cache: every world-model state kept in a durable tree, for rollback, branching and export."""

from hiwm.branch_cache.store import (
    BlobMissingError,
    Branch,
    BranchCacheError,
    BranchStore,
    CorruptStoreError,
    IntegrityReport,
    InvalidInputError,
    StoredSession,
    TreeNode,
    UnknownIdError,
    blob_id,
)

__all__ = [
    "BlobMissingError",
    "Branch",
    "BranchCacheError",
    "BranchStore",
    "CorruptStoreError",
    "IntegrityReport",
    "InvalidInputError",
    "StoredSession",
    "TreeNode",
    "UnknownIdError",
    "blob_id",
]
