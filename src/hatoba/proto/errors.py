"""The two protocol exceptions (as in h11).

RemoteProtocolError: the peer broke the protocol; the session answers with an
error reply and carries on (or closes, when the core says so).
LocalProtocolError: hatoba itself tried something the protocol forbids; a bug.
Any other exception raised by a proto core is a bug as well.
"""


class RemoteProtocolError(Exception):
    """The peer sent something the protocol does not allow."""


class LocalProtocolError(Exception):
    """We tried to do something the protocol does not allow (a bug)."""
