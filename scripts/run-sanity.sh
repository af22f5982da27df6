#!/usr/bin/env bash
# Run `ansible-test sanity` on a staged copy of the collection, without Docker.
#
#   scripts/run-sanity.sh                       # all sanity tests below
#   scripts/run-sanity.sh --test pylint         # extra arguments go to ansible-test sanity
#   KEEP_STAGE=1 scripts/run-sanity.sh          # keep the staged copy for inspection
#
# How it runs without Docker: `--local` uses .venv's ansible-test and Python; ansible-test then
# makes one small virtualenv per sanity test under ~/.ansible/test/venv/ (cached, keyed by the
# pinned requirements of that test) and pip-installs the versions it pins from PyPI. The pip
# bootstrap script it would download from Ansible's CI file server (unreachable here) is
# replaced by scripts/ansible-test-get-pip.py, put where ansible-test looks for it first.
#
# Only the Python of .venv (Debian's python3, 3.11 on Debian 12) is tested: `--python X.Y`.
#
# Skipped tests (each needs something this environment cannot have):
#   pslint  -- PSScriptAnalyzer needs PowerShell (pwsh), not packaged by Debian; the
#              collection has no PowerShell code anyway.
# Every other test runs; `shellcheck` needs Debian's shellcheck (installed by make setup).
set -euo pipefail

STAGE_LOG_NAME=sanity
# shellcheck source=scripts/lib/stage.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/stage.sh"

SKIP_TESTS=(pslint)

install_pip_bootstrap() {
    # ansible-test wants ~/.ansible/test/cache/get_pip_<pip version>.py
    local version cache
    version="$("$VENV/bin/python" - <<'EOF'
import os, re, ansible_test
path = os.path.join(os.path.dirname(ansible_test.__file__), '_internal', 'python_requirements.py')
with open(path) as f:
    match = re.search(r"default_packages = dict\(\s*pip='([0-9.]+)'", f.read())
print(match.group(1) if match else '')
EOF
)"
    if [ -z "$version" ]; then
        stage_log "WARNING: could not find the pip version ansible-test bootstraps; it may try to download get-pip.py"
        return 0
    fi
    cache="$HOME/.ansible/test/cache/get_pip_${version//./_}.py"
    mkdir -p "$(dirname "$cache")"
    # Keep a real get-pip.py if someone put one there; refresh our stand-in when it changed.
    if [ ! -f "$cache" ] || { grep -q 'vmimages-multistore-get-pip' "$cache" && ! cmp -s "$ROOT/scripts/ansible-test-get-pip.py" "$cache"; }; then
        cp "$ROOT/scripts/ansible-test-get-pip.py" "$cache"
    fi
}

require_venv
install_pip_bootstrap
stage_collection

skip_args=()
for test in "${SKIP_TESTS[@]}"; do
    skip_args+=(--skip-test "$test")
done

stage_run_ansible_test sanity "${skip_args[@]}" "$@"
