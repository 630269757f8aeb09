"""The two replicas, each a blobstore with its primary, checkout and staging buckets."""
from __future__ import annotations

import enum
import functools
from dataclasses import dataclass

from ..config import Settings
from .blobstore import BlobStore


class Replica(str, enum.Enum):
    aws = "aws"
    gcp = "gcp"

    @property
    def scheme(self) -> str:
        return "s3" if self is Replica.aws else "gs"

    @classmethod
    def from_scheme(cls, scheme: str) -> "Replica":
        return {"s3": cls.aws, "gs": cls.gcp}[scheme]


@dataclass(frozen=True)
class ReplicaStore:
    replica: Replica
    store: BlobStore
    bucket: str
    checkout_bucket: str
    staging_bucket: str


class Replicas:
    """Builds each blobstore once, on first use, from the settings."""

    def __init__(self, settings: Settings):
        self.settings = settings

    @functools.cached_property
    def _s3(self) -> BlobStore:
        from .s3 import S3BlobStore
        return S3BlobStore(max_pool_connections=max(64, self.settings.bundle_lookup_concurrency))

    @functools.cached_property
    def _gcs(self) -> BlobStore:
        from .gcs import GCSBlobStore
        return GCSBlobStore(self.settings.gcp_project, self.settings.google_credentials,
                            emulator_host=self.settings.storage_emulator_host)

    @functools.cached_property
    def _announcing(self) -> dict:
        """Local stand-ins for the clouds' own write notifications (see dss.events.announce)."""
        from ..events.announce import AnnouncingStore
        from ..events.bus import Bus, Topology
        bus = Bus(Topology.from_settings(self.settings))
        return {Replica.aws: AnnouncingStore(self._s3, "aws", self.settings.s3_bucket, bus),
                Replica.gcp: AnnouncingStore(self._gcs, "gcp", self.settings.gs_bucket, bus)}

    def __getitem__(self, replica: Replica | str) -> ReplicaStore:
        replica = Replica(replica)
        s = self.settings
        if s.publish_write_events:
            store = self._announcing[replica]
        else:
            store = self._s3 if replica is Replica.aws else self._gcs
        if replica is Replica.aws:
            return ReplicaStore(replica, store, s.s3_bucket, s.s3_checkout_bucket, s.s3_staging_bucket)
        return ReplicaStore(replica, store, s.gs_bucket, s.gs_checkout_bucket, s.gs_staging_bucket)
