import pytest

from .helpers import FIXED_NOW


@pytest.fixture
def fixed_now(monkeypatch):
    """The time tool's clock, fixed (the test controls time)."""
    monkeypatch.setattr("tools.builtins.now", lambda: FIXED_NOW)
    return FIXED_NOW
