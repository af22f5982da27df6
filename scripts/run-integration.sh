#!/usr/bin/env bash
# Run the integration targets (tests/integration/targets/<name>/tasks/main.yml) with
# `ansible-test integration` on this host, on a staged copy of the collection.
#
#   scripts/run-integration.sh                    # every target
#   scripts/run-integration.sh store image        # only these targets
#   scripts/run-integration.sh --allow-destructive store   # options go to ansible-test too
#   KEEP_STAGE=1 scripts/run-integration.sh       # keep the staged copy for inspection
#
# `--local --python X.Y`: the targets run against localhost (connection local) with .venv's
# ansible and Python -- no Docker. Modules therefore run with .venv's Python, which sees
# Debian's system packages (python3-rbd, ...) through --system-site-packages.
# In each target's `aliases` file, put `context/target` (tests of modules; silences a warning)
# and e.g. `needs/root` or `destructive` where it applies.
set -euo pipefail

STAGE_LOG_NAME=integration
# shellcheck source=scripts/lib/stage.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/stage.sh"

# Runnable targets: tests/integration/targets/<name>/ with tasks/main.yml or runme.sh, except
# setup_* / prepare_* (helper targets that ansible-test only runs as dependencies of others).
runnable=0
for dir in "$ROOT"/tests/integration/targets/*/; do
    name="$(basename "$dir")"
    case "$name" in setup_* | prepare_*) continue ;; esac
    if [ -f "$dir/tasks/main.yml" ] || [ -f "$dir/runme.sh" ]; then
        runnable=$((runnable + 1))
    fi
done
if [ "$runnable" -eq 0 ]; then
    stage_log "no integration targets yet (tests/integration/targets/<name>/tasks/main.yml): nothing to run"
    exit 0
fi

require_venv
stage_collection

# Targets whose aliases say `needs/ceph` get a real single-node Ceph (tests/ceph/cephlab.py): started here
# (or reused from CEPH_LAB_DIR, e.g. `make ceph-up`), described to the targets in integration_config.yml
# as the variable `ceph` (cluster.json plus the path of cephlab.py), and stopped at the end.
# Targets with `needs/cinder` also get a real Cinder on that Ceph (tests/cinder/cinderlab.py, or CINDER_LAB_DIR's),
# described as the variable `cinder` (cinder.json plus the path of cinderlab.py).
wants_alias() {
    local alias="$1" dir name selected=()
    shift
    for arg in "$@"; do case "$arg" in -*) ;; *) selected+=("$arg") ;; esac; done
    for dir in "$ROOT"/tests/integration/targets/*/; do
        name="$(basename "$dir")"
        if [ "${#selected[@]}" -gt 0 ] && ! printf '%s\n' "${selected[@]}" | grep -qx "$name"; then continue; fi
        if grep -qx "$alias" "$dir/aliases" 2>/dev/null; then return 0; fi
    done
    return 1
}
wants_ceph() { wants_alias needs/ceph "$@" || wants_alias needs/cinder "$@"; }
wants_cinder() { wants_alias needs/cinder "$@"; }

CEPH_STARTED=""
CINDER_STARTED=""
# shellcheck disable=SC2317  # called by the EXIT trap
ceph_stop() {
    if [ -n "$CINDER_STARTED" ]; then
        stage_log "stopping the test Cinder in $CINDER_STARTED"
        python3 "$ROOT/tests/cinder/cinderlab.py" stop --dir "$CINDER_STARTED" --purge || true
    fi
    if [ -n "$CEPH_STARTED" ]; then
        stage_log "stopping the test Ceph in $CEPH_STARTED"
        python3 "$ROOT/tests/ceph/cephlab.py" stop --dir "$CEPH_STARTED" --purge || true
    fi
    stage_cleanup
}

if wants_ceph "$@"; then
    trap ceph_stop EXIT
    if [ -n "${CEPH_LAB_DIR:-}" ] && python3 "$ROOT/tests/ceph/cephlab.py" status --dir "$CEPH_LAB_DIR" >/dev/null 2>&1; then
        ceph_dir="$CEPH_LAB_DIR"
        stage_log "using the running Ceph in $ceph_dir"
    else
        python3 "$ROOT/tests/ceph/cephlab.py" install
        ceph_dir="$(mktemp -d "${TMPDIR:-/tmp}/vmimages-ceph-it.XXXXXX")"
        CEPH_STARTED="$ceph_dir"
        python3 "$ROOT/tests/ceph/cephlab.py" start --dir "$ceph_dir" >/dev/null
    fi
    cinder_json=""
    if wants_cinder "$@"; then
        if [ -n "${CINDER_LAB_DIR:-}" ] && python3 "$ROOT/tests/cinder/cinderlab.py" status --dir "$CINDER_LAB_DIR" >/dev/null 2>&1; then
            cinder_dir="$CINDER_LAB_DIR"
            stage_log "using the running Cinder in $cinder_dir"
        else
            python3 "$ROOT/tests/cinder/cinderlab.py" install
            cinder_dir="$(mktemp -d "${TMPDIR:-/tmp}/vmimages-cinder-it.XXXXXX")"
            CINDER_STARTED="$cinder_dir"
            python3 "$ROOT/tests/cinder/cinderlab.py" start --dir "$cinder_dir" --ceph-dir "$ceph_dir" >/dev/null
        fi
        cinder_json="$cinder_dir/cinder.json"
    fi
    python3 - "$ceph_dir/cluster.json" "$STAGE_DIR/tests/ceph/cephlab.py" "$STAGE_DIR/tests/integration/integration_config.yml" \
        "$cinder_json" "$STAGE_DIR/tests/cinder/cinderlab.py" <<'PY'
import json, sys
cluster = json.load(open(sys.argv[1]))
cluster['cephlab'] = sys.argv[2]
config = {'ceph': cluster}
if sys.argv[4]:
    config['cinder'] = dict(json.load(open(sys.argv[4])), cinderlab=sys.argv[5])
with open(sys.argv[3], 'w') as handle:
    json.dump(config, handle)  # JSON is YAML
PY
fi

stage_run_ansible_test integration -v "$@"
