"""The one error the PKI tools raise for a problem the operator can fix.

Its message is one line of plain words that says what is wrong and what to
do; `hatoba cert` prints it as it is.
"""

from __future__ import annotations


class PkiError(Exception):
    """A key, request or certificate cannot be used as asked; the message says why and what to do."""
