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

stage_run_ansible_test integration -v "$@"
