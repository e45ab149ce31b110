"""One module per supported open FPGA board: pins to PHYs, top-levels, build and program.

:data:`BOARDS` names the board modules; :func:`board_spec` imports one and returns its
:class:`~timebin.boards.common.BoardSpec`. The flow shared by all boards is in
:mod:`~timebin.boards.common` (top-levels), :mod:`~timebin.boards.clocking` (PLLs),
:mod:`~timebin.boards.pins` (pin PHYs) and :mod:`~timebin.boards.build` (the YoWASP build
and its report).
"""

import importlib

__all__ = ["BOARDS", "ROLES", "board_spec"]

#: ``--board`` name to the module that describes it.
BOARDS = {
    "ulx3s": "ulx3s",
    "ecpix5": "ecpix5",
    "colorlight-5a75b": "colorlight_5a75b",
    "icebreaker": "icebreaker",
}

#: The top-levels every board builds.
ROLES = ("alice", "bob", "loopback")


def board_spec(name):
    """The :class:`~timebin.boards.common.BoardSpec` of board ``name``; ``ValueError`` naming
    the known boards for an unknown one."""
    if name not in BOARDS:
        raise ValueError(f"Unknown board {name!r}; known boards: {', '.join(BOARDS)}")
    return importlib.import_module(f"{__name__}.{BOARDS[name]}").SPEC
