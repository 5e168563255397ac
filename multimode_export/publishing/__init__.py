"""Phase 4, publishing: staging, version numbers, the publish protocols per filesystem, garbage collection.

Internal: the public API is the `multimode_export` package itself.
"""
