"""One error type for everything the user can fix (bad file, bad recipe, unknown name).

The CLI prints it as a single line on stderr and exits with code 2; anything else is a bug.
"""


class FinpeftError(Exception):
    """A problem with the user's input, reported without a traceback."""
