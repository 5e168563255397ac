"""Phase 1, graphs: one tagged MetaGraphDef per mode, and which mode carries the variables.

Internal: the public API is the `multimode_export` package itself.
"""
