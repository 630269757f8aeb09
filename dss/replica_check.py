"""Anti-entropy between the replicas: walk both primary buckets in step, classify every key that disagrees, and
optionally repair it.

- The walk is a merge of the two sorted, paged listings under a prefix: one page of each in memory at a time.
- Each key is classified (see `Finding`):
  - `missing`: present in one replica only, in either direction;
  - `differs`: present in both but not the same. Blobs: size, and each copy's native checksum (S3 ETag, GCS
    crc32c) against the checksums in the blob's key, which tells the good copy from the bad one. Metadata: the
    bytes (or, failing that, the parsed JSON); metadata is immutable, so a difference is corruption and which
    side is right is a human's call;
  - `orphaned`: metadata whose dependency is absent in the same replica: a file's blob, a bundle's files, a
    collection's links;
  - `unreadable`: metadata that cannot be parsed, so its dependencies cannot be checked.
- Prefixes are walked in dependency order (blobs, files, bundles, collections), so a repair never waits on a
  dependency that a later part of the same walk would repair.

The comparison functions are pure; `ReplicaChecker` does the I/O. The operator command is scripts/check_replicas.py.
"""
from __future__ import annotations

import collections
import datetime
import itertools
import json
import logging
import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Iterator

from .checksums import BLOB_KEY_REGEX, checksums_from_blob_key
from .events.runtime import NotReady
from .identifiers import ObjectId, ObjectIdentifierError
from .replication import dependencies as replication_dependencies
from .replication import replicate_object
from .storage.blobstore import BlobNotFound
from .storage.replicas import Replicas, ReplicaStore

logger = logging.getLogger(__name__)

REPLICAS = ("aws", "gcp")
# Dependencies come first: a file needs its blob, a bundle its files, a collection its links.
KINDS_IN_DEPENDENCY_ORDER = ("blobs/", "files/", "bundles/", "collections/")

MISSING, DIFFERS, ORPHANED, UNREADABLE = "missing", "differs", "orphaned", "unreadable"
CONSISTENT, DIVERGED, YOUNG, IGNORED = "consistent", "diverged", "young", "ignored"
REPAIRED = "repaired"
# How deep a repair follows missing dependencies (collection -> bundle -> file -> blob, and a little more).
MAX_DEPENDENCY_DEPTH = 6


def other(replica: str | None) -> str:
    return "gcp" if replica == "aws" else "aws"


@dataclass
class Finding:
    """One divergence. `replica` is where it is wrong (missing on, bad copy on, orphan in; None when a difference
    cannot be attributed); `source` is a replica holding a good copy to repair from (None: no good copy known)."""
    cls: str
    key: str
    replica: str | None
    source: str | None
    detail: str
    dependency: str | None = None  # orphaned: the absent key the object needs
    repair: str | None = None  # with --repair: "repaired", or why not

    @property
    def direction(self) -> str:
        if self.cls == MISSING:
            return f"present on {other(self.replica)}, missing on {self.replica}"
        if self.cls == DIFFERS:
            return f"bad copy on {self.replica}" if self.replica else "undetermined"
        return f"in {self.replica}"

    @property
    def identity(self) -> tuple:
        return self.cls, self.key, self.replica, self.dependency

    def as_json(self) -> dict:
        document = {"class": self.cls, "direction": self.direction, **asdict(self)}
        del document["cls"]
        return {k: v for k, v in document.items() if v is not None}


@dataclass(frozen=True)
class Copy:
    """What a replica holds under a key: enough to compare it with the other replica's copy."""
    size: int
    native_checksum: str = ""
    checksum_name: str = ""  # "s3_etag" or "crc32c"
    body: bytes | None = None  # metadata objects only


@dataclass
class KeyReport:
    key: str
    status: str  # consistent | diverged | young | ignored
    findings: list[Finding] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------------
# Pure functions


def plan_prefixes(prefixes: Iterable[str]) -> list[str]:
    """The prefixes to walk: within the DSS kinds, without overlaps, in dependency order."""
    walk = set()
    for prefix in prefixes:
        for kind in KINDS_IN_DEPENDENCY_ORDER:
            if kind.startswith(prefix):
                walk.add(kind)  # "" or "b" covers whole kinds
            elif prefix.startswith(kind):
                walk.add(prefix)
    walk = {p for p in walk if not any(p != q and p.startswith(q) for q in walk)}
    return sorted(walk, key=lambda p: (_kind_rank(p), p))


def _kind_rank(prefix: str) -> int:
    return next(i for i, kind in enumerate(KINDS_IN_DEPENDENCY_ORDER) if prefix.startswith(kind))


def resume_plan(plan: list[str], last_key: str | None) -> list[tuple[str, str | None]]:
    """(prefix, start_after) pairs that continue a walk of `plan` after `last_key`."""
    if last_key is None:
        return [(p, None) for p in plan]
    for i, prefix in enumerate(plan):
        if last_key.startswith(prefix):
            return [(prefix, last_key)] + [(p, None) for p in plan[i + 1:]]
    raise ValueError(f"{last_key!r} is under none of the prefixes {plan}")


def merge_sorted(left: Iterable[str], right: Iterable[str]) -> Iterator[tuple[str, bool, bool]]:
    """(key, in_left, in_right) over two ascending key streams, in order, consuming each lazily."""
    left, right = _ascending(left, "left"), _ascending(right, "right")
    a, b = next(left, None), next(right, None)
    while a is not None or b is not None:
        if a is not None and (b is None or a < b):
            yield a, True, False
            a = next(left, None)
        elif b is not None and (a is None or b < a):
            yield b, False, True
            b = next(right, None)
        elif a is not None:  # the same key on both sides
            yield a, True, True
            a, b = next(left, None), next(right, None)


def _ascending(keys: Iterable[str], name: str) -> Iterator[str]:
    # A merge of unsorted listings would report everything as missing: refuse instead.
    previous = None
    for key in keys:
        if previous is not None and key <= previous:
            raise RuntimeError(f"the {name} listing is not in ascending order: {previous!r} then {key!r}")
        previous = key
        yield key


def key_kind(key: str) -> str | None:
    """"blob", "metadata", or None for keys the checker does not know (e.g. GCS `.partN` composite parts)."""
    if BLOB_KEY_REGEX.match(key):
        return "blob"
    try:
        ObjectId.from_key(key)
    except ObjectIdentifierError:
        return None
    return "metadata"


def blob_copy_problem(key: str, copy: Copy) -> str | None:
    """Why this copy of a blob is not the bytes its key names, or None."""
    expected = getattr(checksums_from_blob_key(key), copy.checksum_name)
    if copy.native_checksum == expected:
        return None
    return f"its {copy.checksum_name} is {copy.native_checksum or 'unknown'}, the key says {expected}"


def same_content(a: bytes, b: bytes) -> bool:
    if a == b:
        return True
    try:
        return json.loads(a) == json.loads(b)
    except ValueError:
        return False


def compare_copies(key: str, kind: str, copies: dict[str, Copy | None]) -> list[Finding]:
    """`missing` and `differs` findings for one key, from what each replica holds (None: absent)."""
    present = [r for r in REPLICAS if copies[r] is not None]
    problems = {r: blob_copy_problem(key, c) for r in present if (c := copies[r]) is not None} if kind == "blob" else {}
    if len(present) == 1:
        (have,) = present
        if problems.get(have):
            return [Finding(MISSING, key, other(have), None, f"the only copy, on {have}, is bad: {problems[have]}")]
        return [Finding(MISSING, key, other(have), have, f"present on {have} only")]
    if len(present) == 0:
        return []
    aws, gcp = copies["aws"], copies["gcp"]
    assert aws is not None and gcp is not None  # both present: the cases above took one or none
    if kind == "blob":
        bad = [r for r in REPLICAS if problems[r]]
        if len(bad) == 1:
            return [Finding(DIFFERS, key, bad[0], other(bad[0]), f"{bad[0]} copy: {problems[bad[0]]}")]
        if bad:
            return [Finding(DIFFERS, key, None, None, f"both copies are bad: aws {problems['aws']}; "
                                                       f"gcp {problems['gcp']}")]
        if aws.size != gcp.size:
            return [Finding(DIFFERS, key, None, None, f"sizes differ: aws {aws.size}, gcp {gcp.size}")]
        return []
    aws_body, gcp_body = aws.body or b"", gcp.body or b""  # a metadata copy always carries its bytes
    if not same_content(aws_body, gcp_body):
        return [Finding(DIFFERS, key, None, None,
                        f"contents differ (aws {len(aws_body)} bytes, gcp {len(gcp_body)} bytes)")]
    return []


def dependencies(key: str, body: bytes) -> list[str]:
    """The keys a metadata object needs in its own replica: the ones replication waits for. ValueError if the
    body cannot be read."""
    oid = ObjectId.from_key(key)
    try:
        return replication_dependencies(oid, body)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"not a {oid.kind} document: {type(e).__name__}: {e}") from e


def orphan_findings(key: str, replica: str, absent: list[str], elsewhere: dict[str, bool]) -> list[Finding]:
    """Findings for the dependencies `absent` from `replica`; `elsewhere[dep]`: the other replica has it."""
    return [Finding(ORPHANED, key, replica, other(replica) if elsewhere[dep] else None,
                    f"needs {dep}, absent from {replica}" + ("" if elsewhere[dep] else " and from the other replica"),
                    dependency=dep) for dep in absent]


@dataclass
class Summary:
    walked: int = 0
    consistent: int = 0
    young: int = 0
    ignored: int = 0
    findings: dict[str, int] = field(default_factory=dict)  # "class: direction" -> count
    repaired: int = 0
    remaining: int = 0

    def add(self, report: KeyReport) -> None:
        self.walked += 1
        self.consistent += report.status == CONSISTENT
        self.young += report.status == YOUNG
        self.ignored += report.status == IGNORED
        for f in report.findings:
            label = f"{f.cls}: {f.direction}"
            self.findings[label] = self.findings.get(label, 0) + 1
            if f.repair == REPAIRED:
                self.repaired += 1
            else:
                self.remaining += 1

    def lines(self) -> list[str]:
        lines = [f"{self.walked} keys walked: {self.consistent} consistent, {self.young} skipped as younger "
                 f"than --min-age, {self.ignored} foreign keys ignored"]
        lines += [f"  {n:>8}  {label}" for label, n in sorted(self.findings.items())]
        lines.append(f"{self.repaired} repaired, {self.remaining} divergences remain")
        return lines


# ---------------------------------------------------------------------------------------------------------------
# I/O


class RepairFailed(Exception):
    pass


def last_modified(rs: ReplicaStore, key: str) -> datetime.datetime | None:
    try:
        return rs.store.head(rs.bucket, key).modified
    except BlobNotFound:
        return None


def _ordered_map(fn: Callable, items: Iterable, workers: int) -> Iterator:
    """fn over items on a thread pool, results in input order, with a bounded number in flight."""
    window = workers * 4
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="replica-check") as pool:
        pending: collections.deque[Future] = collections.deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


class ReplicaChecker:
    """Compares (and with `repair`, reconciles) the two primary buckets.

    Repair writes through `replicate(source, dest, key)`, by default dss.replication.replicate_object with `deps`.
    """

    def __init__(self, replicas: Replicas, *, page_size: int = 1000, workers: int = 8, min_age: float = 0.0,
                 repair: bool = False, repair_metadata_from: str | None = None, deps=None,
                 replicate: Callable[[str, str, str], str] | None = None, clock: Callable[[], float] = time.time):
        self.sides = {r: replicas[r] for r in REPLICAS}
        self.page_size, self.workers, self.min_age, self.clock = page_size, workers, min_age, clock
        self.repair, self.repair_metadata_from = repair, repair_metadata_from
        if repair and replicate is None:
            def replicate(source, dest, key):
                return replicate_object(deps, source, dest, key)
        self._replicate_fn = replicate

    def walk(self, prefixes: Iterable[str], *, after: str | None = None, limit: int | None = None
             ) -> Iterator[KeyReport]:
        """One report per key under the prefixes, in walk order, continuing after the key `after`."""
        left = limit
        for prefix, start_after in resume_plan(plan_prefixes(prefixes), after):
            if left == 0:
                return
            keys = itertools.islice(self._merged(prefix, start_after), left)
            # Each prefix is done before the next begins, so dependencies are checked (and repaired) first.
            for report in _ordered_map(lambda item: self.check(*item), keys, self.workers):
                left = None if left is None else left - 1
                yield report

    def _merged(self, prefix: str, start_after: str | None) -> Iterator[tuple[str, bool, bool]]:
        listings = [self.sides[r].store.list(self.sides[r].bucket, prefix, start_after=start_after,
                                             page_size=self.page_size) for r in REPLICAS]
        return merge_sorted(*listings)

    def check(self, key: str, in_aws: bool = True, in_gcp: bool = True) -> KeyReport:
        """Compare one key (the flags say which listings held it), and repair it when asked."""
        kind = key_kind(key)
        if kind is None:
            return KeyReport(key, IGNORED)
        copies = self._observe(key, kind, {"aws": in_aws, "gcp": in_gcp})
        findings = self._findings(key, kind, copies)
        if not findings:
            return KeyReport(key, CONSISTENT)
        if self.min_age and self._age(key, copies) < self.min_age:
            return KeyReport(key, YOUNG)  # replication may still be in flight
        if self.repair:
            self._repair_all(key, kind, findings)
        return KeyReport(key, DIVERGED, findings)

    def _observe(self, key: str, kind: str, listed: dict[str, bool]) -> dict[str, Copy | None]:
        copies: dict[str, Copy | None] = {}
        for r in REPLICAS:
            rs = self.sides[r]
            try:
                if not listed[r]:
                    copies[r] = None
                elif kind == "blob":
                    info = rs.store.head(rs.bucket, key)
                    copies[r] = Copy(info.size, info.native_checksum, rs.store.native_checksum_name)
                else:
                    body = rs.store.get(rs.bucket, key)
                    copies[r] = Copy(len(body), body=body)
            except BlobNotFound:
                copies[r] = None  # deleted since it was listed
        return copies

    def _findings(self, key: str, kind: str, copies: dict[str, Copy | None]) -> list[Finding]:
        findings = compare_copies(key, kind, copies)
        if kind == "metadata":
            for r in REPLICAS:
                copy = copies[r]
                if copy is not None:
                    findings += self._orphans(key, r, copy.body or b"")
        return findings

    def _orphans(self, key: str, replica: str, body: bytes) -> list[Finding]:
        try:
            needed = dependencies(key, body)
        except ValueError as e:
            return [Finding(UNREADABLE, key, replica, None, f"cannot read its dependencies: {e}")]
        absent = [dep for dep in needed if not self._exists(replica, dep)]
        return orphan_findings(key, replica, absent, {dep: self._exists(other(replica), dep) for dep in absent})

    def _exists(self, replica: str, key: str) -> bool:
        rs = self.sides[replica]
        return rs.store.exists(rs.bucket, key)

    def _age(self, key: str, copies: dict[str, Copy | None]) -> float:
        """Seconds since the youngest copy was written; infinite when unknown (better a false alarm than a hidden
        divergence)."""
        times = [last_modified(self.sides[r], key) for r in REPLICAS if copies[r] is not None]
        known = [t.timestamp() for t in times if t is not None]
        return self.clock() - max(known) if known else math.inf

    # -- repair

    def _repair_all(self, key: str, kind: str, findings: list[Finding]) -> None:
        for f in findings:
            try:
                self._repair(f, kind)  # leaves f.repair unset: the fresh look below decides
            except RepairFailed as e:
                logger.info("%s (%s) not repaired: %s", key, f.cls, e)
                f.repair = f"failed: {e}"
            except Exception as e:  # one failed repair must not stop the walk; the report says why
                logger.warning("repair of %s (%s) failed", key, f.cls, exc_info=True)
                f.repair = f"failed: {type(e).__name__}: {e}"
        # Trust only what a fresh look shows.
        copies = self._observe(key, kind, {r: True for r in REPLICAS})
        still = {f.identity for f in self._findings(key, kind, copies)}
        for f in findings:
            if f.identity not in still:
                f.repair = REPAIRED
            elif f.repair is None:
                f.repair = "failed: still divergent after the repair"

    def _repair(self, f: Finding, kind: str) -> None:
        if f.cls == UNREADABLE:
            raise RepairFailed("report only: a human must look at it")
        if f.cls == DIFFERS and kind == "metadata":
            if not self.repair_metadata_from:
                raise RepairFailed("report only: metadata is immutable, so this is corruption; "
                                   "choose the good side with --repair-metadata-from")
            source = self.repair_metadata_from
            self._overwrite(source, other(source), f.key)
            return
        if f.source is None or f.replica is None:  # a finding with a source always names its replica
            raise RepairFailed("no good copy to repair from")
        if f.cls == MISSING:
            self._replicate(f.source, f.replica, f.key)
        elif f.cls == DIFFERS:
            self._overwrite(f.source, f.replica, f.key)
        elif f.cls == ORPHANED and f.dependency is not None:  # an orphan finding always names it
            self._replicate(f.source, f.replica, f.dependency)

    def _overwrite(self, source: str, dest: str, key: str) -> None:
        """Replace dest's copy with source's: replication is create-only, so the bad copy goes first."""
        rs = self.sides[dest]
        logger.info("replacing %s on %s with the copy on %s", key, dest, source)
        rs.store.delete(rs.bucket, key)
        self._replicate(source, dest, key)

    def _replicate(self, source: str, dest: str, key: str, depth: int = 0) -> None:
        replicate = self._replicate_fn
        if replicate is None:
            raise RepairFailed("this checker was not built to repair")
        try:
            outcome = replicate(source, dest, key)
        except NotReady as e:
            if depth >= MAX_DEPENDENCY_DEPTH:
                raise RepairFailed(f"{key}: dependencies nested too deep ({e})") from e
            self._replicate_dependencies(source, dest, key, depth)
            outcome = replicate(source, dest, key)
        if outcome not in ("copied", "present"):
            raise RepairFailed(f"replication of {key} from {source} to {dest} answered {outcome!r}")
        logger.info("%s: %s from %s to %s", key, outcome, source, dest)

    def _replicate_dependencies(self, source: str, dest: str, key: str, depth: int) -> None:
        rs = self.sides[source]
        for dep in dependencies(key, rs.store.get(rs.bucket, key)):
            if not self._exists(dest, dep):
                if not self._exists(source, dep):
                    raise RepairFailed(f"{key} needs {dep}, which is in neither replica")
                self._replicate(source, dest, dep, depth + 1)
