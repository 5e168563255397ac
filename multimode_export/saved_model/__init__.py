"""Phase 3, SavedModel files: the on-disk format, writing a SavedModel, reading one back, export layouts.

Internal: the public API is the `multimode_export` package itself.
"""
