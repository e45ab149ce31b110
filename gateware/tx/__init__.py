"""Alice's transmitter gateware."""
