"""The gateware end of the board-host link: a UART (``uart``) and the framer and deframer of
the frame format of :mod:`timebin.gateware.frames` (``framer``).

Pipeline, one direction each::

    Framer --> UARTTx --> tx        rx --> UARTRx --> Deframer
"""
