"""The filter engine: every listed operator (has a value,
has no value, equals, not equals, contains, starts with, before / after / between for numbers,
dates and date-times, in list) on every field type, in AND/OR groups; and the delivery-eligible
rule of database views."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from okuru.customers import design, filters
from okuru.customers.models import Customer, View

pytestmark = pytest.mark.django_db
TOKYO = ZoneInfo("Asia/Tokyo")


@pytest.fixture
def people():
    design.add_field("name", "Name", "text")
    design.add_field("age", "Age", "number")
    design.add_field("born", "Born", "date")
    design.add_field("seen", "Last seen", "datetime")
    design.add_field("plan", "Plan", "select", choices=["free", "pro"])
    design.add_field("tags", "Tags", "multiselect", choices=["a", "b", "c"])
    rows = {
        "a": dict(
            email="a@example.com",
            data={
                "name": "Aoki",
                "age": 30,
                "born": "1990-01-02",
                "seen": "2024-05-01T01:00:00Z",  # 10:00 in Tokyo
                "plan": "free",
                "tags": ["a"],
            },
            created=datetime(2024, 1, 10, 9, 0, tzinfo=TOKYO),
        ),
        "b": dict(
            email="b@example.com",
            refused=True,
            email_error_count=3,
            data={
                "name": "Baba",
                "age": 45.5,
                "born": "1980-03-04",
                "seen": "2024-05-31T14:59:59Z",  # 23:59:59 on May 31st in Tokyo
                "plan": "pro",
                "tags": ["b", "c"],
            },
            created=datetime(2024, 2, 1, 0, 0, tzinfo=TOKYO),
        ),
        "c": dict(
            mobile_email="c@example.jp",
            email_error_count=99,
            data={"seen": "2024-06-01T15:00:00Z"},  # midnight starting June 2nd in Tokyo
            created=datetime(2024, 3, 15, 12, 0, tzinfo=TOKYO),
        ),
    }
    for row in rows.values():
        created = row.pop("created")
        c = Customer.objects.create(**row)
        Customer.objects.filter(pk=c.pk).update(created_at=created)


def matching(*conditions: dict, match: str = "all") -> set[str]:
    tree = {"match": match, "conditions": list(conditions)}
    found = {(c.email or c.mobile_email)[0] for c in filters.filtered(tree)}
    assert filters.count(tree) == len(found)
    return found


def cond(field: str, op: str, value=None, value2=None) -> dict:
    c = {"field": field, "op": op}
    if value is not None:
        c["value"] = value
    if value2 is not None:
        c["value2"] = value2
    return c


CASES = [
    # text
    (cond("name", "has_value"), {"a", "b"}),
    (cond("name", "no_value"), {"c"}),
    (cond("name", "eq", "Aoki"), {"a"}),
    (cond("name", "ne", "Aoki"), {"b", "c"}),
    (cond("name", "contains", "ba"), {"b"}),
    (cond("name", "starts_with", "Ao"), {"a"}),
    (cond("name", "in", ["Aoki", "Baba", "Nobody"]), {"a", "b"}),
    # e-mail (a standard column: no address is the empty text)
    (cond("email", "has_value"), {"a", "b"}),
    (cond("email", "no_value"), {"c"}),
    (cond("email", "starts_with", "a@"), {"a"}),
    (cond("email", "contains", "example.com"), {"a", "b"}),
    (cond("mobile_email", "eq", "c@example.jp"), {"c"}),
    # numbers
    (cond("age", "has_value"), {"a", "b"}),
    (cond("age", "no_value"), {"c"}),
    (cond("age", "eq", "30"), {"a"}),
    (cond("age", "ne", "30"), {"b", "c"}),
    (cond("age", "lt", "45.5"), {"a"}),
    (cond("age", "gt", "30"), {"b"}),
    (cond("age", "between", "30", "45.5"), {"a", "b"}),
    (cond("age", "in", ["30", "45.5"]), {"a", "b"}),
    (cond("email_error_count", "lt", "5"), {"a", "b"}),
    (cond("email_error_count", "gt", "5"), {"c"}),
    (cond("email_error_count", "between", "1", "5"), {"b"}),
    (cond("email_error_count", "in", ["0", "99"]), {"a", "c"}),
    # dates
    (cond("born", "eq", "1990-01-02"), {"a"}),
    (cond("born", "ne", "1990-01-02"), {"b", "c"}),
    (cond("born", "lt", "1985-01-01"), {"b"}),
    (cond("born", "gt", "1985/1/1"), {"a"}),
    (cond("born", "between", "1980-03-04", "1990-01-01"), {"b"}),
    (cond("born", "in", ["1990-01-02", "2000-01-01"]), {"a"}),
    (cond("born", "no_value"), {"c"}),
    # date-times: a moment (local time), inclusive between
    (cond("seen", "lt", "2024-05-31 23:59:59"), {"a"}),
    (cond("seen", "gt", "2024-05-31 23:59:59"), {"c"}),
    (cond("seen", "between", "2024-05-01 10:00:00", "2024-05-31 23:59:59"), {"a", "b"}),
    (cond("seen", "eq", "2024-05-01T10:00"), {"a"}),
    (cond("seen", "in", ["2024-05-01 10:00:00", "2024-06-02 00:00:00"]), {"a", "c"}),
    # date-times given a date alone: that whole local day
    (cond("seen", "eq", "2024-05-31"), {"b"}),
    (cond("seen", "ne", "2024-05-31"), {"a", "c"}),
    (cond("seen", "lt", "2024-05-31"), {"a"}),
    (cond("seen", "gt", "2024-05-31"), {"c"}),
    (cond("seen", "between", "2024-05-01", "2024-05-31"), {"a", "b"}),
    (cond("seen", "between", "2024-05-01", "2024-06-01 23:59:59"), {"a", "b"}),
    (cond("seen", "in", ["2024-05-01", "2024-06-02"]), {"a", "c"}),
    # the standard created / updated date-times, both ways
    (cond("created_at", "lt", "2024-02-01"), {"a"}),
    (cond("created_at", "gt", "2024-02-01"), {"c"}),
    (cond("created_at", "eq", "2024-02-01"), {"b"}),
    (cond("created_at", "between", "2024-01-10", "2024-02-01"), {"a", "b"}),
    (cond("created_at", "gt", "2024-02-01 00:00:00"), {"c"}),
    (cond("created_at", "between", "2024-01-10 09:00:00", "2024-02-01 00:00:00"), {"a", "b"}),
    # select, multi-select, flags
    (cond("plan", "eq", "free"), {"a"}),
    (cond("plan", "ne", "free"), {"b", "c"}),
    (cond("plan", "in", ["free", "pro"]), {"a", "b"}),
    (cond("plan", "no_value"), {"c"}),
    (cond("tags", "in", ["c"]), {"b"}),
    (cond("tags", "ne", ["a"]), {"b", "c"}),
    (cond("tags", "has_value"), {"a", "b"}),
    (cond("tags", "no_value"), {"c"}),
    (cond("refused", "eq", "1"), {"b"}),
    (cond("refused", "eq", "0"), {"a", "c"}),
    (cond("refused", "ne", "1"), {"a", "c"}),
]


@pytest.mark.parametrize("condition, expected", CASES, ids=[str(c) for c, _ in CASES])
def test_each_operator_on_each_type(people, condition, expected):
    assert matching(condition) == expected


def test_and_or_groups_nest(people):
    older_refused = {
        "match": "all",
        "conditions": [cond("age", "gt", "40"), cond("refused", "eq", "1")],
    }
    assert matching(older_refused, cond("plan", "eq", "free"), match="any") == {"a", "b"}
    assert matching(older_refused, cond("plan", "eq", "free")) == set()
    either = {"match": "any", "conditions": [cond("name", "eq", "Aoki"), cond("name", "no_value")]}
    assert matching(either, cond("email", "has_value")) == {"a"}


@pytest.mark.parametrize(
    "condition, message",
    [
        (cond("seen", "lt", "2024-02-30"), "Last seen: no such date: 2024-02-30"),
        (
            cond("seen", "between", "2024-05-01", "soon"),
            "Last seen: not a date and time (YYYY-MM-DD HH:MM:SS): soon",
        ),
        (cond("seen", "in", []), "in needs a non-empty list of values."),
        (cond("name", "between", "a", "b"), "between works on numbers and dates only."),
        (cond("age", "contains", "3"), "contains works on text fields only."),
        (cond("tags", "starts_with", "a"), "starts_with does not work on multi-select fields."),
        (cond("born", "gt", "yesterday"), "Born: not a date (YYYY-MM-DD): yesterday"),
        (cond("age", "between", "1", ""), "Age: a value is needed."),
    ],
)
def test_it_rejects_bad_conditions_with_a_clear_message(people, condition, message):
    with pytest.raises(filters.FilterError) as e:
        matching(condition)
    assert str(e.value) == message


# --- database views: delivery-eligible ---------------------------------------------------------


@pytest.mark.parametrize(
    "fields, eligible",
    [
        (["customer_id", "email", "email_error_count", "refused", "unsubscribed"], True),
        (["mobile_email", "mobile_error_count", "refused", "unsubscribed"], True),
        (["unsubscribed", "refused", "email_error_count", "email"], True),  # any order
        (["email", "mobile_error_count", "refused", "unsubscribed"], False),  # wrong count
        (["email", "email_error_count", "unsubscribed"], False),  # no refusal flag
        (["email", "email_error_count", "refused"], False),  # no unsubscribe flags
        (["customer_id", "email_error_count", "refused", "unsubscribed"], False),  # no address
        ([], False),
    ],
)
def test_a_view_is_delivery_eligible_with_an_address_its_count_and_both_flags(fields, eligible):
    assert View(name="v", fields=fields).is_delivery_eligible is eligible
