"""Comparing with a release: paired statistics (``stats``) and ``eval --against`` (``against``)."""
