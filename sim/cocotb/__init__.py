"""cocotb runners and testbenches for the generated Verilog of timebin's top-levels."""
