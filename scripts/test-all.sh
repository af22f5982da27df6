#!/usr/bin/env bash
# `make test`: everything CI checks, in order, with a summary.
#
#   setup        scripts/setup.sh (idempotent; a failure here stops everything)
#   labs         one real Ceph and one real Cinder on it for every suite below (CEPH_LAB_DIR, CINDER_LAB_DIR):
#                started once, stopped and purged at the end (a suite whose lab is not healthy starts its own)
#   unit         pytest tests/unit (the rbd/s3/swift tests start a real single-node Ceph for the session)
#   faults       pytest tests/faults: kill -9 of real playbooks at a sample of points, concurrent playbooks, full disks
#   integration  ansible-test integration (scripts/run-integration.sh; starts a Ceph for needs/ceph targets)
#   lab          pytest tests/lab + molecule (nspawn hosts)
#   ceph         pytest tests/ceph: the Ceph lab itself and the store_host role's Ceph client set-up
#   cinder       pytest tests/cinder: the Cinder lab itself (volumes through cinderclient and os-brick, faults) and
#                the store_host role with a cinder store
#   ee           pytest tests/ee: the AWX execution environment (ansible-builder create, EE dependencies)
#   runner       pytest tests/runner: playbooks under ansible-runner (as AWX runs jobs), the AWX credential types
#   sanity       ansible-test sanity (scripts/run-sanity.sh)
#   lint         ansible-lint + antsibull-changelog lint
#
# Every suite runs even when an earlier one failed; the exit status is non-zero if any failed.
# Each suite's output is also written to tests/output/logs/<suite>.log.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1

MAKE="${MAKE:-make}"
LOGDIR="$ROOT/tests/output/logs"
SUITES=(unit faults integration lab ceph cinder ee runner sanity lint)

declare -A status seconds
banner() { printf '\n==================== %s ====================\n' "$*"; }

run_suite() {
    local name="$1"; shift
    local start=$SECONDS rc
    banner "$name"
    mkdir -p "$LOGDIR"
    "$@" 2>&1 | tee "$LOGDIR/$name.log"
    rc=${PIPESTATUS[0]}
    seconds[$name]=$((SECONDS - start))
    if [ "$rc" -eq 0 ]; then status[$name]=PASSED; else status[$name]="FAILED (exit $rc)"; fi
    return "$rc"
}

total_start=$SECONDS
if ! run_suite setup "$MAKE" --no-print-directory setup; then
    banner summary
    echo "setup failed: no test was run (see above)"
    echo "make test: FAILED"
    exit 1
fi

# One Ceph and one Cinder for all the suites (each would otherwise start its own: about a minute apiece).
LABS_DIR="$(mktemp -d "${TMPDIR:-/tmp}/vmimages-test-labs.XXXXXX")"
stop_labs() {
    python3 "$ROOT/tests/cinder/cinderlab.py" stop --dir "$LABS_DIR/cinder" --purge >/dev/null 2>&1 || true
    python3 "$ROOT/tests/ceph/cephlab.py" stop --dir "$LABS_DIR/ceph" --purge >/dev/null 2>&1 || true
    rm -rf "$LABS_DIR"
}
trap stop_labs EXIT
start_labs() {
    python3 tests/ceph/cephlab.py install &&
        python3 tests/ceph/cephlab.py start --dir "$LABS_DIR/ceph" &&
        python3 tests/cinder/cinderlab.py install &&
        python3 tests/cinder/cinderlab.py start --dir "$LABS_DIR/cinder" --ceph-dir "$LABS_DIR/ceph"
}
if run_suite labs start_labs; then
    export CEPH_LAB_DIR="$LABS_DIR/ceph" CINDER_LAB_DIR="$LABS_DIR/cinder"
fi

for suite in "${SUITES[@]}"; do
    # SETUP= : setup already ran above, do not repeat it for every suite
    run_suite "$suite" "$MAKE" --no-print-directory "$suite" SETUP=
done

# pytest's own closing line, to show in the summary
unit_detail="$(grep -E '^=+ .*(passed|failed|error|no tests ran).* =+$' "$LOGDIR/unit.log" 2>/dev/null | tail -n1 | sed -E 's/^=+ //; s/ =+$//')"

banner summary
passed=0
failed=0
failed_names=()
for suite in setup labs "${SUITES[@]}"; do
    detail=""
    [ "$suite" = unit ] && [ -n "$unit_detail" ] && detail="  ($unit_detail)"
    printf '  %-12s %-18s %5ss%s\n' "$suite" "${status[$suite]}" "${seconds[$suite]}" "$detail"
    if [ "${status[$suite]}" = PASSED ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        failed_names+=("$suite")
    fi
done
printf '  %-12s %-18s %5ss\n' total "" "$((SECONDS - total_start))"
# the failed tests by name (pytest's -ra summary lines), so that a red run says what to look at
for log in "$LOGDIR"/*.log; do
    grep -E '^(FAILED|ERROR) [^ ]+::' "$log" 2>/dev/null | head -n 20 | sed "s|^|  $(basename "$log" .log): |"
done
echo "logs: tests/output/logs/"
if [ "$failed" -eq 0 ]; then
    echo "make test: PASSED"
else
    echo "make test: FAILED (${failed_names[*]})"
fi
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
