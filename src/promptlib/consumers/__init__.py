"""Consumers: a downstream project's manifest, its lock, and the fail-closed loader.

``manifest`` holds the manifest and lock formats, ``lock_manifest``, ``check_manifest`` and
``pinned_library`` (what ``promptlib.load(manifest=...)`` returns).
"""
