"""A header's names made unique as DuckDB makes them: a repeat, in any case, gets `_1`, `_2`."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ingest.compute.csvread import unique_names


def _one_by_one(names: list[str]) -> list[str]:
    """The rule as it reads: the first of `name`, `name_1`, `name_2`, ... not yet taken."""
    taken: set[str] = set()
    unique = []
    for index, name in enumerate(names):
        base = name.strip() or f"column{index}"
        candidate, count = base, 0
        while candidate.lower() in taken:
            count += 1
            candidate = f"{base}_{count}"
        taken.add(candidate.lower())
        unique.append(candidate)
    return unique


_NAMES = st.lists(st.sampled_from(["a", "A", "a_1", "A_2", "a_1_1", "", " a", "column1", "b"]))


@given(_NAMES)
def test_unique_names_are_the_first_free_of_each_name_and_its_suffixes(names: list[str]) -> None:
    assert unique_names(names) == _one_by_one(names)


def test_a_header_of_one_name_many_times_is_numbered_in_order() -> None:
    names = ["v"] * 50_000 + ["V", "v_7"]
    assert unique_names(names) == ["v", *(f"v_{i}" for i in range(1, 50_000)), "V_50000", "v_7_1"]
