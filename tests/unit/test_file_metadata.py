import pytest

from dss.checksums import compute_checksums_of_bytes
from dss.errors import DSSError
from dss.file_metadata import (dss_headers, file_metadata_document, parse_source_url, same_file,
                               staging_checksums)

GOOD = {f"hca-dss-{k}": v for k, v in compute_checksums_of_bytes(b"abc").as_dict().items()}


@pytest.mark.parametrize("url,expected", [("s3://bucket/key/with/slashes", ("s3", "bucket", "key/with/slashes")),
                                          ("gs://b/k", ("gs", "b", "k"))])
def test_source_urls(url, expected):
    parsed = parse_source_url(url)
    assert (parsed.scheme, parsed.bucket, parsed.key) == expected


@pytest.mark.parametrize("url", ["wasb://c/k", "s3://bucket", "s3://bucket/", "ftp://h/k", "", "s3:/b/k"])
def test_unknown_source_schema(url):
    with pytest.raises(DSSError) as e:
        parse_source_url(url)
    assert (e.value.status, e.value.code) == (400, "unknown_source_schema")


@pytest.mark.parametrize("url", ["s3://Bad_Bucket!/x", "gs://b b/x", "s3://" + "b" * 256 + "/x", "s3://b/a\x00b",
                                 "gs://b/line\nbreak", "s3://b/x\n", "s3://b/" + "k" * 1025, "gs://b/\ud800", "s3://b/\x7f"],
                         ids=["bucket punctuation", "bucket space", "bucket length", "NUL", "LF", "trailing LF", "key length",
                              "lone surrogate", "DEL"])
def test_source_urls_no_store_can_name(url):
    with pytest.raises(DSSError) as e:
        parse_source_url(url)
    assert (e.value.status, e.value.code) == (400, "illegal_arguments")
    assert parse_source_url("s3://b/" + "é" * 512).key == "é" * 512  # 1,024 bytes



def test_staging_checksums_lower_case_and_validate():
    upper = {k: v.upper() for k, v in GOOD.items()}
    assert staging_checksums(upper) == compute_checksums_of_bytes(b"abc")
    with pytest.raises(DSSError) as e:
        staging_checksums({k: v for k, v in GOOD.items() if k != "hca-dss-crc32c"})
    assert (e.value.status, e.value.code) == (422, "missing_checksum")
    with pytest.raises(DSSError) as e:
        staging_checksums({**GOOD, "hca-dss-sha256": "xyz"})
    assert (e.value.status, e.value.code) == (422, "invalid_checksum")


def test_document_headers_and_sameness():
    c = compute_checksums_of_bytes(b"abc")
    doc = file_metadata_document(c, size=3, content_type="text/plain", creator_uid=7,
                                 version="2017-06-16T193604.240704Z")
    assert doc["format"] == "0.0.4" and doc["s3-etag"] == c.s3_etag
    assert dss_headers(doc)["X-DSS-SIZE"] == "3"
    assert same_file(doc, {**doc, "bundle_uuid": "legacy extra key"})
    assert not same_file(doc, {**doc, "creator_uid": 8})
    assert not same_file(doc, {**doc, "content-type": "text/html"})
