"""Every test here runs twice: on SQLite, and on PostgreSQL (tests/conftest.py).

A module fixture that makes a workspace asks for ``state_backend``, so that it
is made again for each backend.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module", autouse=True)
def each_state_backend(drop_state_databases: None) -> None:
    """Run this folder's tests once per state backend."""
