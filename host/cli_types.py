"""Argument types of the ``timebin`` command line: numbers in a range, refused with the
value named (argparse turns the message into a usage error)."""

import argparse
import math

__all__ = ["ranged", "positive_int", "non_negative_int", "positive_float",
           "non_negative_float", "port"]


def ranged(what, *, integer, minimum=None, maximum=None, strict_minimum=False, base=10):
    """An argparse type for a number ``what`` (a phrase such as "a positive integer"):
    ``integer`` or float (finite), within ``[minimum, maximum]`` (``minimum`` excluded when
    ``strict_minimum``); integers are read in ``base`` (0: with a 0x/0o/0b prefix)."""
    def parse(text):
        try:
            value = int(text, base) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}") from None
        bad = (not integer and not math.isfinite(value)) or (
            minimum is not None and (value <= minimum if strict_minimum else value < minimum)
        ) or (maximum is not None and value > maximum)
        if bad:
            raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}")
        return value
    return parse


positive_int = ranged("a positive integer", integer=True, minimum=1)
non_negative_int = ranged("a non-negative integer", integer=True, minimum=0, base=0)
positive_float = ranged("a positive number", integer=False, minimum=0, strict_minimum=True)
non_negative_float = ranged("a non-negative number", integer=False, minimum=0)
port = ranged("a port number 0..65535", integer=True, minimum=0, maximum=65535)
