"""Bit- and cycle-exact reference models of the link gateware (:mod:`timebin.gateware.link`)."""
