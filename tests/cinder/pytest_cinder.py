# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pytest plugin: a real OpenStack Cinder (tests/cinder/cinderlab.py) on the session's Ceph cluster.

Fixtures:
    cinder_cloud        session: dict of DIR/cinder.json (keys: cinderlab.CINDER_KEYS), on the cluster of the
                        `ceph_cluster` fixture (tests/ceph/pytest_ceph.py). When CINDER_LAB_DIR names a directory
                        holding a running Cinder lab of that same cluster (`make cinder-up`), that one is used and
                        left running; otherwise the Debian packages are installed when missing, a lab is started in
                        a fresh temporary directory (pools and Ceph client named cinder-XXXXXX, so it never meets
                        another lab's) and stopped and purged at the end of the session (CINDER_LAB_KEEP=1 keeps
                        the directory). When Cinder cannot start the fixture FAILS with the reason: never skipped.
                        CINDER_LAB_DIR set and CEPH_LAB_DIR not: CEPH_LAB_DIR becomes the lab's Ceph directory.
    cinder_lab          session: the CinderCloud object behind cinder_cloud
    rabbitmq_down       function: RabbitMQ of the lab is stopped during the test, started again after it (and
                        waited for: services up, an RPC round trip to the scheduler works); yields cinder_cloud
    cinder_volume_down  function: the same for cinder-volume (both back ends)
Helpers (import them): rabbitmq_stopped(cloud) and cinder_volume_stopped(cloud) context managers,
cinder_api(cloud, method, path, body=None) -> (status, JSON body), cinder_client(cloud) (python3-cinderclient's
v3 client with the noauth plugin), rbd_connector() (os-brick's RBDConnector without a local attach).
Marker: `cinder` (and `ceph`: pytest_configure registers both).

Loading it: tests/cinder/conftest.py does it for tests/cinder. Any other test directory: a conftest.py with

    from tests.ceph.pytest_ceph import ceph_cluster, ceph_lab, rgw_down
    from tests.cinder.pytest_cinder import (cinder_cloud, cinder_lab, cinder_volume_down, pytest_configure,
                                            rabbitmq_down)

(the repository root importable, as tests/ceph/conftest.py shows). One session starts at most one lab.
"""

import contextlib
import functools
import importlib
import importlib.util
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.ceph import pytest_ceph

__all__ = ['pytest_configure', 'cinder_lab', 'cinder_cloud', 'rabbitmq_down', 'cinder_volume_down',
           'rabbitmq_stopped', 'cinder_volume_stopped', 'cinder_api', 'cinder_client', 'rbd_connector',
           'CinderCloud', 'CINDERLAB']

CINDERLAB = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'cinderlab.py')
_CONFIG_ATTR = '_vmimages_cinder_lab'


def pytest_configure(config):
    pytest_ceph.pytest_configure(config)
    config.addinivalue_line('markers', 'cinder: uses a real OpenStack Cinder on the Ceph test cluster '
                                       '(tests/cinder/cinderlab.py, fixture cinder_cloud; root to install packages)')
    # Debian's OpenStack libraries, imported by cinderclient and os-brick, on Python 3.11
    for module in ('webob.compat', 'eventlet.support.greenlets'):
        config.addinivalue_line('filterwarnings', 'ignore::DeprecationWarning:%s' % module)
    lab_dir = os.environ.get('CINDER_LAB_DIR')
    if lab_dir and not os.environ.get('CEPH_LAB_DIR'):
        # the lab to reuse runs on a cluster of its own: have the Ceph plugin reuse that one
        with contextlib.suppress(OSError, ValueError, KeyError):
            with open(os.path.join(lab_dir, 'cinder.json')) as f:
                os.environ['CEPH_LAB_DIR'] = json.load(f)['ceph_dir']


@functools.lru_cache(maxsize=None)
def cinderlab_module():
    spec = importlib.util.spec_from_file_location('_vmimages_cinderlab', CINDERLAB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_cinderlab(*args, timeout=600):
    """(returncode, stdout, stderr) of cinderlab.py ARGS (stdlib only: this interpreter runs it)."""
    cmd = [sys.executable or '/usr/bin/python3', CINDERLAB] + list(args)
    try:
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                             check=False)
    except subprocess.TimeoutExpired as e:
        return 124, e.stdout or '', 'cinderlab.py %s: timed out after %d s\n%s' % (' '.join(args), timeout, e.stderr or '')
    return res.returncode, res.stdout, res.stderr


def _must(*args, timeout=600):
    rc, out, err = run_cinderlab(*args, timeout=timeout)
    if rc != 0:
        raise RuntimeError('cinderlab.py %s failed (exit %d):\n%s%s' % (' '.join(args), rc, out, err))
    return out


@contextlib.contextmanager
def rabbitmq_stopped(cloud):
    """RabbitMQ of `cloud` (a cinder_cloud dict) is stopped inside the block; after it, it runs again and the
    Cinder services are up and reachable over RPC."""
    _must('rabbitmq-stop', '--dir', cloud['dir'], timeout=120)
    try:
        yield cloud
    finally:
        _must('rabbitmq-start', '--dir', cloud['dir'], timeout=300)


@contextlib.contextmanager
def cinder_volume_stopped(cloud):
    """cinder-volume of `cloud` is stopped inside the block; after it, both back ends are up again."""
    _must('volume-stop', '--dir', cloud['dir'], timeout=120)
    try:
        yield cloud
    finally:
        _must('volume-start', '--dir', cloud['dir'], timeout=300)


def cinder_api(cloud, method, path, body=None, timeout=60):
    """(HTTP status, JSON body or None) of METHOD api_url+PATH with the lab's noauth token."""
    return cinderlab_module().api_request(cloud['api_url'], cloud['auth_token'], method, path, body, timeout)


def _openstack_imports():
    """Debian's eventlet (imported by oslo.concurrency, hence by cinderclient and os-brick) imports pyOpenSSL
    when it can; Debian's pyOpenSSL 23.0 does not load under the venv's cryptography (constraints.txt pins a
    newer one: AttributeError: module 'lib' has no attribute 'GEN_EMAIL'). eventlet does without pyOpenSSL when
    importing it raises ImportError: only in that case, make it so for this process."""
    try:
        importlib.import_module('OpenSSL')
    except AttributeError:
        sys.modules['OpenSSL'] = None


def cinder_client(cloud, api_version=None):
    """python3-cinderclient's v3 Client on the lab: its noauth plugin sends X-Auth-Token user:project and puts
    the project into the URL itself (endpoint + '/' + project), so it gets the endpoint without the project."""
    _openstack_imports()
    session = importlib.import_module('keystoneauth1.session')
    noauth = importlib.import_module('cinderclient.contrib.noauth')
    client = importlib.import_module('cinderclient.v3.client')
    auth = noauth.CinderNoAuthPlugin(cloud['user'], cloud['project'], endpoint=cloud['endpoint'])
    return client.Client(session=session.Session(auth=auth), api_version=api_version or cloud['max_microversion'])


def rbd_connector():
    """os-brick's RBD connector reading and writing through librbd: connect_volume(data) returns
    {'path': a file-like object over the image}; data is os-initialize_connection's connection_info['data']
    with 'keyring' set to the client keyring's text (Cinder no longer sends it, OSSN-0085)."""
    _openstack_imports()
    rbd = importlib.import_module('os_brick.initiator.connectors.rbd')
    return rbd.RBDConnector(root_helper=None, do_local_attach=False)


class CinderCloud:
    """One lab of cinderlab.py: started here (owned) or reused from CINDER_LAB_DIR (not owned)."""

    def __init__(self, directory, owned):
        self.dir = directory
        self.owned = owned
        with open(os.path.join(directory, 'cinder.json')) as f:
            self.cloud = json.load(f)

    @classmethod
    def reuse(cls, directory, ceph_dir):
        """The lab in `directory` when it runs on the cluster in `ceph_dir` with every service up, else None."""
        try:
            with open(os.path.join(directory, 'cinder.json')) as f:
                if json.load(f)['ceph_dir'] != ceph_dir:
                    sys.stderr.write('CINDER_LAB_DIR=%s runs on another Ceph cluster than %s\n' % (directory, ceph_dir))
                    return None
        except (OSError, ValueError, KeyError):
            return None
        rc, _out, _err = run_cinderlab('status', '--dir', directory, timeout=120)
        return cls(directory, owned=False) if rc == 0 else None

    @classmethod
    def start_new(cls, ceph_dir):
        if not shutil.which('dpkg-query') or cinderlab_module().missing_packages():
            _must('install', timeout=1800)
        directory = tempfile.mkdtemp(prefix='vmimages-cinder-')
        try:
            _must('start', '--dir', directory, '--ceph-dir', ceph_dir, '--prefix', 'cinder-' + secrets.token_hex(3),
                  timeout=900)
            return cls(directory, owned=True)
        except Exception:
            cls._teardown(directory)
            raise

    @staticmethod
    def _teardown(directory):
        keep = os.environ.get('CINDER_LAB_KEEP') == '1'
        rc, out, err = run_cinderlab('stop', '--dir', directory, *([] if keep else ['--purge']), timeout=300)
        if rc != 0:
            sys.stderr.write('cinderlab.py stop --dir %s failed:\n%s%s' % (directory, out, err))
            if not keep:
                shutil.rmtree(directory, ignore_errors=True)

    def close(self):
        if self.owned:
            self._teardown(self.dir)


def _session_lab(config, ceph_cluster):
    lab = getattr(config, _CONFIG_ATTR, None)
    if lab is None:
        try:
            env_dir = os.environ.get('CINDER_LAB_DIR')
            if env_dir:
                lab = CinderCloud.reuse(os.path.abspath(env_dir), ceph_cluster['dir'])
                if lab is None:
                    sys.stderr.write('CINDER_LAB_DIR=%s holds no running Cinder lab of this Ceph cluster: starting '
                                     'a fresh one\n' % env_dir)
            if lab is None:
                lab = CinderCloud.start_new(ceph_cluster['dir'])
                config.add_cleanup(lab.close)  # runs before the Ceph cluster's cleanup (registered earlier)
        except Exception as e:  # remembered: one failed start per session, not one per test
            lab = 'Cinder test lab could not start: %s' % e
        setattr(config, _CONFIG_ATTR, lab)
    if isinstance(lab, str):
        pytest.fail(lab, pytrace=False)
    return lab


@pytest.fixture(scope='session')
def cinder_lab(request, ceph_cluster):
    return _session_lab(request.config, ceph_cluster)


@pytest.fixture(scope='session')
def cinder_cloud(cinder_lab):
    return cinder_lab.cloud


@pytest.fixture
def rabbitmq_down(cinder_cloud):
    with rabbitmq_stopped(cinder_cloud):
        yield cinder_cloud


@pytest.fixture
def cinder_volume_down(cinder_cloud):
    with cinder_volume_stopped(cinder_cloud):
        yield cinder_cloud
