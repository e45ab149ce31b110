"""One module per supported open FPGA board: pins to PHYs, top-levels, build and program."""
