"""Amaranth gateware of timebin: Alice's transmitter (``tx``), Bob's receiver (``rx``).

This package's top level imports no Amaranth, so that the host side can import the plain
Python definitions shared with the gateware (record layouts, register maps) without it.
"""
