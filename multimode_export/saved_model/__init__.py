"""Phase 3, SavedModel files: the on-disk format, and writing a SavedModel.

Internal: the public API is the `multimode_export` package itself.
"""
