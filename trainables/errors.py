"""The one error type for bad user input.

Raised with a message that names the offending value and what was expected. It subclasses
``ValueError`` so API users can catch it as one; the CLI turns it into a single line on stderr and
exit code 2, without a traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from a user (a flag, a file, a data set): message names the value and the choices."""
