"""Small helpers shared by gateware blocks: argument checks and saturating counters."""

import functools

from amaranth.hdl import Mux, Signal

from .checks import check_int

__all__ = ["check_int", "count_saturating", "refuses_quietly", "accepted_setting"]


def refuses_quietly(init):
    """Decorate a component's ``__init__`` so that an object refused by its argument checks
    does not also warn "created but never used" when it is collected: the error is the
    message."""
    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        try:
            init(self, *args, **kwargs)
        except (TypeError, ValueError):
            self._MustUse__silence = True       # amaranth's UnusedElaboratable switch
            raise
    return wrapper


def count_saturating(m, counter, condition):
    """Add to ``m.d.sync``: ``counter`` counts cycles where ``condition`` holds, and sticks
    at its maximum instead of wrapping (an overflowed counter still reads as "at least")."""
    top = (1 << len(counter)) - 1
    with m.If(condition):
        m.d.sync += counter.eq(Mux(counter == top, counter, counter + 1))


def accepted_setting(m, name, value, ok, init):
    """The value of a setting port in use: ``value`` while ``ok``, else the last value that
    was ``ok`` (``init`` after reset). Refused register values never take effect and never
    wrap; the caller flags ``~ok`` on its ``settings_error``."""
    applied = Signal.like(value, name=f"applied_{name}", init=init)
    with m.If(ok):
        m.d.sync += applied.eq(value)
    return Mux(ok, value, applied)
