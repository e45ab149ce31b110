"""Simulation of timebin: bit-exact numpy reference models of every gateware block,
Amaranth-simulation helpers, cocotb runners and testbenches."""
