"""Bridges from promptlib's ledger and library to other tools.

A module imports its tool's SDK only when it is called, so ``import
promptlib.integrations`` costs nothing, and a missing SDK is a ``MissingDependencyError``
naming the extra to install:

    mlflow   runs as MLflow experiment runs, releases in the MLflow Prompt Registry
             (``promptlib[mlflow]``); reads what promptlib recorded, evaluates nothing
    ray      ``eval --executor ray``: the shards of an evaluation as tasks on a Ray
             cluster, merged into one ledger on the driver (``promptlib[ray]``)
"""

from __future__ import annotations

__all__: list[str] = []
