"""The events journal's pure parts: entry names, dates, streams."""
import pytest

from dss.events.journal import Entry, group_streams, marker_key, parse_date

U = "0f8b1c1e-2a3b-4c5d-8e9f-0a1b2c3d4e5f"
V = "2020-01-02T030405.000001Z"


def entry(at: str, event_type: str = "CREATE") -> Entry:
    return Entry(at, U, V, event_type)


def test_entry_names_round_trip_and_sort_by_time():
    first, second = entry("2021-05-06T070809.000000Z"), entry("2021-05-06T070809.000001Z", "TOMBSTONE")
    assert first.name == f"2021-05-06T070809.000000Z.{U}.{V}.CREATE"
    assert first.key == "events/journal/" + first.name
    assert first.event_id == f"{U}.{V}" and first.hour == "2021-05-06T07"
    assert Entry.from_name(second.name) == second
    assert sorted([second.key, first.key]) == [first.key, second.key]


@pytest.mark.parametrize("name", ["", "events/x", f"2021-05-06T070809.000000Z.{U}.{V}.UPDATE",
                                  f"2021-05-06T070809Z.{U}.{V}.CREATE", f"2021-05-06T070809.000000Z.{U}.{V}"])
def test_foreign_names_are_not_entries(name):
    assert Entry.from_name(name) is None


def test_marker_key():
    assert marker_key(U, V, "CREATE") == f"events/by-id/{U}.{V}.CREATE"


@pytest.mark.parametrize("value, expected", [
    ("2021-05-06T070809.123456Z", "2021-05-06T070809.123456Z"),
    ("2021-05-06", "2021-05-06T000000.000000Z"),
    ("2021-05-06T07:08:09Z", "2021-05-06T070809.000000Z"),
    ("2021-05-06T09:08:09+02:00", "2021-05-06T070809.000000Z"),
    ("2021-05-06T070809Z", "2021-05-06T070809.000000Z"),
])
def test_dates(value, expected):
    assert parse_date(value) == expected


@pytest.mark.parametrize("value", ["", "yesterday", "2021-13-01", "0001-01-01"])
def test_bad_dates(value):
    with pytest.raises(ValueError):
        parse_date(value)


def test_streams_split_at_hours_and_at_the_size_cap():
    found = [entry(f"2021-05-06T07{m:02d}00.000000Z") for m in range(5)] + \
            [entry(f"2021-05-06T08{m:02d}00.000000Z") for m in range(2)]
    streams, more = group_streams(iter(found), per_page=10, max_events=3)
    assert [len(s) for s in streams] == [3, 2, 2] and not more
    assert [e for s in streams for e in s] == found


def test_streams_page_and_say_whether_more_follow():
    found = [entry(f"2021-05-06T{h:02d}0000.000000Z") for h in range(4)]
    streams, more = group_streams(iter(found), per_page=2)
    assert [s[0] for s in streams] == found[:2] and more
    streams, more = group_streams(iter(found), per_page=4)
    assert len(streams) == 4 and not more
    assert group_streams(iter([]), per_page=1) == ([], False)
