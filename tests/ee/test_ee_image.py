# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build the execution environment image here and run the demo playbook inside it.

    .venv/bin/python -m pytest tests/ee/test_ee_image.py     (part of make ee; root; ~2-3 min warm)
    VMIMAGES_EE_IMAGE=0 ...                                  skip it

No container registry is reachable here, so the public base image of execution-environment.yml is
replaced, through the build argument EE_BASE_IMAGE, by a Debian bookworm base made locally
(debootstrap --variant=minbase, `podman import`, cached in ~/.cache/vmimages-multistore-ee and in
podman's storage). Three more differences from a normal build, all in a derived copy of the
definition (the committed file is unchanged):

* Galaxy is not reachable: the collections the roles use (ansible.posix, community.*) are left out;
  this collection is installed from its tarball as in the real build, and the demo needs nothing else.
* ansible-builder's scripts call `$PKGMGR install -y ...` / `$PKGMGR clean all` (dnf): the local base
  has a small apt wrapper for that (build argument PKGMGR), and pip from Debian's python3-pip
  (options.skip_pip_install: Debian disables ensurepip for the system python).
* This machine's HTTPS trust anchors are copied into the local base, so that pip and apt inside the
  build reach the same registries as the host (the build shares the host's network).

This machine's kernel sandbox also needs: `podman build --isolation chroot` (crun refuses the hybrid
cgroup hierarchy), and for `podman run` the runc runtime with explicit, lower ulimits (the defaults
podman asks for are refused with EPERM). meta/README-ee.md has the details and a normal machine's commands.
"""

import glob
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)

pytestmark = [
    pytest.mark.skipif(os.environ.get('VMIMAGES_EE_IMAGE', '1') == '0', reason='VMIMAGES_EE_IMAGE=0'),
    pytest.mark.skipif(not hasattr(os, 'geteuid') or os.geteuid() != 0, reason='needs root (rootful podman)'),
]

HOST_PACKAGES = ('podman', 'runc', 'netavark', 'debootstrap')
BASE_PACKAGES = ('python3', 'python3-pip', 'python3-venv', 'ca-certificates')
# Bump when the base recipe below changes (part of the cache key).
BASE_RECIPE = 1
IMAGE = 'localhost/vmimages-multistore-ee:test'
PKGMGR = '/usr/local/sbin/apt-as-dnf'
APT_AS_DNF = r'''#!/bin/sh
# The dnf subset ansible-builder's scripts run, with apt: $PKGMGR install -y [options] PACKAGES; $PKGMGR clean all
set -e
export DEBIAN_FRONTEND=noninteractive
cmd="$1"; shift
case "$cmd" in
  install)
    pkgs=""
    for arg in "$@"; do case "$arg" in -*) ;; *) pkgs="$pkgs $arg" ;; esac; done
    apt-get update -qq
    exec apt-get install -y -qq --no-install-recommends $pkgs ;;
  clean)
    apt-get clean; rm -rf /var/lib/apt/lists/* ;;
  *) echo "apt-as-dnf: unsupported command: $cmd" >&2; exit 1 ;;
esac
'''
# The kernel sandbox here refuses podman's default rlimits (EPERM) and crun's hybrid-cgroup mode.
RUN_OPTS = ['--runtime', 'runc', '--ulimit', 'nofile=4096:4096', '--ulimit', 'nproc=4096:4096']
BUILD_OPTS = ['--isolation', 'chroot', '--network', 'host']


def log(msg):
    sys.stderr.write('ee-image: %s\n' % msg)


def run(argv, timeout=900, check=True, **kwargs):
    started = time.time()
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          timeout=timeout, check=False, **kwargs)
    log('%s: exit %d in %.0f s' % (' '.join(argv[:3]), proc.returncode, time.time() - started))
    if check:
        assert proc.returncode == 0, '%s failed (exit %d):\n%s' % (' '.join(argv), proc.returncode, proc.stdout[-6000:])
    return proc


def cache_dir():
    return os.environ.get('EE_CACHE') or os.path.join(os.path.expanduser('~'), '.cache', 'vmimages-multistore-ee')


def lab_module():
    """tests/lab/lab.py (its apt source lookup: the Debian mirror this machine's apt uses)."""
    spec = importlib.util.spec_from_file_location('vmimages_lab', os.path.join(REPO, 'tests', 'lab', 'lab.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def install_host_packages():
    missing = [pkg for pkg in HOST_PACKAGES
               if subprocess.run(['dpkg-query', '-W', '-f=${db:Status-Status}', pkg], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, universal_newlines=True, check=False).stdout != 'installed']
    if not missing:
        return
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    cmd = ['apt-get', 'install', '-y', '-q', '--no-install-recommends'] + missing
    if run(cmd, env=env, check=False).returncode != 0:
        run(['apt-get', 'update', '-q'], env=env)
        run(cmd, env=env)


def trust_anchors():
    """This machine's locally added CA certificates (update-ca-certificates' input)."""
    return sorted(glob.glob('/usr/local/share/ca-certificates/**/*.crt', recursive=True))


def base_tag():
    digest = hashlib.sha256(json.dumps({'packages': sorted(BASE_PACKAGES), 'recipe': BASE_RECIPE,
                                        'shim': APT_AS_DNF}, sort_keys=True).encode())
    for path in trust_anchors():
        with open(path, 'rb') as handle:
            digest.update(handle.read())
    return 'localhost/vmimages-ee-base:bookworm-%s' % digest.hexdigest()[:12]


def build_base_tarball(tarball):
    lab = lab_module()
    mirror, keyring = lab.debian_mirror()
    work = tempfile.mkdtemp(prefix='build-', dir=os.path.dirname(tarball))
    root = os.path.join(work, 'root')
    try:
        cmd = ['debootstrap', '--variant=minbase', '--components=main', '--include=' + ','.join(BASE_PACKAGES)]
        if keyring:
            cmd.append('--keyring=' + keyring)
        run(cmd + ['bookworm', root, mirror], timeout=1800)
        for path in trust_anchors():
            shutil.copy(path, os.path.join(root, 'usr/local/share/ca-certificates', os.path.basename(path)))
        run(['chroot', root, 'update-ca-certificates'])
        shim = os.path.join(root, PKGMGR.lstrip('/'))
        with open(shim, 'w') as handle:
            handle.write(APT_AS_DNF)
        os.chmod(shim, 0o755)
        for pattern in ('var/lib/apt/lists/*_*', 'var/cache/apt/*.bin', 'var/cache/apt/archives/*.deb'):
            for path in glob.glob(os.path.join(root, pattern)):
                os.unlink(path)
        run(['tar', '--numeric-owner', '-C', root, '-cf', tarball + '.tmp', '.'])
        os.rename(tarball + '.tmp', tarball)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ensure_base():
    """The local stand-in for the public base image: in podman's storage, else from the cached
    tarball, else debootstrapped (~3 min)."""
    tag = base_tag()
    if run(['podman', 'image', 'exists', tag], check=False).returncode == 0:
        return tag
    os.makedirs(cache_dir(), exist_ok=True)
    tarball = os.path.join(cache_dir(), 'base-%s.tar' % tag.rsplit(':', 1)[1])
    if not os.path.isfile(tarball):
        for stale in glob.glob(os.path.join(cache_dir(), 'base-bookworm-*.tar')):
            os.unlink(stale)
        build_base_tarball(tarball)
    # pip from Debian's python3-pip uses the system CA store; the pip that ansible-builder may
    # install uses its own unless told
    run(['podman', 'import', '--change', 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt',
         '--change', 'CMD ["/bin/bash"]', tarball, tag])
    return tag


def local_definition(ee_dir):
    """execution-environment.yml as committed, less what cannot be had here (see the module doc)."""
    with open(os.path.join(REPO, 'execution-environment.yml')) as handle:
        definition = yaml.safe_load(handle)
    galaxy = definition['dependencies']['galaxy']
    galaxy['collections'] = [c for c in galaxy['collections'] if c.get('type') == 'file']
    definition.setdefault('options', {})['skip_pip_install'] = True
    with open(os.path.join(ee_dir, 'execution-environment.yml'), 'w') as handle:
        yaml.safe_dump(definition, handle, sort_keys=False)


@pytest.fixture(scope='module')
def ee_image(tmp_path_factory):
    install_host_packages()
    base = ensure_base()
    ee_dir = str(tmp_path_factory.mktemp('ee-image'))
    os.makedirs(os.path.join(ee_dir, 'meta'))
    os.makedirs(os.path.join(ee_dir, 'build'))
    for name in ('ee-requirements.txt', 'ee-bindep.txt'):
        shutil.copy(os.path.join(REPO, 'meta', name), os.path.join(ee_dir, 'meta'))
    env = {k: v for k, v in os.environ.items() if not k.startswith('ANSIBLE_COLLECTIONS_PATH')}
    env.pop('ANSIBLE_CONFIG', None)
    run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'build', '--output-path', os.path.join(ee_dir, 'build'),
         REPO], env=env, cwd=ee_dir)
    local_definition(ee_dir)
    run([os.path.join(BIN, 'ansible-builder'), 'create', '-c', 'context'], cwd=ee_dir, env=env)
    started = time.time()
    proc = run(['podman', 'build'] + BUILD_OPTS + RUN_OPTS[2:] + [
        '--build-arg', 'EE_BASE_IMAGE=' + base, '--build-arg', 'PKGMGR=' + PKGMGR,
        '-f', 'context/Containerfile', '-t', IMAGE, 'context'], cwd=ee_dir, timeout=1200, check=False)
    with open(os.path.join(ee_dir, 'build.log'), 'w') as handle:
        handle.write(proc.stdout)
    assert proc.returncode == 0, 'podman build failed (exit %d):\n%s' % (proc.returncode, proc.stdout[-6000:])
    log('image %s built in %.0f s' % (IMAGE, time.time() - started))
    # intermediate stages of earlier builds (the final image keeps the base stage's layers cached)
    run(['podman', 'image', 'prune', '-f'], check=False)
    return IMAGE


def podman_run(image, *argv, **kwargs):
    mounts = []
    for name in kwargs.pop('mount', ()):
        # /runner/project/<name>, as AWX lays out a project (the mount points make /runner/project)
        mounts += ['-v', '%s:/runner/project/%s:ro' % (os.path.join(REPO, name), name), '-w', '/runner/project']
    return run(['podman', 'run', '--rm', '--network', 'none'] + RUN_OPTS + mounts + [image] + list(argv),
               timeout=600, check=False)


def test_image_has_the_collection_and_its_dependencies(ee_image):
    script = ('set -e; id -u; ansible --version | head -n1; ansible-runner --version; '
              'ansible-galaxy collection list vmimages.multistore; '
              'python3 -c "import rbd, rados, boto3, botocore, swiftclient, requests, paramiko, cryptography; print(\'imports ok\')"; '
              'for c in qemu-img rbd ceph ssh mkfs.ext4 mkfs.xfs xorriso genisoimage ip; do command -v $c; done')
    proc = podman_run(ee_image, 'sh', '-c', script)
    assert proc.returncode == 0, proc.stdout
    out = proc.stdout
    assert out.splitlines()[0].strip() == '1000', out    # AWX runs the EE as a non-root user
    assert 'vmimages.multistore' in out and '/usr/share/ansible/collections' in out, out
    assert 'imports ok' in out, out


def test_demo_playbook_runs_in_the_image(ee_image):
    """The embedded demo, as AWX would run a project's playbook: the EE's own collection, no network."""
    proc = podman_run(ee_image, 'ansible-playbook', '-i', 'inventories/local', 'playbooks/demo.yml',
                      mount=('playbooks', 'inventories'))
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert 'byte-identical: True' in proc.stdout, proc.stdout[-6000:]
    recap = [line for line in proc.stdout.splitlines() if line.startswith('localhost ')]
    assert recap and 'failed=0' in recap[-1], proc.stdout[-3000:]
