"""The filter builder and the field picker: what their scripts need from the server, shared by
the customer screens and the mailing screens that choose recipients."""

from __future__ import annotations

import json
from typing import Any

from django.utils.text import capfirst
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from okuru.customers.fields import FieldSpec
from okuru.customers.models import Topic

# Filter trees travel in the query string; refuse absurd sizes before parsing.
MAX_FILTER_CHARS = 100_000


def operator_words() -> dict[str, str]:
    """The comparison operators in words: the filter builder shows them, and the pages that
    describe a mail's targeting use the same words."""
    return {
        "has_value": _("has a value"),
        "no_value": _("has no value"),
        "eq": _("equals"),
        "ne": _("does not equal"),
        "contains": _("contains"),
        "starts_with": _("starts with"),
        "lt": _("less than"),
        "gt": _("greater than"),
        "lt_date": _("before"),
        "gt_date": _("after"),
        "between": _("between"),
        "in": _("is one of"),
        "in_multi": _("includes any of"),
        "ne_multi": _("includes none of"),
    }


def _builder(specs: dict[str, FieldSpec]) -> dict[str, Any]:
    """What the filter builder script needs: the fields and its translated words."""
    topics = dict(Topic.objects.values_list("key", "name"))
    return {
        "fields": [
            {
                "key": s.key,
                "label": capfirst(str(s.label)),
                "type": s.type,
                "choices": list(s.choices),
                "choiceLabels": topics if s.key == "unsubscribed" else {},
            }
            for s in specs.values()
        ],
        "ops": operator_words(),
        "words": {
            "all": _("All of these conditions (AND)"),
            "any": _("Any of these conditions (OR)"),
            # A context keeps these apart from Django's own "and"/"or" (list joining).
            "and": pgettext("filter conditions", "and"),
            "or": pgettext("filter conditions", "or"),
            "addCondition": _("+ Condition"),
            "addGroup": _("+ Group"),
            "remove": _("Remove"),
            "removeGroup": _("Remove this group"),
            "empty": _("No conditions: every customer matches."),
            "yes": _("Yes"),
            "no": _("No"),
            "onePerLine": _("One value per line"),
            "unknownField": _("Unknown field"),
            "otherCondition": _("Other condition"),
            "counting": _("Counting…"),
            "field": _("Field"),
            "operator": pgettext("filter", "Comparison"),
            "value": _("Value"),
        },
    }


def builder_context(specs: dict[str, FieldSpec], tree: dict | str | None) -> dict[str, Any]:
    if not isinstance(tree, str):
        tree = json.dumps(tree or {"match": "all", "conditions": []}, ensure_ascii=False)
    return {"builder": _builder(specs), "filter_json": tree}


def picker_fields(specs: dict[str, FieldSpec], chosen: list[str]) -> dict[str, Any]:
    """Available and chosen fields for the field picker, chosen ones in their order."""
    return {
        "chosen_fields": [(k, capfirst(specs[k].label)) for k in chosen if k in specs],
        "available_fields": [(k, capfirst(s.label)) for k, s in specs.items() if k not in chosen],
    }
