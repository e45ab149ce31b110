"""Fixtures shared by the test suites."""

import gc
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable


def _assert_refused(error, match, make):
    """``make()`` raises ``error`` matching ``match``; a half-built component it leaves is
    not reported unused."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(error, match=match):
            make()
        gc.collect()


@pytest.fixture
def assert_refused():
    """:func:`_assert_refused`: check that building a component with bad parameters raises."""
    return _assert_refused
