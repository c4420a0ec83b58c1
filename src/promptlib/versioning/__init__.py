"""Versioning: snapshots of the library, the semantic diff, the gate and the release.

Modules, lowest first: ``snapshot`` (value types: what a diff compares), ``history``
(release records in the ledger, git refs, ``resolve_against``), ``scores`` (a prompt's
score history across releases, ``promptlib show ID --history``), ``diff`` (the bump
policy), ``gate`` (``promptlib check``) and ``release`` (``promptlib release``). Versions
themselves are parsed by ``promptlib.versions``.
"""
