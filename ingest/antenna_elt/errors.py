"""Errors a user can act on: the CLI prints them as one line, without a traceback."""


class UserError(Exception):
    """Bad configuration, bad arguments or an unreachable service: say what to fix."""
