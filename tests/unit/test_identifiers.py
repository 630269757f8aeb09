import datetime

import pytest

from dss.identifiers import (ObjectId, ObjectIdentifierError, format_version, is_uuid, is_version, new_version,
                             version_from_key)

UUID = "ce55fd51-7833-469b-be0b-5da88ebebfcd"
VERSION = "2017-06-16T193604.240704Z"


@pytest.mark.parametrize("value", [VERSION, "2020-02-29T000000.000000Z", "1999-12-31T235959.999999Z"])
def test_canonical_versions_are_accepted(value):
    assert is_version(value)


@pytest.mark.parametrize("value", ["", "ABCD", "1985-04-12T23:20:50.52Z", "2017-06-16T193604.24070Z",
                                   "2017-06-16T19:36:04.240704Z", "2017-02-30T000000.000000Z",
                                   "2017-06-16T193604.240704", "2017-06-16T256000.000000Z", None, 17])
def test_non_canonical_versions_are_rejected(value):
    assert not is_version(value)


def test_new_version_is_canonical_utc():
    moment = datetime.datetime(2021, 3, 4, 5, 6, 7, 89, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    assert format_version(moment) == "2021-03-04T030607.000089Z"
    assert is_version(new_version())


@pytest.mark.parametrize("value,expected", [(UUID, True), ("xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", True),
                                            (UUID.upper(), False), ("ABCD", False), ("1234", False), ("", False)])
def test_uuid_rule(value, expected):
    assert is_uuid(value) is expected


@pytest.mark.parametrize("key,kind,version,tombstone", [
    (f"files/{UUID}.{VERSION}", "files", VERSION, False),
    (f"bundles/{UUID}.{VERSION}", "bundles", VERSION, False),
    (f"bundles/{UUID}.{VERSION}.dead", "bundles", VERSION, True),
    (f"bundles/{UUID}.dead", "bundles", None, True),
    (f"collections/{UUID}.dead", "collections", None, True),
])
def test_keys_round_trip(key, kind, version, tombstone):
    oid = ObjectId.from_key(key)
    assert (oid.kind, oid.uuid, oid.version, oid.tombstone) == (kind, UUID, version, tombstone)
    assert oid.to_key() == key


@pytest.mark.parametrize("key", ["blobs/abc", f"trash/{UUID}.{VERSION}", f"files/{UUID}", f"files/{UUID}.v1",
                                 f"files/{UUID}.{VERSION}.partA", "files/0ddba11-0000-0000-0000-000000000000.x"])
def test_foreign_keys_are_rejected(key):
    with pytest.raises(ObjectIdentifierError):
        ObjectId.from_key(key)


def test_tombstone_sorts_after_every_version():
    keys = sorted([f"bundles/{UUID}.dead", f"bundles/{UUID}.{VERSION}.dead", f"bundles/{UUID}.{VERSION}",
                   f"bundles/{UUID}.2099-01-01T000000.000000Z"])
    assert keys[-1] == f"bundles/{UUID}.dead"
    assert keys[0] == f"bundles/{UUID}.{VERSION}"


def test_version_from_key_ignores_tombstones_and_other_uuids():
    assert version_from_key(f"files/{UUID}.{VERSION}", "files", UUID) == VERSION
    assert version_from_key(f"bundles/{UUID}.{VERSION}.dead", "bundles", UUID) is None
    assert version_from_key(f"files/{UUID[:-1]}0.{VERSION}", "files", UUID) is None
