"""``python -m deeporb.pretrained export RUN NAME``: see :mod:`deeporb.pretrained.export`."""

from deeporb.errors import exit_on_user_error
from deeporb.pretrained.export import main

if __name__ == "__main__":
    exit_on_user_error(main)()
