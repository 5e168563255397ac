"""Phase 2, variables: the checkpoint, its bundle format, and `variables/` written from it without a Session.

Internal: the public API is the `multimode_export` package itself.
"""
