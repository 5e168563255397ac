"""Phase 4, publishing: staging, versions, one protocol per filesystem, GC.

Also the export layouts (shared, per-mode), which publishing produces and
`inspect`, `verify` and `MultiModeExporter` read back. Internal: the public
API is the `multimode_export` package itself.
"""
