#!/usr/bin/env bash
# Prepare this checkout for development and CI (what `make setup` runs).
#
#  1. Debian packages the modules and tests need (apt-get; needs root, uses sudo if not root).
#  2. .venv: a virtualenv made from Debian's /usr/bin/python3 with --system-site-packages
#     (Debian-only bindings such as python3-rbd stay importable), with the pinned packages
#     of requirements.txt / constraints.txt.
#  3. .venv/ansible_collections/vmimages/multistore -> ../../.. so that Ansible (through
#     ansible.cfg's collections_path) and Python find this collection without installing it.
#  4. .venv/oslo-inspector: a pinned oslo.utils for the tests only (its format_inspector, oslo.utils >= 7),
#     beside .venv's packages, never on their path (os-brick uses Debian's oslo.utils 6).
#
# Idempotent and fast when nothing changed: apt is skipped when every package is installed,
# pip is skipped when the requirements hash matches the stamp in .venv.
#
# Environment:
#   SKIP_APT=1     do not check/install Debian packages
#   PYTHON=...     interpreter to build the venv from (default /usr/bin/python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV=.venv
PYTHON="${PYTHON:-/usr/bin/python3}"
STAMP="$VENV/.requirements.sha256"

# Debian packages. Keep the list in one place; a new one here is installed on the next setup.
APT_PACKAGES=(
    git             # staging the collection for ansible-test (git ls-files)
    rsync           # staging the collection for ansible-test
    make
    python3         # the interpreter .venv is made from
    python3-venv    # venv + ensurepip (also used by ansible-test's per-test venvs)
    qemu-utils      # qemu-img: image conversion, inspection, demo image
    xorriso         # ISO images (config drives)
    genisoimage     # ISO images (config drives)
    xfsprogs        # XFS stores (reflink clones), xfs datablocks
    e2fsprogs       # ext4 datablocks (mkfs.ext4 on a sparse file), e2fsck in the tests
    cryptsetup-bin  # tests: real LUKS1 and LUKS2 volumes (luksFormat on a plain file), which imports refuse
    gdisk           # tests: real GPT disks (sgdisk on a plain file) for the partition table checks
    parted          # tests: real MBR disks (parted on a plain file)
    python3-cryptography # image signatures (the managed hosts' library; tests/unit/.../signatures runs against it too)
    attr            # getfattr/setfattr: extended attributes on file stores
    shellcheck      # ansible-test sanity "shellcheck" test
    openssh-client  # file stores on other hosts: bulk data over OpenSSH
    openssh-server  # sshd for the remote-store tests (started on loopback by the tests, never as a service)
    procps          # pgrep/ps for the test lab
    debootstrap       # tests/lab: Debian base of the lab hosts
    systemd-container # tests/lab: systemd-nspawn (--no-install-recommends: keeps nsswitch.conf as it is)
    zstd              # tests/lab: base image tarball
    iproute2          # tests/lab: ip/tc, network namespaces, bridges, veths
    ceph-mon          # tests/ceph: a real single-node Ceph (tests/ceph/cephlab.py)
    ceph-mgr          # tests/ceph
    ceph-osd          # tests/ceph: one bluestore OSD on a sparse file
    radosgw           # tests/ceph: S3 and Swift stores
    ceph-common       # ceph/rbd/rados CLIs, librbd for RBD stores
    python3-rbd       # RBD stores from Python (importable in .venv: --system-site-packages)
    python3-rados     # RBD stores from Python
    qemu-block-extra  # qemu-img rbd: driver
    python3-os-brick  # Cinder stores: volume data through os-brick's RBD connector (librbd, no kernel device)
    python3-cinderclient # Cinder stores: the volume API (v3, noauth or Keystone)
    # The Cinder services of the tests (cinder-api/-scheduler/-volume, rabbitmq-server, mariadb) are installed by
    # tests/cinder/cinderlab.py install, which keeps apt from starting them as system services.
    podman            # tests/ee: build the execution environment from a local base and run the demo in it
    runc              # tests/ee: the OCI runtime that works here (crun cannot set rlimits in this sandbox)
    netavark          # tests/ee: podman's network backend
)

log() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- 1. Debian packages
apt_missing() {
    local pkg status
    for pkg in "${APT_PACKAGES[@]}"; do
        status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
        [ "$status" = installed ] || printf '%s\n' "$pkg"
    done
}

if [ "${SKIP_APT:-0}" = 1 ]; then
    log "SKIP_APT=1: not checking Debian packages"
elif ! command -v dpkg-query >/dev/null 2>&1; then
    log "WARNING: not a Debian-like system (no dpkg-query); install these yourself: ${APT_PACKAGES[*]}"
else
    mapfile -t missing < <(apt_missing)
    if [ "${#missing[@]}" -eq 0 ]; then
        log "Debian packages present"
    else
        log "missing Debian packages: ${missing[*]}"
        SUDO=()
        if [ "$(id -u)" -ne 0 ]; then
            if command -v sudo >/dev/null 2>&1; then
                log "apt-get needs root: using sudo (you may be asked for your password)"
                SUDO=(sudo)
            else
                die "apt-get needs root and sudo is not available. As root, run:
    apt-get update && apt-get install -y --no-install-recommends ${missing[*]}
then run 'make setup' again (or SKIP_APT=1 make setup if you manage these packages yourself)."
            fi
        fi
        log "apt-get update && apt-get install ${missing[*]}"
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
        mapfile -t still < <(apt_missing)
        [ "${#still[@]}" -eq 0 ] || die "Debian packages still missing after apt-get: ${still[*]}"
    fi
fi

# ---------------------------------------------------------------- 2. virtualenv
[ -x "$PYTHON" ] || die "$PYTHON not found (install Debian's python3 and python3-venv)"

venv_ok() {
    # Made from $PYTHON's installation, with system site packages, and working.
    [ -x "$VENV/bin/python" ] && [ -f "$VENV/pyvenv.cfg" ] || return 1
    grep -Eq '^include-system-site-packages *= *true' "$VENV/pyvenv.cfg" || return 1
    local want have
    want="$("$PYTHON" -c 'import sys; print(sys.base_prefix, "%d.%d" % sys.version_info[:2])')"
    have="$("$VENV/bin/python" -c 'import sys; print(sys.base_prefix, "%d.%d" % sys.version_info[:2])' 2>/dev/null)" || return 1
    [ "$want" = "$have" ]
}

if ! venv_ok; then
    if [ -e "$VENV" ]; then
        log "$VENV is not a --system-site-packages venv of $PYTHON (or is broken): recreating it"
        rm -rf "$VENV"
    fi
    log "creating $VENV from $PYTHON (--system-site-packages)"
    "$PYTHON" -m venv --system-site-packages "$VENV"
fi

pip_opts=(--disable-pip-version-check --no-input)
[ -n "${CI:-}" ] && pip_opts+=(--progress-bar off)

req_hash="$(cat requirements.txt constraints.txt | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$req_hash" ]; then
    log "Python packages up to date ($VENV)"
else
    log "installing Python packages into $VENV (requirements.txt, constraints.txt)"
    rm -f "$STAMP"
    "$VENV/bin/python" -m pip install "${pip_opts[@]}" -q "$(grep -E '^pip==' requirements.txt)"
    "$VENV/bin/python" -m pip install "${pip_opts[@]}" -q -r requirements.txt
    printf '%s\n' "$req_hash" > "$STAMP"
fi

# ---------------------------------------------------------------- 3. collection symlink
link="$VENV/ansible_collections/vmimages/multistore"
target="../../.."   # relative to the link's directory: the repository root
if [ "$(readlink "$link" 2>/dev/null || true)" != "$target" ]; then
    mkdir -p "$(dirname "$link")"
    rm -rf "$link"
    ln -s "$target" "$link"
    log "linked $link -> $target"
fi
[ -f "$link/galaxy.yml" ] || die "$link does not resolve to the collection root"

# ---------------------------------------------------------------- 4. oslo.utils' format inspector (tests only)
# tests/unit/plugins/module_utils/formats/test_oslo_differential.py runs it in a subprocess with only this
# directory added to the path. --no-deps: what it imports besides itself (oslo.i18n) is Debian's.
OSLO_INSPECTOR="oslo.utils==10.2.0"
OSLO_DIR="$VENV/oslo-inspector"
if [ "$(cat "$OSLO_DIR/.pin" 2>/dev/null || true)" = "$OSLO_INSPECTOR" ]; then
    log "oslo.utils format inspector up to date ($OSLO_DIR)"
else
    log "installing $OSLO_INSPECTOR into $OSLO_DIR (tests only)"
    rm -rf "$OSLO_DIR"
    "$VENV/bin/python" -m pip install "${pip_opts[@]}" -q --no-deps --target "$OSLO_DIR" "$OSLO_INSPECTOR"
    printf '%s\n' "$OSLO_INSPECTOR" > "$OSLO_DIR/.pin"
fi

log "ready: ansible-core $("$VENV/bin/python" -c 'from ansible.release import __version__; print(__version__)') in $VENV"
