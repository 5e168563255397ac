"""Phase 2, variables: the checkpoint, its bundle format, and `variables/`.

`variables/` is written straight from the checkpoint files, without a
Session. Internal: the public API is the `multimode_export` package itself.
"""
