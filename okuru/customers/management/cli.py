"""Small pieces shared by the customer management commands (``okuru import`` and friends)."""

from __future__ import annotations

import time
from typing import TextIO

from django.core.management.base import CommandError
from django.utils.translation import gettext as _

from okuru.accounts.models import Operator
from okuru.customers.models import View


def get_operator(username: str | None) -> Operator | None:
    """The operator that ``--operator NAME`` names for the operation log (None: the CLI)."""
    if not username:
        return None
    operator = Operator.objects.filter(username=username).first()
    if operator is None:
        raise CommandError(_("No such operator: %(name)s") % {"name": username})
    return operator


def get_view(name: str | None) -> View | None:
    if not name:
        return None
    view = View.objects.filter(name=name).first()
    if view is None:
        raise CommandError(_("No such database view: %(name)s") % {"name": name})
    return view


# Seconds between two progress lines.
PROGRESS_INTERVAL = 1.0


class ProgressLine:
    """Progress on stderr at most once an interval, so a long run shows it is alive."""

    def __init__(self, out: TextIO, text: str, interval: float | None = None):
        self.out = out
        self.text = text
        self.interval = PROGRESS_INTERVAL if interval is None else interval
        self.last = time.monotonic()
        self.done = 0

    def __call__(self, done: int, force: bool = False) -> None:
        self.done = done
        now = time.monotonic()
        if force or now - self.last >= self.interval:
            self.last = now
            self.out.write(self.text % {"count": f"{done:,}"})
