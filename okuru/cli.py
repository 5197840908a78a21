"""The ``okuru`` command: every management command (``okuru import``, ``okuru export``,
``okuru fields add``, ``okuru run`` ...)."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "okuru.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["okuru", *sys.argv[1:]])


if __name__ == "__main__":
    main()
