# shellcheck shell=bash
# Shared by run-sanity.sh and run-integration.sh (sourced, not run).
#
# ansible-test must run from inside .../ansible_collections/<namespace>/<name>/; the work tree
# is not laid out like that, and its .venv (with a symlink back to the repository) must stay
# out of ansible-test's view. stage_collection copies the collection's files -- tracked plus
# untracked-but-not-ignored, i.e. what the next commit would contain -- into a fresh
# temporary ansible_collections tree and sets STAGE_ROOT (the tmp dir) and STAGE_DIR (the copy).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.venv"
NAMESPACE=vmimages
COLLECTION=multistore

stage_log() { printf '%s: %s\n' "${STAGE_LOG_NAME:-stage}" "$*"; }

require_venv() {
    if [ ! -x "$VENV/bin/ansible-test" ]; then
        stage_log "ERROR: $VENV/bin/ansible-test not found: run 'make setup' first" >&2
        exit 1
    fi
    # ansible-test looks up python3.X and the ansible tools on PATH: the venv's come first.
    export PATH="$VENV/bin:$PATH"
    PYTHON_VERSION="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    export PYTHON_VERSION
}

stage_cleanup() {
    if [ -n "${STAGE_ROOT:-}" ] && [ -d "$STAGE_ROOT" ]; then
        if [ "${KEEP_STAGE:-0}" = 1 ]; then
            stage_log "kept staged copy: $STAGE_DIR"
        else
            rm -rf "$STAGE_ROOT"
        fi
    fi
}

stage_collection() {
    STAGE_ROOT="$(mktemp -d "${TMPDIR:-/tmp}/vmimages-multistore-test.XXXXXX")"
    STAGE_DIR="$STAGE_ROOT/ansible_collections/$NAMESPACE/$COLLECTION"
    mkdir -p "$STAGE_DIR"
    trap stage_cleanup EXIT

    if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        # --ignore-missing-args: tracked files deleted in the work tree are not copied
        (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard) |
            rsync -a --from0 --files-from=- --ignore-missing-args "$ROOT/" "$STAGE_DIR/"
    else
        rsync -a --exclude=/.venv --exclude=/.git --exclude=/tests/output \
            --exclude=__pycache__ --exclude=.pytest_cache "$ROOT/" "$STAGE_DIR/"
    fi
    stage_log "staged the collection in $STAGE_DIR"
}

# Copy ansible-test's results (tests/output) back to the work tree (git-ignored).
stage_collect_output() {
    if [ -d "$STAGE_DIR/tests/output" ]; then
        mkdir -p "$ROOT/tests/output"
        rsync -a "$STAGE_DIR/tests/output/" "$ROOT/tests/output/"
    fi
}

# Run `ansible-test SUBCOMMAND --local --python X.Y ARGS...` in the staged copy, collect its output,
# log the verdict and exit with ansible-test's status.
stage_run_ansible_test() {
    local subcommand="$1" start rc=0
    shift
    stage_log "ansible-test $subcommand --local --python $PYTHON_VERSION $*"
    start=$SECONDS
    (cd "$STAGE_DIR" && ansible-test "$subcommand" --local --python "$PYTHON_VERSION" "$@") || rc=$?
    stage_collect_output
    if [ "$rc" -eq 0 ]; then
        stage_log "PASSED in $((SECONDS - start))s"
    else
        stage_log "FAILED (exit $rc) in $((SECONDS - start))s"
    fi
    exit "$rc"
}
