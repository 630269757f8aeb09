"""Small clients the tests share."""
from __future__ import annotations

import hashlib
import io
import pathlib
import time
import uuid as uuidlib
from collections.abc import Callable

import pytest
import requests
from boto3.s3.transfer import TransferConfig

from dss.checksums import compute_checksums_of_bytes
from dss.config import Settings


class ApiClient:
    """requests against the API under test, with development tokens minted on demand."""

    def __init__(self, base_url: str, stack, settings: Settings):
        self.base_url = base_url
        self.stack = stack
        self.settings = settings
        self.session = requests.Session()

    def token(self, email: str = "dev@example.org", group: str = "hca", **kwargs) -> str:
        from dss.local.issuer import mint_token
        return mint_token(self.stack.root, email, group, audience=self.settings.oidc_audience[0],
                          issuer=self.settings.openid_provider, email_claim=self.settings.email_claim,
                          group_claim=self.settings.group_claim, **kwargs)

    def auth(self, **kwargs) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(**kwargs)}"}

    def request(self, method: str, path: str, *, auth: bool | dict = False, headers=None, **kwargs):
        headers = dict(headers or {})
        if auth is True:
            headers.update(self.auth())
        elif isinstance(auth, dict):
            headers.update(auth)
        kwargs.setdefault("allow_redirects", False)
        kwargs.setdefault("timeout", 300)
        return self.session.request(method, self.base_url + path, headers=headers, **kwargs)

    def put_file(self, uuid: str, version: str | None, source_url: str, creator_uid: int = 4321, **kwargs):
        params = {} if version is None else {"version": version}
        return self.request("PUT", f"/v1/files/{uuid}", params=params, auth=kwargs.pop("auth", True),
                            json={"source_url": source_url, "creator_uid": creator_uid}, **kwargs)


def assert_problem(response, status: int, code: str):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == status and body["code"] == code, body
    assert isinstance(body["title"], str) and body["title"]
    assert "stacktrace" in body
    return body


def quiet_replicas(replicas):
    """The same stores without write events: what is written through them stays in its replica (replication
    never hears of it). For seeded data, and for states replication would not leave, built on purpose."""
    import dataclasses

    from dss.storage.replicas import Replicas
    return Replicas(dataclasses.replace(replicas.settings, publish_write_events=False))


def put_file_quietly(replicas, replica: str, data: bytes, *, version: str,
                     content_type: str = "application/octet-stream") -> dict:
    """A small file (blob and metadata) written straight into one replica, without write events.

    Returns {uuid, version, blob_key, metadata_key}."""
    import json
    import uuid as uuidlib

    from dss.checksums import compute_checksums_of_bytes
    from dss.file_metadata import file_metadata_document
    from dss.identifiers import file_key

    rs = quiet_replicas(replicas)[replica]
    checksums = compute_checksums_of_bytes(data)
    rs.store.put(rs.bucket, checksums.blob_key(), data, content_type=content_type)
    uuid = str(uuidlib.uuid4())
    document = file_metadata_document(checksums, size=len(data), content_type=content_type, creator_uid=1,
                                      version=version)
    rs.store.put(rs.bucket, file_key(uuid, version), json.dumps(document).encode(), content_type="application/json")
    return {"uuid": uuid, "version": version, "blob_key": checksums.blob_key(), "metadata_key": file_key(uuid, version)}


def unfinished_parts(rs, key: str) -> list[str]:
    """What unfinished multipart writes of key leave behind: pending S3 uploads, or GCS temporary parts."""
    if rs.replica.value == "aws":
        uploads = rs.store.client.list_multipart_uploads(Bucket=rs.bucket, Prefix=key).get("Uploads", [])
        return [u["UploadId"] for u in uploads if u["Key"] == key]
    return [k for k in rs.store.list(rs.bucket, key) if k != key]


def seed_file_metadata(replicas, replica: str, count: int, *, version: str, prefix: str = "f") -> list[dict]:
    """Write `count` file metadata documents straight into a replica (scale tests skip the per-file copy).

    They are real objects in the real store, read back by the API exactly as files made by PUT /files are. They
    have no blob, so they are written without write events: replication leaves them (and bundles of them) alone.
    """
    import concurrent.futures
    import json
    import uuid as uuidlib

    from dss.checksums import compute_checksums_of_bytes
    from dss.file_metadata import file_metadata_document
    from dss.identifiers import file_key

    rs = quiet_replicas(replicas)[replica]
    checksums = compute_checksums_of_bytes(b"seeded")
    entries = [{"uuid": str(uuidlib.uuid4()), "version": version, "name": f"{prefix}{i:06d}.bin", "indexed": False}
               for i in range(count)]
    body = json.dumps(file_metadata_document(checksums, size=6, content_type="application/octet-stream",
                                             creator_uid=1, version=version)).encode()

    keys = [file_key(entry["uuid"], version) for entry in entries]
    if rs.store.scheme == "s3":
        put_s3_objects(rs.store.client, rs.bucket, keys, body, content_type="application/json")
    else:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda key: rs.store.put(rs.bucket, key, body, content_type="application/json"), keys))
    return entries


def put_s3_objects(client, bucket: str, keys: list[str], body: bytes, *, content_type: str, threads: int = 8) -> None:
    """PUT the same body under many keys: the requests boto3's put_object sends (path-style, signed with SigV4 by
    botocore), at a third of its CPU cost; seeding thousands of objects is bound by the client's CPU."""
    import concurrent.futures
    import urllib.parse

    import botocore.auth
    import botocore.awsrequest
    import urllib3

    credentials = client._request_signer._credentials  # the client's own: from the environment, on the stack
    endpoint, region = client.meta.endpoint_url.rstrip("/"), client.meta.region_name
    pool = urllib3.PoolManager(maxsize=threads)

    def put(key: str) -> None:
        request = botocore.awsrequest.AWSRequest("PUT", f"{endpoint}/{bucket}/{urllib.parse.quote(key, safe='/')}",
                                                 data=body, headers={"Content-Type": content_type})
        botocore.auth.S3SigV4Auth(credentials, "s3", region).add_auth(request)
        response = pool.request("PUT", request.url, body=body, headers=dict(request.headers.items()))
        assert response.status == 200, (key, response.status, response.data[:500])

    try:
        with concurrent.futures.ThreadPoolExecutor(threads) as executor:
            list(executor.map(put, keys))
    finally:
        pool.clear()


def stage_in_parts(s3, bucket: str, data: bytes, *, part_size: int) -> str:
    """Upload with boto3 in parts of part_size (multipart above one part), with the four checksum tags; the key."""
    key = f"{uuidlib.uuid4()}/staged-in-parts.bin"
    s3.upload_fileobj(io.BytesIO(data), bucket, key, Config=TransferConfig(
        multipart_threshold=part_size + 1, multipart_chunksize=part_size))
    s3.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": [
        {"Key": f"hca-dss-{k}", "Value": v} for k, v in compute_checksums_of_bytes(data).as_dict().items()]})
    return key


def wait_for(predicate, timeout: float = 30, interval: float = 0.2, what: str | Callable[[], str] = "the condition"):
    """Call `predicate()` until it returns something true, and return that; AssertionError after `timeout` s.

    `what` names the wait in that error; a callable is asked then (for the state things were left in). A requests
    Response is false when its status is an error: return it wrapped (`[response]`) when any status will do."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what() if callable(what) else what}")
        time.sleep(interval)


def poll_while_404(head, timeout: float = 60.0, interval: float = 0.2):
    """Call `head()` while it answers 404, as the hca client polls HEAD after a 202; the first other answer."""
    [response] = wait_for(lambda: [r] if (r := head()).status_code != 404 else None, timeout=timeout,
                          interval=interval, what="an answer other than 404")
    return response


def follow_301s(response, get, *, timeout: float = 60, longest_wait: float | None = None):
    """Follow 301s after their Retry-After (each wait capped at `longest_wait`), as clients should.

    Returns the first other answer and the 301s on the way; AssertionError if it takes longer than `timeout` s."""
    redirects = []

    def answered():
        nonlocal response
        if response.status_code != 301:
            return [response]
        redirects.append(response)
        wait = float(response.headers.get("Retry-After", 1))
        time.sleep(wait if longest_wait is None else min(longest_wait, wait))
        response = get(response.headers["Location"])
        return None

    [final] = wait_for(answered, timeout=timeout, interval=0, what="an answer other than 301")
    return final, redirects


def downloaded_sha256(api: ApiClient, uuid: str, replica: str, version: str | None = None) -> str:
    """GET /files, honouring checkout redirects (301 + Retry-After) up to the 302, then stream the content."""
    params = {"replica": replica, **({"version": version} if version else {})}
    r, _ = follow_301s(api.request("GET", f"/v1/files/{uuid}", params=params),
                       lambda url: api.session.get(url, allow_redirects=False, timeout=60), longest_wait=1.0)
    assert r.status_code == 302, r.text
    digest = hashlib.sha256()
    with requests.get(r.headers["Location"], stream=True, timeout=120) as fetched:
        fetched.raise_for_status()
        for chunk in fetched.iter_content(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


TOOLS_BIN = pathlib.Path(__file__).resolve().parent.parent / ".tools-venv" / "bin"


def tool(name: str) -> pathlib.Path:
    """A checker of the tools virtualenv (checkov, cfn-lint, statelint); its absence fails the test."""
    path = TOOLS_BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: the tools virtualenv is made by `make setup` (requirements-tools.txt)",
                    pytrace=False)
    return path
