"""The operation log in words: action codes and details as the log browser shows them."""

from __future__ import annotations

from typing import Any

from django import template

from okuru.accounts import logwords

register = template.Library()


@register.filter
def action_label(action: str) -> str:
    return logwords.action_label(action)


@register.filter
def detail_text(detail: Any) -> str:
    return logwords.detail_text(detail)
