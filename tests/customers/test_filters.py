import pytest

from okuru.customers import filters
from okuru.customers.models import Customer, Field

pytestmark = pytest.mark.django_db


@pytest.fixture
def people():
    Field.objects.create(key="name", label="Name", type="text")
    Field.objects.create(key="age", label="Age", type="number")
    Field.objects.create(key="joined", label="Joined", type="date")
    Field.objects.create(key="tags", label="Tags", type="multiselect", choices=["a", "b", "c"])
    rows = [
        dict(
            email="a@example.com",
            data={"name": "Aoki", "age": 30, "joined": "2024-01-05", "tags": ["a"]},
        ),
        dict(email="b@example.com", data={"name": "Baba", "age": 45, "tags": ["b", "c"]}),
        dict(email="", mobile_email="c@example.jp", refused=True, data={"name": "50%_off"}),
    ]
    return [Customer.objects.create(**r) for r in rows]


def ids(tree):
    return sorted(filters.filtered(tree).values_list("email", "mobile_email"))


def test_it_counts_everything_without_conditions(people):
    assert filters.count(None) == 3


def test_has_value_and_no_value(people):
    tree = {"match": "all", "conditions": [{"field": "email", "op": "has_value"}]}
    assert filters.count(tree) == 2
    tree = {"match": "all", "conditions": [{"field": "age", "op": "no_value"}]}
    assert filters.count(tree) == 1


def test_numbers_compare_as_numbers(people):
    tree = {"match": "all", "conditions": [{"field": "age", "op": "gt", "value": "9"}]}
    assert filters.count(tree) == 2
    tree = {
        "match": "all",
        "conditions": [{"field": "age", "op": "between", "value": "31", "value2": "50"}],
    }
    assert ids(tree) == [("b@example.com", "")]


def test_contains_escapes_like_wildcards(people):
    tree = {"match": "all", "conditions": [{"field": "name", "op": "contains", "value": "%_"}]}
    assert ids(tree) == [("", "c@example.jp")]


def test_or_groups_and_multiselect(people):
    tree = {
        "match": "any",
        "conditions": [
            {"field": "tags", "op": "in", "value": ["c"]},
            {"match": "all", "conditions": [{"field": "refused", "op": "eq", "value": "1"}]},
        ],
    }
    assert ids(tree) == [("", "c@example.jp"), ("b@example.com", "")]


def test_date_before(people):
    tree = {"match": "all", "conditions": [{"field": "joined", "op": "lt", "value": "2024/02/01"}]}
    assert ids(tree) == [("a@example.com", "")]


@pytest.mark.parametrize(
    "tree, message",
    [
        (
            {"match": "all", "conditions": [{"field": "nope", "op": "eq", "value": "1"}]},
            "Unknown field in filter: nope",
        ),
        (
            {"match": "all", "conditions": [{"field": "age", "op": "eq", "value": "old"}]},
            "Age: not a number: old",
        ),
        (
            {"match": "all", "conditions": [{"field": "name", "op": "lt", "value": "x"}]},
            "lt works on numbers and dates only.",
        ),
        (
            {"match": "all", "conditions": [{"field": "tags", "op": "in", "value": ["z"]}]},
            "Tags: not one of the choices: z",
        ),
        ("{not json", "The filter is not valid JSON"),
    ],
)
def test_it_rejects_bad_filters_with_a_clear_message(people, tree, message):
    with pytest.raises(filters.FilterError) as e:
        filters.count(tree)
    assert message in str(e.value)
