"""The operation log in words: action codes and details as the log browser shows them; group
names as every screen shows them."""

from __future__ import annotations

from typing import Any

from django import template

from okuru.accounts import logwords
from okuru.accounts.models import group_label

register = template.Library()


@register.filter
def action_label(action: str) -> str:
    return logwords.action_label(action)


@register.filter
def detail_text(detail: Any) -> str:
    return logwords.detail_text(detail)


@register.filter
def group_names(names: str) -> str:
    """A group name, or a comma-separated list of them, with the built-in group translated."""
    return ", ".join(group_label(n) for n in names.split(", ")) if names else names
