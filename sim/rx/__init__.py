"""Bit-exact reference models of Bob's detector-timing gateware, and a detector model."""
