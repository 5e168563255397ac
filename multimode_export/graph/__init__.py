"""Phase 1, graphs: one tagged MetaGraphDef per mode, and the variables carrier.

Internal: the public API is the `multimode_export` package itself.
"""
