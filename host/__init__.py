"""Host side of timebin: command line, board clients, key distillation.

Nothing under ``timebin.host`` imports Amaranth; gateware is reached only through
``timebin.sim`` (simulated boards) or real hardware.
"""
