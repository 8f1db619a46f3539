"""Protocols: state machines that propose stimuli and estimate from their results.

See `mepkit.protocols.base` for the shape every protocol has.
"""

from mepkit.protocols.base import Protocol, ProtocolError, Step, Stimulus

__all__ = ["Protocol", "ProtocolError", "Step", "Stimulus"]
