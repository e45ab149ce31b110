"""Bit-exact numpy reference models of Alice's transmitter gateware."""
