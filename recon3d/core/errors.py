"""Errors a user can act on.

A :class:`UserError` carries one line that says what went wrong, where, and what to
do; the CLI prints it and exits non-zero without a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or environment, explained in one line.

    Args:
        message: what went wrong, where, and what to do about it.
        exit_code: the process exit status the CLI uses (2 = bad input).
    """

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code
