#!/usr/bin/env bash
# Install the real `hca` command-line client (PyPI hca 8.0.0, the original DSS's main client) into its
# own virtualenv, so it can be pointed at the local DSS (see scripts/hca_local_config.py).
#
#     scripts/install_hca_cli.sh [VENV]        # default: $HCA_VENV, else .hca-venv in the project root
#
# Why its own virtualenv: hca needs PyJWT<2, the project uses PyJWT 2.
# Why not `pip install hca==8.0.0`: PyPI has only an sdist for 8.0.0, and its setup.py exits with
# "This repository has been deprecated" unless it is run as `setup.py bdist_wheel` (or sdist). So pip
# downloads and unpacks the sdist (and fails, by design), the unpacked tree is kept with --no-clean,
# the wheel is built with `setup.py bdist_wheel`, and it is installed without its stale pins
# (tenacity<5.1 cannot even be imported on Python 3.11) plus the set of dependencies that
# `hca dss upload/download/...` actually import, at versions tested with Python 3.11.
#
# Idempotent: a complete install leaves a stamp file (naming every pin) in the venv; a run that finds
# it, with the same pins and an importable hca, does nothing. Any other venv there (a failed run's, or
# one with other pins) is rebuilt from scratch.
# Uses the project's .venv/bin/uv when it exists (fast), else pip. Needs only PyPI.
set -euo pipefail

HCA_VERSION=8.0.0
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${1:-${HCA_VENV:-$ROOT/.hca-venv}}
case $VENV in /*) ;; *) VENV=$PWD/$VENV ;; esac
STAMP=$VENV/.hca-cli-installed
# Installed without its dependencies: it pins puremagic==1.4 and runs with the versions in DEPS.
DCPLIB="dcplib==2.1.2"

# Runtime dependencies of the `hca dss` paths (not hca's own requirements.txt: see above).
# google-auth, google-auth-oauthlib, Jinja2, jsonschema and gitdb2 are not imported by them.
DEPS=(
  "tweak==1.0.4"
  "requests==2.34.2"
  "urllib3==2.8.0"
  "requests-oauthlib==2.0.0"
  "oauthlib==4.0.1"
  "boto3==1.44.5"
  "botocore==1.44.5"
  "tenacity==9.2.1"
  "argcomplete==3.7.2"
  "docutils==0.23"
  "jsonpointer==3.12"
  "puremagic==1.30"
  "tqdm==4.70.1"
  "atomicwrites==1.4.1"
  "jmespath==1.1.0"
  "commonmark==0.9.2"
  "crc32c==2.9.post0"     # checksums computed by `hca dss upload`
  "PyJWT==1.7.1"          # only for GOOGLE_APPLICATION_CREDENTIALS auth; PyJWT 2 breaks it
  "cryptography==50.0.2"
)
# A change of version or pins makes the next run rebuild the venv.
STAMP_TEXT="hca==$HCA_VERSION $DCPLIB ${DEPS[*]}"

log() { echo "install_hca_cli: $*" >&2; }

installed() {
  [[ -f $STAMP && $(cat "$STAMP") == "$STAMP_TEXT" && -x $VENV/bin/hca ]] &&
    "$VENV/bin/python" -c "import hca, hca.dss, crc32c, tenacity" >/dev/null 2>&1
}

if installed; then
  log "hca $HCA_VERSION is already installed in $VENV"
  exit 0
fi

# One installer at a time per venv (make hca-cli and the test suite may race).
mkdir -p "$(dirname "$VENV")"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$VENV.lock"
  flock 9
  if installed; then
    log "hca $HCA_VERSION is already installed in $VENV"
    exit 0
  fi
fi

# The interpreter the venv is based on: $PYTHON, else the project's (Python 3.11), else python3.
PYTHON=${PYTHON:-}
if [[ -z $PYTHON ]]; then
  if [[ -x $ROOT/.venv/bin/python ]]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
UV=""
if [[ -x $ROOT/.venv/bin/uv ]]; then UV=$ROOT/.venv/bin/uv; fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/hca-cli-install.XXXXXX")
cleanup() { rm -rf "$TMP"; }
trap cleanup EXIT

started=$SECONDS

# A leftover of an interrupted install is rebuilt; refuse to delete anything that is not a venv.
if [[ -e $VENV ]]; then
  if [[ -f $VENV/pyvenv.cfg ]]; then
    log "rebuilding $VENV (no complete install with these pins)"
    rm -rf "$VENV"
  elif [[ -n $(ls -A "$VENV" 2>/dev/null) ]]; then
    log "$VENV exists and is not a virtualenv; choose another path (argument or HCA_VENV)"
    exit 1
  fi
fi

log "creating $VENV (from $PYTHON${UV:+, with uv})"
# Installer output goes to a log, shown only on failure: pip reports hca's stale pins as conflicts.
if [[ -n $UV ]]; then
  "$UV" venv --quiet --seed --python "$PYTHON" "$VENV"
  installer() { "$UV" pip install --quiet --python "$VENV/bin/python" "$@"; }
else
  "$PYTHON" -m venv "$VENV"
  installer() { "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@"; }
fi
venv_install() {
  installer "$@" >"$TMP/install.log" 2>&1 || {
    log "installing $* failed:"
    tail -n 40 "$TMP/install.log" >&2
    exit 1
  }
}
venv_install pip setuptools wheel

# Fetch and unpack the sdist. pip then fails on purpose (the deprecation guard in setup.py), so the
# exit code is ignored and success is judged by the unpacked tree being there.
log "fetching the hca $HCA_VERSION sdist"
TMPDIR=$TMP "$VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-clean --no-deps \
  --no-binary hca "hca==$HCA_VERSION" -d "$TMP/dl" >"$TMP/download.log" 2>&1 || true
SRC=""
for candidate in "$TMP"/pip-*/hca_*; do
  if [[ -f $candidate/setup.py && -d $candidate/hca ]]; then SRC=$candidate; break; fi
done
if [[ -z $SRC ]]; then
  # pip may also have kept the archive itself (e.g. from its cache); unpack that instead.
  archive=$(find "$TMP" -name "hca-$HCA_VERSION.tar.gz" -print -quit)
  if [[ -n $archive ]]; then
    mkdir -p "$TMP/src"
    tar -xzf "$archive" -C "$TMP/src"
    SRC=$TMP/src/hca-$HCA_VERSION
  fi
fi
if [[ -z $SRC || ! -f $SRC/setup.py ]]; then
  log "could not get the hca $HCA_VERSION sdist; pip said:"
  tail -n 30 "$TMP/download.log" >&2
  exit 1
fi
if ! grep -q "'$HCA_VERSION'" "$SRC/hca/version.py"; then
  log "unexpected sdist in $SRC (hca/version.py: $(cat "$SRC/hca/version.py"))"
  exit 1
fi

log "building the wheel"
(cd "$SRC" && "$VENV/bin/python" setup.py -q bdist_wheel >"$TMP/build.log" 2>&1) || {
  tail -n 30 "$TMP/build.log" >&2
  exit 1
}
WHEEL=$(find "$SRC/dist" -name "hca-$HCA_VERSION-*.whl" -print -quit)
[[ -n $WHEEL ]] || { log "no wheel in $SRC/dist"; exit 1; }

log "installing hca and its dependencies"
venv_install --no-deps "$WHEEL" "$DCPLIB"
venv_install "${DEPS[@]}"

"$VENV/bin/python" -c "import hca, hca.dss, crc32c, tenacity, jwt; assert jwt.__version__.startswith('1.')"
echo "$STAMP_TEXT" >"$STAMP"
log "installed hca $HCA_VERSION in $VENV in $((SECONDS - started)) s"
