"""Replication (the dss-sync daemon): every object written to one replica's primary bucket is copied to the other.

- Order. A blob is copied at once; file metadata only once its blob is in the destination; a bundle manifest only
  once every file it lists is; a collection only once every object it links is; tombstones need nothing. A missing
  dependency raises NotReady and the message comes back later (and then looks at that dependency first), so a
  reader of a replica never sees a file without its blob, or a bundle without its files. One missing from the
  source replica too will never arrive: that is an error (retried, then dead-lettered).
- Idempotency and the echo loop. A key the destination already has is skipped (for a blob: if the size is right;
  a blob of the wrong size is overwritten). The copy's own write event, replicated back, stops there, after one
  look at the destination (the event gives the size to compare).
- No echoes of blobs and files on the local stack. There, a stand-in for the clouds' notifications announces
  every write (dss.events.announce); the announcement of a copied blob or file would only come back to this daemon,
  to be stopped, and to the indexer, which does not read it, while the local queue server pays for each message
  with a scan of the whole queue. So those copies are written unannounced; bundles and collections are announced
  (the other replica's indexer reads them).
- What this process copied, or found in a destination, is remembered (the last KNOWN_PRESENT_MAX keys): a file's
  blob or a bundle's files copied here a moment ago are not looked up again. DSS objects are immutable and never
  removed from a primary bucket, so a key once there stays there.
- A file whose small blob is not in the destination yet copies the blob itself, rather than wait for the blob's
  own message; a copy of the same blob already running in this process is waited for instead of made twice. A
  blob's message whose copy is already running in this process leaves it to that copy's message (which is retried
  if the copy fails).
- Copies are byte for byte (same bytes, content type and user metadata); metadata objects are written create-only.
- Blobs up to 1 MiB are read whole and checked before their one upload (a request each way, memory within
  SMALL_PUT_MAX per handler thread). Blobs up to 64 MiB are streamed in one upload. Larger ones go up in parallel
  parts (the dcplib part size, so an S3 destination's multipart ETag is the one in the blob key), a bounded number
  at a time, each part's bytes held once: memory stays within BUFFERED_PARTS parts per process, whatever the blob
  size.
- Verification, before the blob becomes visible: a streamed copy checks the sha256 of what it read before handing
  over the last byte (the upload fails instead of completing); a copy in parts checks that the store's checksums
  of the parts add up to the blob key's (S3 ETag, GCS crc32c) before assembling them. After, the destination's
  own checksum must equal the key's, or the copy is deleted. A failure fails the message (retried, then
  dead-lettered).
- Crash safety. The destination object is only ever created whole: an S3 multipart upload is invisible until
  completed, GCS parts are temporary objects `{key}.part{N}` composed at the end. A restarted copy resumes the
  parts a crashed one left (same upload, same part names) and removes them when done.
- One log line per replicated object, with its lag (REPLICATED_LINE parses it).
"""
from __future__ import annotations

import collections
import contextlib
import datetime
import hashlib
import io
import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .checksums import checksums_from_blob_key, s3_part_size
from .collections import linked_key
from .events.records import object_events, parse_time
from .events.runtime import NOT_READY_KEY, Deps, NotReady
from .identifiers import ObjectId, ObjectIdentifierError, file_key
from .storage.blobstore import BlobAlreadyExists, BlobInfo, BlobNotFound, BlobStore
from .storage.files import blob_key_of
from .storage.replicas import Replica, ReplicaStore

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
SMALL_PUT_MAX = MiB  # blobs up to this size are read whole and written in one request
SMALL_BLOB_MAX = 64 * MiB  # larger blobs are copied in parallel parts
STREAM_CHUNK = 8 * MiB  # reads are streamed in chunks of this size
PART_CONCURRENCY = 4  # parts of one blob in flight at once
BUFFERED_PARTS = 4  # part buffers alive in this process, over every copy: memory <= BUFFERED_PARTS x part size
BLOB_WAIT_SECONDS = 60.0  # at most this long for a copy of a file's blob running in this process
DEPENDENCY_BATCH = 32  # dependencies looked up at once; the lookup stops at the first batch with a missing one
NOT_READY_MAX_DELAY = 60
WAITING_FOR_KEY = "_waiting_for"  # in a re-queued message: {key: the dependency it waits for}

COPIED, PRESENT, SKIPPED = "copied", "present", "skipped"
OTHER = {"aws": "gcp", "gcp": "aws"}
REPLICATED_LINE = re.compile(r"replicated (?P<source>aws|gcp)->(?P<dest>aws|gcp) (?P<key>\S+) "
                             r"lag=(?P<lag>-?[0-9.]+)s bytes=(?P<bytes>\d+)")

_buffers = threading.BoundedSemaphore(BUFFERED_PARTS)
# Blob copies running in this process, by (destination, key): a second copy of the same blob waits for the first.
_blob_copies: dict[tuple[str, str], threading.Event] = {}
_blob_copies_lock = threading.Lock()
KNOWN_PRESENT_MAX = 10_000
_known_present: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()
_known_present_lock = threading.Lock()


class ReplicationError(Exception):
    """A copy that cannot succeed as things are: the message fails, is retried, and is dead-lettered in the end."""


class DependencyMissing(NotReady):
    """An object the key needs is not in the destination yet."""

    def __init__(self, key: str, dependency: str, reason: str):
        super().__init__(reason)
        self.key, self.dependency = key, dependency


# --- the queue handler ---------------------------------------------------------------------------------------

def handle_message(body: dict, deps: Deps) -> None:
    """Replicate what one message names: object events of either cloud, or an operator's
    `{"source_replica", "dest_replica", "key"}`.

    NotReady if a dependency has yet to arrive: the runtime re-sends this very `body`, to which the dependency is
    added (WAITING_FOR_KEY), so that the next delivery first looks at that one object, and nothing else while it
    is still missing.
    """
    failure: Exception | None = None
    not_ready: DependencyMissing | None = None
    waiting = body.setdefault(WAITING_FOR_KEY, {}) if isinstance(body, dict) else {}
    for source, dest, key, event_time, size in _jobs(body, deps):
        try:
            blocker = waiting.pop(key, None)
            if blocker and not _exists(deps.replicas[dest], blocker):
                raise DependencyMissing(key, blocker, f"{key} still waits for {blocker} to reach {dest}")
            replicate_object(deps, source, dest, key, event_time=event_time, event_size=size)
        except DependencyMissing as e:
            waiting[key] = e.dependency
            not_ready = not_ready or e
        except Exception as e:  # the others of the message still go; the first failure fails the message
            logger.warning("replication %s->%s of %s failed: %s", source, dest, key, e)
            failure = failure or e
    if failure is not None:
        raise failure
    if not_ready is not None:
        attempts = int(body.get(NOT_READY_KEY, 0))
        raise NotReady(str(not_ready), retry_after=min(NOT_READY_MAX_DELAY, 2 ** attempts))


def _jobs(body: dict, deps: Deps) -> list[tuple[str, str, str, str | None, int | None]]:
    """(source replica, destination replica, key, event time, size) of each object the message names."""
    if "source_replica" in body:
        return [(body["source_replica"], body["dest_replica"], body["key"], None, None)]
    jobs: list[tuple[str, str, str, str | None, int | None]] = []
    for event in object_events(body):
        if event.bucket != deps.replicas[event.replica].bucket:
            logger.info("skipped %s/%s: not the primary bucket of %s", event.bucket, event.key, event.replica)
            continue
        jobs.append((event.replica, OTHER[event.replica], event.key, event.event_time, event.size))
    if not jobs:
        logger.info("no object to replicate in %.200s", json.dumps(body))
    return jobs


# --- one object ----------------------------------------------------------------------------------------------

def replicate_object(deps: Deps, source_replica: str, dest_replica: str, key: str, *,
                     event_time: str | None = None, event_size: int | None = None) -> str:
    """Copy `key` of the source replica's primary bucket to the destination's, once its dependencies are there.

    `event_size`, the size a write event gave, lets a blob the destination has with that size be skipped without
    a look at the source (the echo of a copy).

    Returns "copied", "present" (the destination had it) or "skipped" (not a DSS object). Raises NotReady
    (DependencyMissing) while a dependency is missing in the destination, ReplicationError when the copy cannot be
    made or verified.
    """
    source, dest = Replica(source_replica), Replica(dest_replica)
    if source is dest:
        raise ValueError(f"cannot replicate {key} from {source.value} to itself")
    is_blob = key.startswith("blobs/")
    if is_blob and checksums_from_blob_key(key) is None:
        return _skipped(key, "not a blob key (a temporary part?)")
    if not is_blob:
        try:
            oid = ObjectId.from_key(key)
        except ObjectIdentifierError:
            return _skipped(key, "not a DSS object")
    src, dst = deps.replicas[source], deps.replicas[dest]
    started = time.monotonic()
    if is_blob:
        # A small blob the event sized is looked for once in the destination (a large one may have parts to clear).
        looked = event_size is not None and event_size <= SMALL_BLOB_MAX
        if event_size is not None and looked and _has_blob(dst, key, event_size):
            _remember(dst, key)
            return PRESENT
        info = _head_source(src, key)
        if not _copy_blob_once(src, dst, key, info, wait=False, missing=looked and info.size == event_size):
            return PRESENT
    else:
        if _exists(dst, key):
            _remember(dst, key)
            return PRESENT
        info = _head_source(src, key)
        data = src.store.get(src.bucket, key)
        _check_dependencies(src, dst, key, oid, data)
        try:
            _writer(dst, key).put(dst.bucket, key, data, create_only=True, metadata=info.metadata,
                                  content_type=info.content_type or "application/octet-stream")
        except BlobAlreadyExists:
            _remember(dst, key)
            return PRESENT
    _remember(dst, key)
    _log_copied(src, dst, key, info, event_time, started)
    return COPIED


def _log_copied(src: ReplicaStore, dst: ReplicaStore, key: str, info: BlobInfo, event_time: str | None,
                started: float) -> None:
    logger.info("replicated %s->%s %s lag=%.3fs bytes=%d took=%.3fs", src.replica.value, dst.replica.value, key,
                _lag(event_time, info), info.size, time.monotonic() - started)


def _writer(dst: ReplicaStore, key: str) -> BlobStore:
    """The store a copy of `key` is written through: blobs and files without the local write announcements (see
    the module's doc); the store itself where there are none (the clouds)."""
    if key.startswith(("blobs/", "files/")):
        return getattr(dst.store, "unannounced", dst.store)
    return dst.store


def _skipped(key: str, why: str) -> str:
    logger.debug("skipped %s: %s", key, why)
    return SKIPPED


def _head_source(src: ReplicaStore, key: str) -> BlobInfo:
    try:
        return src.store.head(src.bucket, key)
    except BlobNotFound:
        raise ReplicationError(f"{key} is not in the source replica {src.replica.value}") from None


def _lag(event_time: str | None, info: BlobInfo) -> float:
    moment = parse_time(event_time) if event_time else info.modified
    if moment is None:
        return 0.0
    return (datetime.datetime.now(datetime.timezone.utc) - moment).total_seconds()


# --- dependencies --------------------------------------------------------------------------------------------

def dependencies(oid: ObjectId, data: bytes) -> list[str]:
    """The keys that must be in the destination before this object may be."""
    if oid.tombstone:
        return []
    document = json.loads(data)
    if oid.kind == "files":
        return [blob_key_of(document)]
    if oid.kind == "bundles":
        keys = [file_key(entry["uuid"], entry["version"]) for entry in document["files"]]
    else:
        keys = []
        for item in document.get("contents", []):
            try:
                keys.append(linked_key(item))
            except (KeyError, ObjectIdentifierError):
                continue  # a link that names no object cannot be waited for
    return list(dict.fromkeys(keys))


def _check_dependencies(src: ReplicaStore, dst: ReplicaStore, key: str, oid: ObjectId, data: bytes) -> None:
    """Return if every dependency is in the destination; else DependencyMissing, or ReplicationError for one
    that is missing in the source too (it will never arrive)."""
    missing = _missing_in_first_batch(dst, [k for k in dependencies(oid, data) if not _known(dst, k)])
    if missing and oid.kind == "files" and _copy_small_blob_first(src, dst, missing[0]):
        return
    if missing:
        lost = _missing_in_first_batch(src, missing)
        if lost:
            raise ReplicationError(f"{key} needs {lost[0]}, which is missing in the source replica "
                                   f"{src.replica.value} as well")
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise DependencyMissing(key, missing[0], f"{key} waits for {missing[0]}{more} to reach {dst.replica.value}")


def _copy_small_blob_first(src: ReplicaStore, dst: ReplicaStore, blob_key: str) -> bool:
    """A file's event comes right after its blob's, whose copy is likely queued or running: copy a small blob
    here (or wait for the copy running in this process) rather than send the file's message round again. True if
    the blob is in the destination now. A large one is left to its own message."""
    started = time.monotonic()
    try:
        info = src.store.head(src.bucket, blob_key)
    except BlobNotFound:
        return False
    if info.size > SMALL_BLOB_MAX:
        return False
    if _copy_blob_once(src, dst, blob_key, info, wait=True, missing=True):
        _log_copied(src, dst, blob_key, info, None, started)
    return True


def _exists(rs: ReplicaStore, key: str) -> bool:
    return rs.store.exists(rs.bucket, key)


def _remember(rs: ReplicaStore, key: str) -> None:
    """Note that `key` is in rs (bounded: the oldest notes go first)."""
    with _known_present_lock:
        _known_present[(rs.replica.value, key)] = None
        _known_present.move_to_end((rs.replica.value, key))
        while len(_known_present) > KNOWN_PRESENT_MAX:
            _known_present.popitem(last=False)


def _known(rs: ReplicaStore, key: str) -> bool:
    with _known_present_lock:
        return (rs.replica.value, key) in _known_present


def _missing_in_first_batch(rs: ReplicaStore, keys: list[str]) -> list[str]:
    """The keys missing in rs from the first batch of DEPENDENCY_BATCH that has any; [] if none is missing."""
    if not keys:
        return []
    if len(keys) == 1:
        return [] if _exists(rs, keys[0]) else keys
    with ThreadPoolExecutor(max_workers=min(DEPENDENCY_BATCH, len(keys)), thread_name_prefix="sync-deps") as pool:
        for start in range(0, len(keys), DEPENDENCY_BATCH):
            batch = keys[start:start + DEPENDENCY_BATCH]
            present = list(pool.map(lambda k: _exists(rs, k), batch))
            missing = [k for k, there in zip(batch, present, strict=True) if not there]
            if missing:
                return missing
    return []


# --- blobs ---------------------------------------------------------------------------------------------------

def _has_blob(dst: ReplicaStore, key: str, size: int) -> bool:
    try:
        return dst.store.head(dst.bucket, key).size == size
    except BlobNotFound:
        return False


def _copy_blob_once(src: ReplicaStore, dst: ReplicaStore, key: str, source: BlobInfo, *, wait: bool,
                    missing: bool = False) -> bool:
    """Copy a blob unless the destination has it (`missing`: the caller just found it has not); False if it had
    (or a racer copied it). A copy of the same blob running in this process is not repeated: False at once, or
    with `wait`, once it is over (and the blob is there; if that copy failed, this one is made after all)."""
    slot = (dst.replica.value, key)
    with _blob_copies_lock:
        running = _blob_copies.get(slot)
        if running is None:
            _blob_copies[slot] = done = threading.Event()
    if running is not None:
        if not wait:
            return False
        if not running.wait(BLOB_WAIT_SECONDS):
            raise DependencyMissing(key, key, f"a copy of {key} to {dst.replica.value} is still running")
        return _copy_blob_once(src, dst, key, source, wait=wait)  # most likely False: it is there now
    try:
        copied = (missing or _needs_blob(dst, key, source)) and _copy_blob(src, dst, key, source)
        _remember(dst, key)  # copied here, or there already
        return copied
    finally:
        with _blob_copies_lock:
            del _blob_copies[slot]
        done.set()


def _needs_blob(dst: ReplicaStore, key: str, source: BlobInfo) -> bool:
    try:
        existing = dst.store.head(dst.bucket, key)
    except BlobNotFound:
        return True
    if existing.size != source.size:
        logger.warning("%s in %s has %d bytes, not %d: copying it again", key, dst.replica.value, existing.size,
                       source.size)
        return True
    if source.size > SMALL_BLOB_MAX:
        dst.store.discard_parts(dst.bucket, key)  # a crash between assembling the parts and removing them
    return False


def _copy_blob(src: ReplicaStore, dst: ReplicaStore, key: str, source: BlobInfo) -> bool:
    """Copy a blob, verified before it becomes visible, and checked again once it is. False: a racing copy of the
    same blob (a duplicated event) finished first."""
    checksums = checksums_from_blob_key(key)
    if checksums is None:
        raise ValueError(f"{key} is not a blob key")
    expected = getattr(checksums, dst.store.native_checksum_name)
    try:
        if source.size <= SMALL_BLOB_MAX:
            written = _stream_copy(src, dst, key, source, checksums.sha256)
        else:
            written = _parts_copy(src, dst, key, source, expected)
    except BlobNotFound:  # the shared upload or parts were taken away, by the racer that completed them
        if _needs_blob(dst, key, source):
            raise
        return False
    if (written.size, written.native_checksum) != (source.size, expected):
        dst.store.delete(dst.bucket, key)
        raise ReplicationError(
            f"{key} in {dst.replica.value} failed verification: {written.size} bytes with "
            f"{dst.store.native_checksum_name} {written.native_checksum}, expected {source.size} bytes with "
            f"{expected}; the copy was deleted")
    return True


def _stream_copy(src: ReplicaStore, dst: ReplicaStore, key: str, source: BlobInfo, sha256: str) -> BlobInfo:
    """One upload, streamed. The stream checks the sha256 of what it read before it hands over the last byte, so a
    wrong copy is never completed."""
    content_type = source.content_type or "application/octet-stream"
    if source.size <= SMALL_PUT_MAX:
        return _small_copy(src, dst, key, source, sha256, content_type)
    stream = _VerifyingStream(src.store.open(src.bucket, key, STREAM_CHUNK) if source.size else iter(()),
                              size=source.size, sha256=sha256, what=f"{key} from {src.replica.value}")
    # An S3 upload in one part has the plain-MD5 ETag that the key holds; GCS takes it in resumable chunks.
    part_size = s3_part_size(source.size) if dst.store.scheme == "s3" else STREAM_CHUNK
    # S3 uploads buffer up to a part: count a large one against the part buffers.
    with _buffers if source.size > STREAM_CHUNK else contextlib.nullcontext():
        return _writer(dst, key).upload(dst.bucket, key, stream, size=source.size, part_size=part_size,
                                content_type=content_type, metadata=source.metadata)


def _small_copy(src: ReplicaStore, dst: ReplicaStore, key: str, source: BlobInfo, sha256: str,
                content_type: str) -> BlobInfo:
    """One GET, one PUT: the bytes are checked before the upload starts, so a wrong copy is never made."""
    data = src.store.get(src.bucket, key)
    digest = hashlib.sha256(data).hexdigest()
    if (len(data), digest) != (source.size, sha256):
        raise ReplicationError(f"{key} from {src.replica.value} failed verification: read {len(data)} bytes with "
                               f"sha256 {digest}, expected {source.size} bytes with {sha256}")
    return _writer(dst, key).put(dst.bucket, key, data, content_type=content_type, metadata=source.metadata)


def _parts_copy(src: ReplicaStore, dst: ReplicaStore, key: str, source: BlobInfo, expected: str) -> BlobInfo:
    part_size = s3_part_size(source.size)
    ranges = [(number, start, min(start + part_size, source.size) - 1)
              for number, start in enumerate(range(0, source.size, part_size), 1)]
    upload = dst.store.start_parts(dst.bucket, key, content_type=source.content_type or "application/octet-stream",
                                   metadata=source.metadata)
    reused = [upload.uploaded[n] for n, first, last in ranges
              if n in upload.uploaded and upload.uploaded[n].size == last - first + 1]
    todo = [r for r in ranges if r[0] not in {p.number for p in reused}]
    logger.info("copying %s->%s %s: %d bytes in %d parts (%d there already)", src.replica.value,
                dst.replica.value, key, source.size, len(ranges), len(reused))

    def copy_part(part):
        number, first, last = part
        with _buffers:
            buffer = bytearray(last - first + 1)
            filled = 0
            for chunk in src.store.open(src.bucket, key, STREAM_CHUNK, start=first, end=last):
                buffer[filled:filled + len(chunk)] = chunk
                filled += len(chunk)
            if filled != len(buffer):
                raise ReplicationError(f"{key}: part {number} read {filled} bytes of {len(buffer)}")
            return dst.store.upload_part(upload, number, buffer)

    with ThreadPoolExecutor(max_workers=max(1, min(PART_CONCURRENCY, len(todo))),
                            thread_name_prefix="sync-part") as pool:
        parts = sorted(reused + list(pool.map(copy_part, todo)), key=lambda p: p.number)
    # The store's checksums of the parts tell what the assembled object's will be: check before it exists.
    assembled = dst.store.assembled_checksum(parts)
    if assembled != expected:
        dst.store.discard_parts(dst.bucket, key)
        raise ReplicationError(f"{key} failed verification: its parts in {dst.replica.value} add up to "
                               f"{dst.store.native_checksum_name} {assembled}, not {expected}; they were discarded")
    return _writer(dst, key).complete_parts(upload, parts)


class _VerifyingStream(io.RawIOBase):
    """A forward-only file over an iterator of byte chunks that must add up to `size` bytes with this sha256.

    The check is made before the last byte is handed over (and at the end of the chunks): an upload reading this
    stream fails before it completes, rather than leave a wrong object behind.
    """

    def __init__(self, chunks, *, size: int, sha256: str, what: str):
        self._chunks, self._pending, self._position = iter(chunks), memoryview(b""), 0
        self._size, self._sha256, self._what, self._digest = size, sha256, what, hashlib.sha256()

    def readable(self):
        return True

    def tell(self):
        return self._position

    def readinto(self, buffer):
        filled = 0  # a read returns all it asks for, but at the end: chunked uploads need whole chunks
        while filled < len(buffer):
            if not self._pending:
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._pending = memoryview(chunk)
            n = min(len(buffer) - filled, len(self._pending))
            buffer[filled:filled + n] = self._pending[:n]
            self._digest.update(self._pending[:n])
            self._pending = self._pending[n:]
            filled += n
        self._position += filled
        if self._position >= self._size or not filled:
            self._verify()  # before the last bytes are handed over
        return filled

    def _verify(self):
        digest = self._digest.hexdigest()
        if (self._position, digest) != (self._size, self._sha256) or self._pending or next(self._chunks, None):
            raise ReplicationError(f"{self._what} failed verification: read {self._position}+ bytes with sha256 "
                                   f"{digest}, expected {self._size} bytes with {self._sha256}")
