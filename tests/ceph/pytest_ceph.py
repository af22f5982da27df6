# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pytest plugin: a real single-node Ceph (tests/ceph/cephlab.py) for the tests.

Fixtures:
    ceph_cluster   session: dict of DIR/cluster.json (keys: cephlab.CLUSTER_KEYS). When the environment
                   variable CEPH_LAB_DIR names a directory holding a running healthy cluster (`make ceph-up`),
                   that one is used and left running; otherwise the Debian packages are installed when
                   missing, a cluster is started in a fresh temporary directory and stopped and removed at
                   the end of the session (CEPH_LAB_KEEP=1 keeps the directory). When Ceph cannot start the
                   fixture FAILS with the reason: these are real-component tests, never skipped.
    ceph_lab       session: the CephLab object behind ceph_cluster (.cluster, .dir, .rgw_stopped(), ...)
    rgw_down       function: radosgw of the cluster is stopped during the test, started again after it;
                   yields the ceph_cluster dict.
Helpers (import them): rgw_stopped(cluster) and osd_stopped(cluster) context managers, ceph_cmd(cluster, *args) (admin `ceph`
CLI with --conf and the admin keyring of the cluster).
Marker: `ceph` (registered in pytest_configure; pytest.ini runs with --strict-markers).

Loading it. tests/ceph/conftest.py does it for tests/ceph. Any other test directory: a conftest.py with

    from tests.ceph.pytest_ceph import ceph_cluster, ceph_lab, pytest_configure, rgw_down
    __all__ = ['ceph_cluster', 'ceph_lab', 'pytest_configure', 'rgw_down']   # "used": no linter complains

(the repository root must be importable: `python -m pytest` from the root does that; conftest.py of
tests/ceph shows how to add it otherwise), or `pytest -p tests.ceph.pytest_ceph`, or
`pytest_plugins = ['tests.ceph.pytest_ceph']` in the top-level tests/conftest.py. Whatever the way,
one session starts at most one cluster (state kept on pytest's config, not in this module).
"""

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

__all__ = ['pytest_configure', 'ceph_lab', 'ceph_cluster', 'rgw_down', 'rgw_stopped', 'osd_stopped', 'ceph_cmd', 'CephLab',
           'CEPHLAB']

CEPHLAB = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'cephlab.py')
# attribute on pytest's config holding the session's CephLab (or the reason it failed)
_CONFIG_ATTR = '_vmimages_ceph_lab'


def pytest_configure(config):
    config.addinivalue_line('markers', 'ceph: uses a real single-node Ceph cluster (tests/ceph/cephlab.py, '
                                       'fixture ceph_cluster; root to install packages)')


def _cephlab_module():
    spec = importlib.util.spec_from_file_location('_vmimages_cephlab', CEPHLAB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _python():
    # cephlab.py is stdlib only; Debian's python also has the rados bindings, but they are not needed
    return sys.executable or '/usr/bin/python3'


def cephlab(*args, timeout=600):
    """Run cephlab.py; a CalledProcessError-free result: (returncode, stdout, stderr)."""
    try:
        res = subprocess.run([_python(), CEPHLAB] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        return 124, e.stdout or '', 'cephlab.py %s: timed out after %d s\n%s' % (' '.join(args), timeout,
                                                                                 e.stderr or '')
    return res.returncode, res.stdout, res.stderr


def _check(args, timeout=600):
    rc, out, err = cephlab(*args, timeout=timeout)
    if rc != 0:
        raise RuntimeError('cephlab.py %s failed (exit %d):\n%s%s' % (' '.join(args), rc, out, err))
    return out


def ceph_cmd(cluster, *args, check=True, timeout=60):
    """`ceph --conf … --name client.admin --keyring … ARGS` of this cluster; CompletedProcess (text)."""
    cmd = ['ceph', '--conf', cluster['conf'], '--name', 'client.admin', '--keyring', cluster['admin_keyring'],
           '--connect-timeout', '15'] + list(args)
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout, check=check)


@contextlib.contextmanager
def rgw_stopped(cluster):
    """radosgw of `cluster` (a ceph_cluster dict) is stopped inside the block, started (and answering) after."""
    _check(['rgw-stop', '--dir', cluster['dir']], timeout=60)
    try:
        yield cluster
    finally:
        _check(['rgw-start', '--dir', cluster['dir']], timeout=180)


@contextlib.contextmanager
def osd_stopped(cluster):
    """The (only) OSD of `cluster` is stopped inside the block: I/O to the pools blocks; started (HEALTH_OK) after."""
    _check(['osd-stop', '--dir', cluster['dir']], timeout=120)
    try:
        yield cluster
    finally:
        _check(['osd-start', '--dir', cluster['dir'], '--timeout', '300'], timeout=400)


class CephLab:
    """One cluster of cephlab.py: started here (owned) or reused from CEPH_LAB_DIR (not owned)."""

    def __init__(self, directory, owned):
        self.dir = directory
        self.owned = owned
        with open(os.path.join(directory, 'cluster.json')) as f:
            self.cluster = json.load(f)

    @classmethod
    def reuse(cls, directory):
        """The cluster in `directory` when it runs healthy, else None."""
        if not os.path.exists(os.path.join(directory, 'cluster.json')):
            return None
        rc, _out, _err = cephlab('status', '--dir', directory, timeout=120)
        if rc != 0:
            return None
        return cls(directory, owned=False)

    @classmethod
    def start_new(cls):
        if not shutil.which('dpkg-query') or _cephlab_module().missing_packages():
            _check(['install'], timeout=1200)
        directory = tempfile.mkdtemp(prefix='vmimages-ceph-')
        try:
            _check(['start', '--dir', directory], timeout=900)
            return cls(directory, owned=True)
        except Exception:
            cls._teardown(directory)
            raise

    @staticmethod
    def _teardown(directory):
        keep = os.environ.get('CEPH_LAB_KEEP') == '1'
        rc, out, err = cephlab('stop', '--dir', directory, *([] if keep else ['--purge']), timeout=300)
        if rc != 0:
            sys.stderr.write('cephlab.py stop --dir %s failed:\n%s%s' % (directory, out, err))
            if not keep:
                shutil.rmtree(directory, ignore_errors=True)

    def close(self):
        if self.owned:
            self._teardown(self.dir)

    def rgw_stopped(self):
        return rgw_stopped(self.cluster)


def _session_lab(config):
    lab = getattr(config, _CONFIG_ATTR, None)
    if lab is None:
        try:
            lab = None
            env_dir = os.environ.get('CEPH_LAB_DIR')
            if env_dir:
                lab = CephLab.reuse(os.path.abspath(env_dir))
                if lab is None:
                    sys.stderr.write('CEPH_LAB_DIR=%s holds no running healthy cluster: starting a fresh one\n'
                                     % env_dir)
            if lab is None:
                lab = CephLab.start_new()
                config.add_cleanup(lab.close)
        except Exception as e:  # remembered: one failed start per session, not one per test
            lab = 'Ceph test cluster could not start: %s' % e
        setattr(config, _CONFIG_ATTR, lab)
    if isinstance(lab, str):
        pytest.fail(lab, pytrace=False)
    return lab


@pytest.fixture(scope='session')
def ceph_lab(request):
    return _session_lab(request.config)


@pytest.fixture(scope='session')
def ceph_cluster(ceph_lab):
    return ceph_lab.cluster


@pytest.fixture
def rgw_down(ceph_cluster):
    with rgw_stopped(ceph_cluster):
        yield ceph_cluster
