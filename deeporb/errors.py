"""One clear line for the errors a user can cause, instead of a traceback."""

from __future__ import annotations

import functools
import sys


class UserError(Exception):
    """Something the user can fix: a bad path, an unknown name, an empty corpus."""


def exit_on_user_error(func):
    """Wrap a Hydra task so a :class:`UserError` prints ``error: ...`` and exits with 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapper
