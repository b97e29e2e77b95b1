"""The one catalogue of errors a person can act on: bad params, bad data, a refused registry move.

Every such error derives from `UserError`: the CLI prints its message (no traceback) and exits
non-zero, and the flow never retries it (retrying cannot fix an input).
"""


class UserError(Exception):
    """An error in what a person gave mmops; the message names what to change."""
