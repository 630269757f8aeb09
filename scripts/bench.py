#!/usr/bin/env python
"""`make bench`: figures measured in one run on a fresh local stack, each as a ratio against the raw storage
operation on the same server. Not a test: it asserts nothing about time. Each section's figures are saved as soon
as they are measured (a later failure loses none, and is recorded in the results as the section's error).

  GET /files redirects per second      vs raw HEAD requests per second on the same object store
  PUT /files of 1 KiB files per second vs raw server-side copies per second
  the API's peak RSS while it ingests a 1 GiB file
  PUT /bundles of 100, 1,000 and 10,000 files vs raw GETs of the same file metadata (the lookups it makes)
  GET /bundles paging through 10,000 files  vs raw GETs of the manifest object, once per page
  GET /bundles/all over 10,000 bundles      vs a raw listing of the same keys
  replication lag p50/p95 of 1 KiB files (each direction), and of one 100 MiB file
  replication under load: 16 clients PUT 1 KiB files for 120 s as fast as the API takes them; lag from each 201 to
    the copy on gcp (p50/p95/max), the backlog when the writes stop and after, replicated/s vs API writes/s
  large-file ingest through PUT /files (the 202 path) vs a raw multipart server-side copy of the same bytes
  bundle checkout of 1,000 small files
  indexing throughput: bundle object events to searchable documents, bundles/s vs the original's ~200/min
  POST /search p50/p95 over 100,000 indexed bundles          vs the same queries sent straight to the backend
  one bundle write to 1,000 matching JMESPath subscriptions notified (10 owners), seconds and notifications/s
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import http.server
import io
import json
import logging
import os
import pathlib
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psutil
import requests
from boto3.s3.transfer import TransferConfig
from opensearchpy import helpers as search_helpers

from dss.bundle_manifest import bundle_document, manifest_entry
from dss.checksums import Checksummer, Checksums, MiB, compute_checksums_of_bytes
from dss.config import Settings
from dss.events.bus import Bus, Topology
from dss.events.records import s3_record
from dss.file_metadata import file_metadata_document
from dss.identifiers import file_key, new_version
from dss.index.backend import SearchBackend
from dss.index.documents import group_files, index_document, shape_descriptor
from dss.local.issuer import mint_token
from dss.local.stack import PUBLIC_PORTS, LocalStack, free_ports
from dss.storage.bundles import bundle_key
from dss.storage.replicas import Replicas

logger = logging.getLogger("bench")

OTHER_REPLICA = {"aws": "gcp", "gcp": "aws"}
ORIGINAL_INDEX_RATE = 200 / 60  # bundles per second the original's indexer was quoted at (about 200 a minute)
ORGANS = ("brain", "heart", "lung", "liver", "kidney", "spleen", "pancreas", "skin", "bone marrow", "blood")
SPECIES = ("homo sapiens", "mus musculus", "danio rerio")
ROOT = pathlib.Path(__file__).resolve().parent.parent
# The sort POST /search adds to every query (dss.api.search.SORT; not imported, which would load the web app).
SEARCH_SORT = [{"uuid": {"order": "desc"}}, {"manifest.version": {"order": "desc", "missing": "_last"}}]


def rate(operation, count: int, concurrency: int) -> float:
    """Operations per second of `operation(i)` for i in range(count), on `concurrency` threads."""
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(operation, range(count)))
    return count / (time.perf_counter() - start)


class Bench:
    def __init__(self, stack: LocalStack, count: int, concurrency: int):
        self.stack, self.count, self.concurrency = stack, count, concurrency
        self.settings_env = stack.env()
        self.settings = Settings.from_env(self.settings_env)
        self.replicas = Replicas(self.settings)
        self.api = stack.env()["DSS_API_URL"]
        self.token = self.mint("bench@example.org")
        self._local = threading.local()

    def mint(self, email: str) -> str:
        return mint_token(self.stack.root, email, "hca", audience=self.settings.oidc_audience[0],
                          issuer=self.settings.openid_provider, email_claim=self.settings.email_claim,
                          group_claim=self.settings.group_claim, expires_in=7200)

    @functools.cached_property
    def quiet(self) -> Replicas:
        """The same stores without write events: what is written through them is not announced to the daemons."""
        return Replicas(dataclasses.replace(self.settings, publish_write_events=False))

    @functools.cached_property
    def bus(self) -> Bus:
        return Bus(Topology(self.settings.stage))

    @property
    def http(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def stage(self, replica: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        rs = self.replicas[replica]
        key = f"bench/{uuid.uuid4()}"
        checksums = {f"hca-dss-{k}": v for k, v in compute_checksums_of_bytes(data).as_dict().items()}
        rs.store.put(rs.staging_bucket, key, data, content_type=content_type, metadata=checksums)
        return f"{rs.replica.scheme}://{rs.staging_bucket}/{key}"

    def put_file(self, source: str) -> tuple[str, str]:
        """PUT /files; a 202 (large file) is followed by polling HEAD until the copy is done."""
        file_uuid, version = str(uuid.uuid4()), new_version()
        r = self.http.put(f"{self.api}/v1/files/{file_uuid}", params={"version": version},
                          headers={"Authorization": f"Bearer {self.token}"},
                          json={"source_url": source, "creator_uid": 0}, timeout=600)
        if r.status_code == 202:
            self.wait_for_file(file_uuid, version, "aws" if source.startswith("s3") else "gcp", timeout=1800)
        elif r.status_code != 201:
            raise RuntimeError(f"PUT /files answered {r.status_code}: {r.text}")
        return file_uuid, version

    def wait_for_file(self, file_uuid: str, version: str, replica: str, timeout: float = 120,
                      interval: float = 0.02) -> float:
        """Seconds until HEAD /files answers 200 on `replica`."""
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            r = self.http.head(f"{self.api}/v1/files/{file_uuid}", params={"replica": replica, "version": version},
                               timeout=30)
            if r.status_code == 200:
                return time.perf_counter() - start
            if r.status_code != 404:
                raise RuntimeError(f"HEAD /files answered {r.status_code}")
            time.sleep(interval)
        raise TimeoutError(f"{file_uuid}.{version} did not appear on {replica} within {timeout} s")

    def redirects(self, replica: str) -> dict:
        file_uuid, _ = self.put_file(self.stage(replica, b"redirect me"))
        rs = self.replicas[replica]
        blob_key = compute_checksums_of_bytes(b"redirect me").blob_key()

        def get(_):
            r = self.http.get(f"{self.api}/v1/files/{file_uuid}", params={"replica": replica},
                              allow_redirects=False, timeout=60)
            assert r.status_code == 302, r.text

        raw = rate(lambda _: self.raw_head(replica, rs.bucket, blob_key), self.count, self.concurrency)
        dss = rate(get, self.count, self.concurrency)
        return {"GET /files redirects/s": dss, "raw HEAD/s": raw, "ratio": dss / raw}

    def lambda_redirects(self, replica: str) -> dict:
        """GET /files through the API Lambda's handler (chalice/app.py) in this process, one request at a time as a
        Lambda instance serves them, against raw HEADs on one thread."""
        import importlib.util
        spec = importlib.util.spec_from_file_location("dss_api_lambda", ROOT / "chalice" / "app.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        file_uuid, _ = self.put_file(self.stage(replica, b"redirect me from lambda"))
        rs = self.replicas[replica]
        blob_key = compute_checksums_of_bytes(b"redirect me from lambda").blob_key()
        event = {"method": "GET", "path": f"/v1/files/{file_uuid}", "params": {"replica": replica}, "headers": {}}
        module.app(event, None)  # the cold start: the connexion app is built on the first event

        def get(_):
            answer = module.app(event, None)
            assert answer["statusCode"] == 302, answer

        raw = rate(lambda _: self.raw_head(replica, rs.bucket, blob_key), self.count, 1)
        via_lambda = rate(get, self.count, 1)
        return {"Lambda GET /files/s": via_lambda, "raw HEAD/s": raw, "ratio": via_lambda / raw}

    def raw_head(self, replica: str, bucket: str, key: str) -> None:
        if replica == "aws":
            self.replicas["aws"].store.client.head_object(Bucket=bucket, Key=key)
        else:  # one metadata GET on the JSON API, on a session per thread, as the API's own calls are
            r = self.http.get(f"{self.settings_env['STORAGE_EMULATOR_HOST']}/storage/v1/b/{bucket}/o/"
                              f"{requests.utils.quote(key, safe='')}", timeout=60)
            r.raise_for_status()

    def small_puts(self, replica: str) -> dict:
        rs = self.replicas[replica]
        sources = [self.stage(replica, os.urandom(1024)) for _ in range(self.count)]
        copy_sources = [self.stage(replica, os.urandom(1024)) for _ in range(self.count)]
        dss = rate(lambda i: self.put_file(sources[i]), self.count, self.concurrency)

        def raw_copy(i):
            key = copy_sources[i].split("/", 3)[3]
            rs.store.copy(rs.staging_bucket, key, rs.bucket, f"bench-raw/{uuid.uuid4()}")

        raw = rate(raw_copy, self.count, self.concurrency)
        return {"PUT /files 1 KiB/s": dss, "raw server-side copies/s": raw, "ratio": dss / raw}

    def large_ingest_rss(self, size: int) -> dict:
        """Peak RSS of the API and of the worker (which runs the copy workflow) while a large file is ingested."""
        bucket, key = self.stage_large(size)
        processes = {name: psutil.Process(pid) for name, pid in self.stack.pids().items() if name in ("api", "worker")}
        baseline = {name: _tree_rss(p) for name, p in processes.items()}
        peak, done = dict(baseline), threading.Event()

        def sample():
            while not done.is_set():
                for name, process in processes.items():
                    peak[name] = max(peak[name], _tree_rss(process))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        start = time.perf_counter()
        try:
            self.put_file(f"s3://{bucket}/{key}")
        finally:
            done.set()
            sampler.join()
        seconds = time.perf_counter() - start
        figures = {"file MiB": size // MiB, "ingest seconds": seconds, "ingest MB/s": size / seconds / 1e6}
        for name in processes:
            figures[f"{name} RSS before MiB"] = baseline[name] / MiB
            figures[f"{name} peak RSS MiB"] = peak[name] / MiB
        return figures

    def seed(self, replica: str, keys_and_bodies) -> None:
        """Fixtures written straight into a primary bucket, unannounced: seeding is not what is measured."""
        rs = self.quiet[replica]
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda kb: rs.store.put(rs.bucket, kb[0], kb[1], content_type="application/json"),
                          keys_and_bodies))

    def seed_files(self, count: int, version: str, checksums: Checksums, size: int, name: str = "f{}") -> list[dict]:
        """`count` file metadata documents (all for one blob) written straight into aws; their bundle entries."""
        body = json.dumps(file_metadata_document(checksums, size=size, creator_uid=0,
                                                 content_type="application/octet-stream", version=version)).encode()
        files = [{"uuid": str(uuid.uuid4()), "version": version, "name": name.format(i), "indexed": False}
                 for i in range(count)]
        self.seed("aws", [(file_key(f["uuid"], version), body) for f in files])
        return files

    def put_bundle(self, files: list[dict], version: str, bundle: str | None = None,
                   timeout: float = 600) -> tuple[str, requests.Response]:
        bundle = bundle or str(uuid.uuid4())
        r = self.http.put(f"{self.api}/v1/bundles/{bundle}", params={"replica": "aws", "version": version},
                          headers={"Authorization": f"Bearer {self.token}"},
                          json={"files": files, "creator_uid": 0}, timeout=timeout)
        return bundle, r

    def pages(self, url: str, timeout: float = 60):
        """Each page of a paged GET, following `Link: <...>; rel="next"` as clients do."""
        while url:
            r = self.http.get(url, timeout=timeout)
            yield r
            link = r.headers.get("Link")
            url = link[link.index("<") + 1:link.index(">")] if link else None

    def bundle_puts(self, sizes=(100, 1000, 10000)) -> dict:
        rs = self.replicas["aws"]
        version = new_version()
        results = {}
        for size in sizes:
            files = self.seed_files(size, version, compute_checksums_of_bytes(b"x"), 1)
            start = time.perf_counter()
            _, r = self.put_bundle(files, version)
            seconds = time.perf_counter() - start
            assert r.status_code == 201, r.text[:300]
            raw = len(files) / rate(lambda i, files=files: rs.store.get(rs.bucket, file_key(files[i]["uuid"], version)),
                                    len(files), self.settings.bundle_lookup_concurrency)
            results[f"PUT {size} files s"] = seconds
            results[f"raw {size} GETs s"] = raw
            results[f"ratio {size}"] = raw / seconds
        return results

    def bundle_paging(self, size=10000, per_page=500) -> dict:
        rs = self.replicas["aws"]
        version = new_version()
        files = self.seed_files(size, version, compute_checksums_of_bytes(b"x"), 1)
        bundle, r = self.put_bundle(files, version)
        assert r.status_code == 201
        start = time.perf_counter()
        pages = sum(1 for _ in self.pages(f"{self.api}/v1/bundles/{bundle}?replica=aws&per_page={per_page}"))
        seconds = time.perf_counter() - start
        key = f"bundles/{bundle}.{version}"
        raw_start = time.perf_counter()
        for _ in range(pages):
            rs.store.get(rs.bucket, key)
        raw = time.perf_counter() - raw_start
        return {"pages": pages, "GET all pages s": seconds, "raw manifest GETs s": raw, "ratio": raw / seconds}

    def bundles_all(self, count=10000, per_page=500) -> dict:
        rs = self.replicas["aws"]
        prefix = uuid.uuid4().hex[:6]
        version = new_version()
        manifest = json.dumps({"format": "0.0.1", "version": version, "files": [], "creator_uid": 0}).encode()
        uuids = [f"{prefix}{uuid.uuid4().hex[6:8]}-{str(uuid.uuid4())[9:]}" for _ in range(count)]
        self.seed("aws", [(f"bundles/{u}.{version}", manifest) for u in uuids])
        start = time.perf_counter()
        listed = sum(len(r.json()["bundles"]) for r in self.pages(
            f"{self.api}/v1/bundles/all?replica=aws&prefix={prefix}&per_page={per_page}", timeout=120))
        seconds = time.perf_counter() - start
        assert listed == count, listed
        raw_start = time.perf_counter()
        raw_count = sum(1 for _ in rs.store.list(rs.bucket, f"bundles/{prefix}", page_size=per_page))
        raw = time.perf_counter() - raw_start
        assert raw_count == count
        return {"bundles": count, "GET /bundles/all s": seconds, "raw listing s": raw, "ratio": raw / seconds}


    def replication_lag(self, count: int = 40) -> dict:
        results = {}
        for source, dest in (("aws", "gcp"), ("gcp", "aws")):
            lags = []
            for _ in range(count):
                file_uuid, version = self.put_file(self.stage(source, os.urandom(1024)))
                lags.append(self.wait_for_file(file_uuid, version, dest))
            lags.sort()
            results[f"{source}->{dest} 1 KiB p50 s"] = lags[len(lags) // 2]
            results[f"{source}->{dest} 1 KiB p95 s"] = lags[min(len(lags) - 1, int(len(lags) * 0.95))]
        return results

    def replication_under_load(self, seconds: float, clients: int, source: str = "aws",
                               settle: float = 180.0, poll: float = 0.5) -> dict:
        """PUT /files of 1 KiB on `clients` threads for `seconds`, as fast as the API takes them, while the other
        replica's primary bucket is listed every `poll` s: each file's lag is from its 201 to the first listing
        that shows its metadata there. After the writes stop, the listing goes on until every file is there or
        `settle` s pass; what is still missing then is the backlog."""
        dest = OTHER_REPLICA[source]
        rs = self.quiet[dest]
        acked: dict[str, float] = {}
        seen: dict[str, float] = {}
        lock = threading.Lock()
        writing, watching = threading.Event(), threading.Event()

        def client(_):
            while writing.is_set():
                file_uuid, version = self.put_file(self.stage(source, os.urandom(1024)))
                with lock:
                    acked[file_key(file_uuid, version)] = time.perf_counter()

        def watch():
            while watching.is_set():
                listed_at = time.perf_counter()
                keys = set(rs.store.list(rs.bucket, "files/"))
                with lock:
                    for key in keys.intersection(acked).difference(seen):
                        seen[key] = listed_at
                time.sleep(max(0.0, poll - (time.perf_counter() - listed_at)))

        watching.set()
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        writing.set()
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            futures = [pool.submit(client, i) for i in range(clients)]
            time.sleep(seconds)
            writing.clear()
            for future in futures:
                future.result()
        written_for = time.perf_counter() - start
        with lock:
            backlog_at_stop = len(acked) - len(seen)
        deadline = time.perf_counter() + settle
        while time.perf_counter() < deadline:
            with lock:
                if len(seen) == len(acked):
                    break
            time.sleep(poll)
        watching.clear()
        watcher.join()
        lags = sorted(seen[key] - acked[key] for key in seen)
        last_copy = max(seen.values(), default=start)
        api_rate = len(acked) / written_for
        replication_rate = len(seen) / max(last_copy - start, written_for)
        return {"clients": clients, "write seconds": written_for, "files written": len(acked),
                "API writes/s": api_rate, "replicated/s": replication_rate, "ratio": replication_rate / api_rate,
                "lag p50 s": _percentile(lags, 0.5), "lag p95 s": _percentile(lags, 0.95),
                "lag max s": lags[-1] if lags else float("nan"),
                "backlog when writes stopped": backlog_at_stop,
                "drained s after stop": (last_copy - start - written_for) if len(seen) == len(acked) else float("nan"),
                f"backlog after {settle:.0f} s": len(acked) - len(seen), "listing poll s": poll}

    def stage_large(self, size: int) -> tuple[str, str]:
        """A large object in the S3 staging bucket, uploaded in the hca client's parts, with its checksum tags."""
        s3 = self.replicas["aws"].store.client
        bucket, key = self.settings.s3_staging_bucket, f"bench/{uuid.uuid4()}/large.bin"
        block = os.urandom(MiB)
        summer = Checksummer(size)
        for _ in range(size // MiB):
            summer.update(block)
        s3.upload_fileobj(RepeatingReader(block, size), bucket, key, Config=TransferConfig(
            multipart_threshold=64 * MiB + 1, multipart_chunksize=64 * MiB, max_concurrency=4))
        s3.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": [
            {"Key": f"hca-dss-{k}", "Value": v} for k, v in summer.finish().as_dict().items()]})
        return bucket, key

    def large_replication_lag(self, size: int = 100 * MiB) -> dict:
        bucket, key = self.stage_large(size)
        file_uuid, version = self.put_file(f"s3://{bucket}/{key}")
        return {"aws->gcp 100 MiB lag s": self.wait_for_file(file_uuid, version, "gcp", timeout=900, interval=0.1)}

    def large_ingest_202(self, size: int) -> dict:
        """PUT /files above the synchronous threshold: 202, then the workflow copies; vs one raw multipart copy."""
        rs = self.replicas["aws"]
        bucket, key = self.stage_large(size)
        start = time.perf_counter()
        self.put_file(f"s3://{bucket}/{key}")
        seconds = time.perf_counter() - start
        raw_start = time.perf_counter()
        rs.store.copy(bucket, key, rs.bucket, f"bench-raw/{uuid.uuid4()}", part_size=64 * MiB,
                      concurrency=self.settings.copy_concurrency)
        raw = time.perf_counter() - raw_start
        return {"file MiB": size // MiB, "202 ingest MB/s": size / seconds / 1e6,
                "raw multipart copy MB/s": size / raw / 1e6, "ratio": raw / seconds}

    def bundle_checkout(self, count: int = 1000) -> dict:
        rs = self.replicas["aws"]
        version = new_version()
        data = b"checkout me"
        checksums = compute_checksums_of_bytes(data)
        rs.store.put(rs.bucket, checksums.blob_key(), data)
        files = self.seed_files(count, version, checksums, len(data), name="dir/f{}")
        bundle, r = self.put_bundle(files, version)
        assert r.status_code == 201, r.text[:300]
        start = time.perf_counter()
        job = self.http.post(f"{self.api}/v1/bundles/{bundle}/checkout", params={"replica": "aws"}, json={},
                             timeout=60).json()["checkout_job_id"]
        while True:
            status = self.http.get(f"{self.api}/v1/bundles/checkout/{job}", params={"replica": "aws"},
                                   timeout=60).json()
            if status["status"] != "RUNNING":
                break
            time.sleep(0.2)
        seconds = time.perf_counter() - start
        assert status["status"] == "SUCCEEDED", status
        return {"files": count, "checkout s": seconds, "files/s": count / seconds}

    def put_json_quietly(self, replicas: tuple[str, ...], name: str, content: dict, version: str) -> dict:
        """One JSON file (blob and metadata) written straight into primary buckets, unannounced; its manifest entry."""
        data = json.dumps(content).encode()
        checksums = compute_checksums_of_bytes(data)
        metadata = file_metadata_document(checksums, size=len(data), content_type="application/json", creator_uid=0,
                                          version=version)
        file_uuid = str(uuid.uuid4())
        for replica in replicas:
            rs = self.quiet[replica]
            rs.store.put(rs.bucket, checksums.blob_key(), data, content_type="application/json")
            rs.store.put(rs.bucket, file_key(file_uuid, version), json.dumps(metadata).encode(),
                         content_type="application/json")
        return manifest_entry({"name": name, "uuid": file_uuid, "version": version, "indexed": True}, metadata)

    def wait_for_idle_queues(self, names=("sync", "index", "notify"), timeout: float = 900) -> float:
        """Seconds until the daemons' queues hold no message, visible, in flight or delayed (three polls in a
        row): what one measurement set off is over before the next starts."""
        attributes = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                      "ApproximateNumberOfMessagesDelayed"]
        start, idle_polls = time.perf_counter(), 0
        while time.perf_counter() - start < timeout:
            waiting = sum(int(value) for name in names for value in self.bus.sqs.get_queue_attributes(
                QueueUrl=self.bus.queue_url(self.bus.topology.queue(name)), AttributeNames=attributes)[
                "Attributes"].values())
            idle_polls = idle_polls + 1 if waiting == 0 else 0
            if idle_polls == 3:
                return time.perf_counter() - start
            time.sleep(0.5)
        raise TimeoutError(f"the queues {', '.join(names)} were still busy after {timeout} s")

    def search_total(self, es_query: dict, per_page: int = 10) -> int:
        r = self.http.post(f"{self.api}/v1/search", params={"replica": "aws", "per_page": per_page},
                           json={"es_query": es_query}, timeout=60)
        if r.status_code not in (200, 206):
            raise RuntimeError(f"POST /search answered {r.status_code}: {r.text[:300]}")
        return r.json()["total_hits"]

    def wait_for_hits(self, es_query: dict, count: int, timeout: float, interval: float = 0.2) -> float:
        """Seconds until POST /search reports `count` hits for the query."""
        start, total = time.perf_counter(), 0
        while time.perf_counter() - start < timeout:
            total = self.search_total(es_query)
            if total >= count:
                return time.perf_counter() - start
            time.sleep(interval)
        raise TimeoutError(f"{total} of {count} bundles searchable after {timeout} s")

    def index_throughput(self, count: int) -> dict:
        """Bundles/s from an object event to a document POST /search finds.

        The bundles share one indexed JSON file, written unannounced in both replicas (as if it had replicated
        already: the bundle events reach the sync daemon too, which copies each manifest to gcp, where it is
        indexed in turn). The manifests are written unannounced into aws; then one event per bundle is published
        on the aws topic, as S3 would, and the clock runs until a term query on the file's marker counts them all.
        """
        marker = f"index-{uuid.uuid4().hex}"
        version = new_version()
        entry = self.put_json_quietly(("aws", "gcp"), "bench_index.json", {"marker": marker, "kind": "bench"}, version)
        manifest = json.dumps(bundle_document([entry], version=version, creator_uid=0)).encode()
        etag = hashlib.md5(manifest).hexdigest()
        rs = self.quiet["aws"]
        keys = [bundle_key(str(uuid.uuid4()), version) for _ in range(count)]
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda key: rs.store.put(rs.bucket, key, manifest, content_type="application/json"), keys))
        self.bus.topic_arn(self.bus.topology.topic("aws"))
        query = {"query": {"term": {"files.bench_index_json.marker": marker}}}
        start = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda key: self.bus.publish_object_event(
                "aws", s3_record(rs.bucket, key, len(manifest), etag)), keys))
        published = time.perf_counter() - start
        self.wait_for_hits(query, count, timeout=max(600.0, count * 2.0))
        seconds = time.perf_counter() - start
        # Replication to gcp and its indexing go on: let them finish, so they do not weigh on the next figures.
        drained = seconds + self.wait_for_idle_queues()
        bundles_per_second = count / seconds
        return {"bundles": count, "publish events s": published, "all searchable s": seconds,
                "bundles/s": bundles_per_second, "original bundles/s": ORIGINAL_INDEX_RATE,
                "ratio": bundles_per_second / ORIGINAL_INDEX_RATE, "queues drained s": drained}

    def search_latency(self, count: int, queries: int = 200, per_page: int = 100, chunk: int = 5000) -> dict:
        """POST /search p50/p95 over `count` documents bulk-loaded into the aws index, vs the same search bodies
        sent straight to the backend (what the API sends: size per_page + 1, its sort, no _source, total hits)."""
        backend = SearchBackend(self.settings)
        alias = backend.alias("aws")
        marker = f"search-{uuid.uuid4().hex}"
        json_metadata = file_metadata_document(compute_checksums_of_bytes(b"{}"), size=200,
                                               content_type="application/json", creator_uid=0, version=new_version())
        fastq_metadata = file_metadata_document(compute_checksums_of_bytes(b"@r"), size=10 * MiB,
                                                content_type="application/gzip", creator_uid=0, version=new_version())

        def document(i: int) -> tuple[str, dict]:
            bundle, version = str(uuid.uuid4()), new_version()
            sample = {"marker": marker, "organ": ORGANS[i % len(ORGANS)], "species": SPECIES[i % len(SPECIES)],
                      "donor_age": i % 90, "cell_count": (i * 7919) % 100_000, "lab": f"lab-{i % 50}"}
            entries = [manifest_entry({"name": "sample.json", "uuid": str(uuid.uuid4()), "version": version,
                                       "indexed": True}, json_metadata),
                       manifest_entry({"name": f"reads_{i % 4}.fastq.gz", "uuid": str(uuid.uuid4()),
                                       "version": version, "indexed": False}, fastq_metadata)]
            manifest = bundle_document(entries, version=version, creator_uid=i % 7)
            return f"{bundle}.{version}", index_document(bundle, manifest, group_files([("sample.json", sample)]))

        shape = str(shape_descriptor(document(0)[1]["files"]))
        index = backend.ensure_index("aws", shape)

        def actions():
            for i in range(count):
                doc_id, doc = document(i)
                yield {"_index": index, "_id": doc_id, "_source": doc}

        start = time.perf_counter()
        search_helpers.bulk(backend.client, actions(), chunk_size=chunk, max_chunk_bytes=500 * MiB,
                            request_timeout=600)
        backend.client.indices.refresh(index=index, request_timeout=600)
        population = time.perf_counter() - start
        found = backend.client.count(index=alias, body={"query": {"term": {"files.sample_json.marker": marker}}},
                                     request_timeout=120)["count"]
        assert found == count, f"{found} of {count} documents indexed"

        bodies = [_search_query(i) for i in range(queries)]
        for body in bodies[:10]:  # warm-up, not timed
            self.search_total(body, per_page)
        api, raw, totals = [], [], []
        for body in bodies:
            t = time.perf_counter()
            r = self.http.post(f"{self.api}/v1/search", params={"replica": "aws", "per_page": per_page},
                               json={"es_query": body}, timeout=120)
            api.append(time.perf_counter() - t)
            if r.status_code not in (200, 206):
                raise RuntimeError(f"POST /search answered {r.status_code}: {r.text[:300]}")
            totals.append(r.json()["total_hits"])
            t = time.perf_counter()
            backend.client.search(index=alias, body={**body, "size": per_page + 1, "sort": SEARCH_SORT,
                                                     "_source": False, "track_total_hits": True}, request_timeout=120)
            raw.append(time.perf_counter() - t)
        for figures in (api, raw, totals):
            figures.sort()
        p50, p95 = len(api) // 2, min(len(api) - 1, int(len(api) * 0.95))
        return {"documents": count, "population s": population, "population docs/s": count / population,
                "queries": queries, "median total_hits": totals[p50],
                "POST /search p50 ms": api[p50] * 1000, "POST /search p95 ms": api[p95] * 1000,
                "raw search p50 ms": raw[p50] * 1000, "raw search p95 ms": raw[p95] * 1000,
                "ratio p50": raw[p50] / api[p50], "ratio p95": raw[p95] / api[p95]}

    def notification_fanout(self, subscriptions: int = 1000) -> dict:
        """One bundle PUT to every notification of `subscriptions` matching JMESPath subscriptions delivered
        (spread over owners of 100 each, the per-owner limit), to a receiver on 127.0.0.1."""
        receiver = NotificationReceiver()
        try:
            marker = f"notify-{uuid.uuid4().hex}"
            query = f"files.bench_notify_json[0].marker == '{marker}'"
            owners = max(1, -(-subscriptions // 100))
            tokens = [self.mint(f"bench-notify-{i}@example.org") for i in range(owners)]

            def subscribe(i):
                r = self.http.put(f"{self.api}/v1/subscriptions", params={"replica": "aws"},
                                  headers={"Authorization": f"Bearer {tokens[i % owners]}"},
                                  json={"callback_url": receiver.url, "jmespath_query": query}, timeout=60)
                if r.status_code != 201:
                    raise RuntimeError(f"PUT /subscriptions answered {r.status_code}: {r.text[:300]}")

            start = time.perf_counter()
            with ThreadPoolExecutor(self.concurrency) as pool:
                list(pool.map(subscribe, range(subscriptions)))
            subscribing = time.perf_counter() - start
            data = json.dumps({"marker": marker, "kind": "bench"}).encode()
            file_uuid, file_version = self.put_file(self.stage("aws", data, content_type="application/json"))
            version = new_version()
            start = time.perf_counter()
            _, r = self.put_bundle([{"uuid": file_uuid, "version": file_version, "name": "bench_notify.json",
                                     "indexed": True}], version, timeout=60)
            put_seconds = time.perf_counter() - start
            assert r.status_code == 201, r.text[:300]
            receiver.wait(subscriptions, timeout=900)
            first, last = min(receiver.first_seen.values()) - start, max(receiver.first_seen.values()) - start
            return {"subscriptions": subscriptions, "owners": owners, "create subscriptions s": subscribing,
                    "PUT bundle s": put_seconds, "first delivered s": first, "all delivered s": last,
                    "notifications/s": subscriptions / last, "requests received": receiver.requests}
        finally:
            receiver.close()


class RepeatingReader(io.RawIOBase):
    """`size` bytes made of one block repeated: a large upload that never sits in memory."""

    def __init__(self, block: bytes, size: int):
        self.block, self.size, self.position = block, size, 0

    def readable(self):
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.size - self.position)
        offset = self.position % len(self.block)
        filled = 0
        while filled < n:
            take = min(n - filled, len(self.block) - offset)
            buffer[filled:filled + take] = self.block[offset:offset + take]
            filled += take
            offset = 0
        self.position += n
        return n


def _search_query(i: int) -> dict:
    """A mix of term and range queries on the fields of the bench's sample.json documents."""
    sample = "files.sample_json"
    kind = i % 4
    if kind == 0:
        return {"query": {"term": {f"{sample}.organ": ORGANS[i % len(ORGANS)]}}}
    if kind == 1:
        low = (i * 7) % 85
        return {"query": {"range": {f"{sample}.donor_age": {"gte": low, "lt": low + 5}}}}
    if kind == 2:
        low = (i * 1009) % 80_000
        return {"query": {"bool": {"must": [{"term": {f"{sample}.species": SPECIES[i % len(SPECIES)]}},
                                            {"range": {f"{sample}.cell_count": {"gte": low, "lt": low + 20_000}}}]}}}
    return {"query": {"bool": {"filter": [{"term": {f"{sample}.lab": f"lab-{i % 50}"}},
                                          {"range": {f"{sample}.donor_age": {"gte": 18}}}]}}}


class NotificationReceiver:
    """A subscriber on 127.0.0.1: answers 200 to everything and notes when each notification id first arrived."""

    def __init__(self):
        self.first_seen: dict[str, float] = {}
        self.requests = 0
        self.changed = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                notification = self.headers.get("X-DSS-Notification-Id", "")
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with receiver.changed:
                    receiver.requests += 1
                    receiver.first_seen.setdefault(notification, time.perf_counter())
                    receiver.changed.notify_all()

            do_PUT = do_POST

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 128
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/notify"

    def wait(self, count: int, timeout: float) -> None:
        """Until `count` distinct notification ids arrived."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(self.first_seen) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self.first_seen)} of {count} notifications arrived in {timeout} s")
                self.changed.wait(left)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


GROUPS = ("files", "bundles", "daemons", "load", "search", "lambda")


class Results:
    """Each section's figures, saved to `path` as soon as they are measured: a later failure loses none."""

    def __init__(self, path: pathlib.Path):
        self.path, self.figures, self.failed = path, {}, []
        path.parent.mkdir(parents=True, exist_ok=True)

    def measure(self, name: str, measurement) -> None:
        logger.warning("measuring %s", name)
        try:
            self.figures[name] = measurement()
        except Exception as e:  # the next sections still run; the error is in the results
            logger.exception("%s failed", name)
            self.figures[name] = {"error": f"{type(e).__name__}: {e}"}
            self.failed.append(name)
        self.save()
        self.show(name)

    def save(self) -> None:
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(self.figures, indent=2))
        partial.replace(self.path)  # readers see the previous whole file or this one, never half of one

    def show(self, name: str) -> None:
        print(f"{name}:", flush=True)
        for label, value in self.figures[name].items():
            shown = f"{value:10.2f}" if isinstance(value, (int, float)) else str(value)
            print(f"  {label:28s} {shown}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=300, help="operations per rate measurement")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads against the aws replica")
    parser.add_argument("--gcp-concurrency", type=int, default=8, help="client threads against the gcp replica")
    parser.add_argument("--large-mib", type=int, default=1024, help="size of the large ingest in MiB")
    parser.add_argument("--index-bundles", type=int, default=500, help="bundles indexed for the indexing throughput")
    parser.add_argument("--search-docs", type=int, default=100_000, help="documents searched for the search latency")
    parser.add_argument("--subscriptions", type=int, default=1000, help="subscriptions notified of one bundle")
    parser.add_argument("--load-clients", type=int, default=16, help="client threads writing in the load section")
    parser.add_argument("--load-seconds", type=float, default=120, help="how long the load section writes")
    parser.add_argument("--output", default=".bench/results.json")
    parser.add_argument("--only", nargs="*", choices=GROUPS, default=list(GROUPS),
                        help="which groups of figures to measure")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    results = Results(pathlib.Path(args.output))
    with tempfile.TemporaryDirectory(prefix="dss-bench-") as root:
        with LocalStack(pathlib.Path(root), ports=free_ports(PUBLIC_PORTS)) as stack:
            os.environ.update(stack.env())
            bench = Bench(stack, args.count, args.concurrency)
            measure = results.measure
            if "files" in args.only:
                for replica in ("aws", "gcp"):
                    bench.concurrency = args.concurrency if replica == "aws" else args.gcp_concurrency
                    measure(f"redirects {replica}", functools.partial(bench.redirects, replica))
                    measure(f"small PUTs {replica}", functools.partial(bench.small_puts, replica))
                bench.concurrency = args.concurrency
                measure("large ingest aws", lambda: bench.large_ingest_rss(args.large_mib * MiB))
            if "bundles" in args.only:
                measure("bundle PUT aws", bench.bundle_puts)
                measure("bundle paging aws", bench.bundle_paging)
                measure("bundles/all aws", bench.bundles_all)
            if "daemons" in args.only:
                measure("replication lag", bench.replication_lag)
                measure("replication lag large", bench.large_replication_lag)
                measure("large ingest 202 aws", lambda: bench.large_ingest_202(args.large_mib * MiB))
                measure("bundle checkout aws", bench.bundle_checkout)
            if "load" in args.only:
                measure("replication under load aws->gcp",
                        lambda: bench.replication_under_load(args.load_seconds, args.load_clients))
            if "lambda" in args.only:
                for replica in ("aws", "gcp"):
                    measure(f"lambda redirects {replica}", functools.partial(bench.lambda_redirects, replica))
            if "search" in args.only:
                measure("indexing aws", lambda: bench.index_throughput(args.index_bundles))
                measure("search latency aws", lambda: bench.search_latency(args.search_docs))
                measure("notifications aws", lambda: bench.notification_fanout(args.subscriptions))
    print(f"(count={args.count}, concurrency aws={args.concurrency} gcp={args.gcp_concurrency}; "
          f"saved to {args.output})")
    if results.failed:
        raise SystemExit(f"failed: {', '.join(results.failed)}")


if __name__ == "__main__":
    main()
