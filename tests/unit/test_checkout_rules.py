"""The checkout rules: freshness, wait estimates, tokens, destinations."""
import json

import pytest

from dss.checkout_rules import (Freshness, Pending, RetryToken, destination_error, expected_seconds, job_is_stale,
                                retry_after)
from dss.errors import DSSError

DAY = 24 * 3600


def test_a_copy_is_served_only_while_a_new_url_cannot_outlive_it():
    fresh = Freshness(ttl=7 * DAY, url_ttl=3600)
    now = 100 * DAY
    assert fresh.servable(now - 1, now)
    assert fresh.servable(now - (7 * DAY - 3600) + 1, now)
    assert not fresh.servable(now - (7 * DAY - 3600), now)
    assert not fresh.refresh_due(now - 3 * DAY, now)
    assert fresh.refresh_due(now - (7 * DAY - 3600) / 2, now)
    assert fresh.refresh_before(now) == now - (7 * DAY - 3600) / 2


def test_expected_time_grows_with_bytes_and_rounds_of_copies():
    assert expected_seconds(0, 100_000_000) == pytest.approx(1.05)
    assert expected_seconds(10 ** 9, 100_000_000) == pytest.approx(11.05)
    assert expected_seconds(0, 100_000_000, copies=33, concurrency=16) == pytest.approx(1.15)


@pytest.mark.parametrize("expected,elapsed,wait", [
    (11.05, 0, 12), (11.05, 5, 7), (11.05, 11, 1), (11.05, 11.5, 2), (3, 25, 3), (3, 1000, 30), (3, -5, 3)])
def test_retry_after_is_the_time_left_then_a_backoff(expected, elapsed, wait):
    assert retry_after(expected, elapsed) == wait


def test_stale_jobs():
    assert not job_is_stale(10, 149)
    assert job_is_stale(10, 151)


def test_tokens_round_trip_and_count_attempts():
    assert RetryToken.parse({"attempts": 0}) == RetryToken(0)
    token = RetryToken.parse({"attempts": 2, "job_id": "j", "start_time": 5})
    assert token == RetryToken(2, "j", 5.0)
    assert RetryToken.parse(json.loads(token.encode())) == token
    pending = Pending("k", 7.0, expected=3)
    assert pending.token(token) == RetryToken(3, "k", 7.0) and pending.token(None) == RetryToken(1, "k", 7.0)


@pytest.mark.parametrize("parsed", [{"attempts": "1"}, {"attempts": True}, {"attempts": -1},
                                    {"attempts": 1, "job_id": 3, "start_time": 1},
                                    {"attempts": 1, "job_id": "j", "start_time": "now"}])
def test_malformed_tokens(parsed):
    with pytest.raises(DSSError) as e:
        RetryToken.parse(parsed)
    assert (e.value.status, e.value.code) == (400, "illegal_token")


@pytest.mark.parametrize("scheme,bucket,ok", [
    ("s3", "my-bucket", True), ("s3", "my.bucket.2", True), ("gs", "my_bucket", True), ("s3", "my_bucket", False),
    ("s3", "ab", False), ("s3", "Upper", False), ("s3", "b/p", False), ("gs", "gs://b", False), ("s3", "", False),
    ("s3", "dss-primary", False)])
def test_destination_names(scheme, bucket, ok):
    assert (destination_error(scheme, bucket, reserved=("dss-primary",)) is None) == ok
