"""Argument checks shared by the gateware, its models and the host: plain Python, no Amaranth
(the host imports them through :mod:`timebin.gateware.formulas` and the register map)."""

__all__ = ["check_int"]


def check_int(what, value, *, minimum=None, maximum=None):
    """Return ``value`` if it is an int within bounds, else raise naming ``what`` and ``value``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an integer, not {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{what} must be at least {minimum}, not {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{what} must be at most {maximum}, not {value!r}")
    return value
