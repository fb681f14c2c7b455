"""The revocation stores' interface (`base`) and the two shared backends
(`database`, `redis`).

The rest of the app reaches them through `blocklist.py`, their face at the top
level: it re-exports the interface and holds the in-memory revocation store and
the factory. Nothing here imports `blocklist`.
"""
