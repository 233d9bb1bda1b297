"""Metadata filters: JSON and CLI shorthand mean the same thing; bad specs are refused clearly."""

from __future__ import annotations

import pytest
from meshdex.index.errors import InvalidArgument
from meshdex.index.filters import parse_filter

DOC = {"lang": "en", "year": 2021, "tags": ["python", "howto"], "kind": "faq", "title": "Why?"}

CASES = [
    ("lang=en", True),
    ("lang=de", False),
    ("lang!=de", True),
    ("year>=2021", True),
    ("year>2021", False),
    ("year<2030 and year>2000", True),
    ("year<=2020", False),
    ("tags~python", True),
    ("tags~rust", False),
    ("title~Why", True),
    ("kind in [faq,howto]", True),
    ("kind in [tutorial]", False),
    ("lang=de or year=2021", True),
    ("lang=de or year=2020 and kind=faq", False),
    ("lang=en and year=2020 or kind=faq", True),
    ("missing=1", False),
    ("missing!=1", True),
    ("lang>3", False),  # incomparable types do not match rather than fail
    ('title="Why?"', True),
    ({"and": [{"field": "lang", "op": "eq", "value": "en"},
              {"or": [{"field": "year", "op": "lt", "value": 2000},
                      {"field": "tags", "op": "contains", "value": "howto"}]}]}, True),
    ('{"field": "kind", "op": "in", "value": ["a", "b"]}', False),
]


@pytest.mark.parametrize(("spec", "expected"), CASES, ids=[str(c[0]) for c in CASES])
def test_filter_matches(spec, expected):
    assert parse_filter(spec).matches(DOC) is expected


@pytest.mark.parametrize(("spec", "expected"), CASES, ids=[str(c[0]) for c in CASES])
def test_json_form_round_trips(spec, expected):
    assert parse_filter(parse_filter(spec).to_json()).matches(DOC) is expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "non-empty"),
        ("lang", "cannot parse"),
        ("lang==", "cannot parse"),
        ("{not json", "not valid JSON"),
        ({"field": "x", "op": "like", "value": 1}, "unknown op"),
        ({"field": "x", "op": "eq"}, "exactly"),
        ({"and": []}, "non-empty list"),
        ({"and": [{"field": "x", "op": "eq", "value": 1}], "or": []}, "cannot be mixed"),
        ({"field": "x", "op": "in", "value": "abc"}, "list"),
        ({"field": "x", "op": "eq", "value": {"a": 1}}, "string, number or boolean"),
    ],
)
def test_bad_specs_are_refused_with_a_clear_message(spec, message):
    with pytest.raises(InvalidArgument, match=message):
        parse_filter(spec)
