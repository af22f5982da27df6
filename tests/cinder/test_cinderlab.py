# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Cinder test lab itself (tests/cinder/cinderlab.py) with the real pieces: Cinder's API (noauth) through
python3-cinderclient, two RBD back ends on the Ceph test cluster, data written and read through os-brick's
RBD connector (librbd, no kernel device), clones, RabbitMQ and cinder-volume going down and coming back.

    .venv/bin/python -m pytest tests/cinder -m cinder          (make cinder-test)
    CINDER_LAB_DIR=/tmp/vmimages-cinder-dev ...                reuse a running lab (make cinder-up)
"""

import contextlib
import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import time

import pytest

from tests.cinder.pytest_cinder import (CINDERLAB, cinder_api, cinder_client, cinder_volume_stopped,
                                        cinderlab_module, rabbitmq_stopped, rbd_connector)

pytestmark = [pytest.mark.cinder, pytest.mark.ceph]

MIB = 1024 * 1024
# what os-initialize_connection wants to know about the host; for RBD, Cinder only logs it
CONNECTOR = {'host': 'vmimages-test', 'ip': '127.0.0.1', 'initiator': 'iqn.2026-12.org.vmimages:test',
             'platform': 'x86_64', 'os_type': 'linux', 'multipath': False, 'do_local_attach': False}


def wait_status(client, volume_id, want, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        volume = client.volumes.get(volume_id)
        if volume.status == want:
            return volume
        assert volume.status not in ('error', 'error_deleting'), volume.to_dict()
        assert time.monotonic() < deadline, 'volume %s still %s after %d s' % (volume_id, volume.status, timeout)
        time.sleep(0.3)


def wait_gone(cloud, volume_id, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        status, body = cinder_api(cloud, 'GET', '/v3/volumes/%s' % volume_id)
        if status == 404:
            return
        assert status == 200, body
        assert body['volume']['status'] != 'error_deleting', body
        assert time.monotonic() < deadline, 'volume %s not gone after %d s: %s' % (volume_id, timeout, body)
        time.sleep(0.3)


@contextlib.contextmanager
def new_volume(cloud, client, want='available', **kwargs):
    """A 1 GiB volume (client.volumes.create kwargs) in state `want` inside the block, deleted after it."""
    volume = client.volumes.create(1, **kwargs)
    try:
        yield wait_status(client, volume.id, want)
    finally:
        client.volumes.delete(volume.id)
        wait_gone(cloud, volume.id)


def rbd_images(ceph_cluster, pool):
    res = subprocess.run(['rbd', '--conf', ceph_cluster['conf'], '--name', 'client.admin', '--keyring',
                          ceph_cluster['admin_keyring'], 'ls', '--format', 'json', pool],
                         capture_output=True, text=True, timeout=60, check=True)
    return json.loads(res.stdout)


def connection_data(cloud, client, volume):
    info = client.volumes.initialize_connection(volume, CONNECTOR)
    assert info['driver_volume_type'] == 'rbd', info
    data = dict(info['data'])
    with open(cloud['ceph_keyring']) as f:
        data['keyring'] = f.read()
    return data


def write_read(cloud, client, volume, payload):
    """Write `payload` at offset 0 of `volume` through os-brick, read it back; the digest of what was read."""
    data = connection_data(cloud, client, volume)
    connector = rbd_connector()
    device = connector.connect_volume(data)
    try:
        handle = device['path']
        if payload is not None:
            handle.seek(0)
            handle.write(payload)
            handle.flush()
        handle.seek(0)
        back = handle.read(8 * MIB)
    finally:
        connector.disconnect_volume(data, device)
        client.volumes.terminate_connection(volume, CONNECTOR)
    return hashlib.sha256(back).hexdigest()


def test_cinder_json(cinder_cloud, ceph_cluster):
    module = cinderlab_module()
    assert set(cinder_cloud) == set(module.CINDER_KEYS)
    d = cinder_cloud['dir']
    for path in (os.path.join(d, 'cinder.json'), cinder_cloud['ceph_keyring']):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    for key in ('ceph_conf', 'ceph_keyring', 'cinder_conf', 'log_dir'):
        assert cinder_cloud[key].startswith(d + '/'), key
    assert cinder_cloud['ceph_dir'] == ceph_cluster['dir']
    assert cinder_cloud['ceph_fsid'] == ceph_cluster['fsid']
    assert cinder_cloud['endpoint'] == cinder_cloud['api_url'] + '/v3'
    assert cinder_cloud['project_endpoint'] == cinder_cloud['endpoint'] + '/' + cinder_cloud['project']
    assert cinder_cloud['auth_token'] == '%s:%s' % (cinder_cloud['user'], cinder_cloud['project'])
    assert set(cinder_cloud['volume_types']) == {'ceph-a', 'ceph-b'}
    assert len({t['pool'] for t in cinder_cloud['volume_types'].values()}) == 2
    with open(cinder_cloud['cinder_conf']) as f:
        conf = f.read()
    assert 'auth_strategy = noauth' in conf and '/etc/cinder' not in conf and '/var/lib/cinder' not in conf


def test_services_and_url_forms(cinder_cloud):
    status, body = cinder_api(cinder_cloud, 'GET', '/v3/os-services')
    assert status == 200, body
    states = {(s['binary'], s['host'].split('@')[-1]): s['state'] for s in body['services']}
    assert states == {('cinder-scheduler', 'cinderlab'): 'up', ('cinder-volume', 'rbd-a'): 'up',
                      ('cinder-volume', 'rbd-b'): 'up'}, body
    # both URL forms; a project id in the path must look like one (hex and dashes), else the route is unknown
    assert cinder_api(cinder_cloud, 'GET', '/v3/types')[0] == 200
    assert cinder_api(cinder_cloud, 'GET', '/v3/%s/types' % cinder_cloud['project'])[0] == 200
    assert cinder_api(cinder_cloud, 'GET', '/v3/admin/types')[0] == 404
    status, body = cinder_api(cinder_cloud, 'GET', '/v3/types')
    specs = {t['name']: t['extra_specs'] for t in body['volume_types']}
    for name, vtype in cinder_cloud['volume_types'].items():
        assert specs[name] == {'volume_backend_name': vtype['backend']}


def test_keystone_guards_the_second_api(cinder_cloud):
    """Keystone issues a token for the store's user; the cinder-api behind it takes that token and no other."""
    keystone = cinder_cloud['keystone']
    for key in ('auth_url', 'volume_api_url'):
        assert keystone[key].startswith('http://127.0.0.1:'), key
    body = {'auth': {'identity': {'methods': ['password'], 'password': {'user': {
        'name': keystone['user'], 'domain': {'name': keystone['user_domain']}, 'password': keystone['password']}}},
        'scope': {'project': {'name': keystone['project'], 'domain': {'name': keystone['project_domain']}}}}}
    status, headers, answer = cinderlab_module().keystone.request(keystone['auth_url'] + '/auth/tokens', 'POST', body)
    assert status == 201, answer
    token, project_id = headers['X-Subject-Token'], answer['token']['project']['id']
    [volume_service] = [entry for entry in answer['token']['catalog'] if entry['type'] == 'volumev3']
    assert {e['url'] for e in volume_service['endpoints']} == {'%s/v3/%s' % (keystone['volume_api_url'], project_id)}
    assert cinder_api(dict(cinder_cloud, api_url=keystone['volume_api_url'], auth_token=token), 'GET',
                      '/v3/%s/volumes' % project_id)[0] == 200
    # the noauth form of token is refused there: that API checks every token with Keystone
    assert cinder_api(dict(cinder_cloud, api_url=keystone['volume_api_url']), 'GET',
                      '/v3/%s/volumes' % project_id)[0] == 401
    body['auth']['identity']['password']['user']['password'] = 'wrong'
    assert cinderlab_module().keystone.request(keystone['auth_url'] + '/auth/tokens', 'POST', body)[0] == 401


def test_ceph_client_least_privilege(cinder_cloud, ceph_cluster):
    def rbd_ls(pool):
        return subprocess.run(['rbd', '--conf', cinder_cloud['ceph_conf'], '--id', cinder_cloud['ceph_user'], 'ls',
                               pool], capture_output=True, text=True, timeout=60, check=False)
    for vtype in cinder_cloud['volume_types'].values():
        res = rbd_ls(vtype['pool'])
        assert res.returncode == 0, res.stderr
    res = rbd_ls(ceph_cluster['rbd_pool'])  # another pool of the same cluster
    assert res.returncode != 0 and 'Operation not permitted' in res.stderr, res


@pytest.mark.parametrize('vtype', ['ceph-a', 'ceph-b'])
def test_volume_data_clone_delete(cinder_cloud, ceph_cluster, vtype):
    client = cinder_client(cinder_cloud)
    pool = cinder_cloud['volume_types'][vtype]['pool']
    backend = cinder_cloud['volume_types'][vtype]['backend']
    # the clone's block ends first: it is deleted before its source
    with new_volume(cinder_cloud, client, volume_type=vtype, name='test-' + vtype, metadata={'test': 'cinder'}) as volume:
        assert volume.volume_type == vtype
        assert getattr(volume, 'os-vol-host-attr:host') == 'cinderlab@%s#%s' % (backend, backend)
        assert 'volume-%s' % volume.id in rbd_images(ceph_cluster, pool)

        payload = os.urandom(8 * MIB)
        digest = hashlib.sha256(payload).hexdigest()
        assert write_read(cinder_cloud, client, volume, payload) == digest
        assert client.volumes.get(volume.id).status == 'available'  # a connection is no attachment

        with new_volume(cinder_cloud, client, volume_type=vtype, source_volid=volume.id, name='clone-' + vtype) as clone:
            assert clone.source_volid == volume.id and clone.volume_type == vtype
            assert 'volume-%s' % clone.id in rbd_images(ceph_cluster, pool)
            assert write_read(cinder_cloud, client, clone, None) == digest  # the clone holds the source's data
    names = rbd_images(ceph_cluster, pool)
    assert 'volume-%s' % volume.id not in names and 'volume-%s' % clone.id not in names


def test_volume_with_plain_http(cinder_cloud):
    """The same API without cinderclient: POST, poll, DELETE with X-Auth-Token user:project."""
    status, body = cinder_api(cinder_cloud, 'POST', '/v3/volumes',
                              {'volume': {'size': 1, 'name': 'plain-http', 'volume_type': 'ceph-b'}})
    assert status == 202, body
    volume_id = body['volume']['id']
    deadline = time.monotonic() + 120
    while body['volume']['status'] == 'creating' and time.monotonic() < deadline:
        time.sleep(0.3)
        body = cinder_api(cinder_cloud, 'GET', '/v3/volumes/%s' % volume_id)[1]
    assert body['volume']['status'] == 'available', body
    assert cinder_api(cinder_cloud, 'DELETE', '/v3/volumes/%s' % volume_id)[0] == 202
    wait_gone(cinder_cloud, volume_id)


def test_cinder_volume_down(cinder_volume_down):
    """With cinder-volume stopped, both back ends turn `down` and a new volume fails; the fixture brings them
    back (the next tests use them)."""
    cloud = cinder_volume_down
    deadline = time.monotonic() + 60
    while True:
        services = cinder_api(cloud, 'GET', '/v3/os-services?binary=cinder-volume')[1]['services']
        if all(s['state'] == 'down' for s in services):
            break
        assert time.monotonic() < deadline, services
        time.sleep(0.5)
    with new_volume(cloud, cinder_client(cloud), want='error', volume_type='ceph-a', name='no-backend'):
        pass


def test_rabbitmq_down(rabbitmq_down):
    """With RabbitMQ stopped, its port refuses and the API still answers what it reads from its database."""
    cloud = rabbitmq_down
    port = int(cloud['transport_url'].rsplit(':', 1)[1].strip('/'))
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(('127.0.0.1', port), timeout=5).close()
    status, body = cinder_api(cloud, 'GET', '/v3/volumes')
    assert status == 200, body


def test_services_recover_after_faults(cinder_cloud):
    """Both fault helpers leave a lab that creates volumes again (RPC reconnected, back ends up)."""
    with rabbitmq_stopped(cinder_cloud):
        pass
    with cinder_volume_stopped(cinder_cloud):
        pass
    with new_volume(cinder_cloud, cinder_client(cinder_cloud), volume_type='ceph-b', name='after-faults') as volume:
        assert getattr(volume, 'os-vol-host-attr:host') == 'cinderlab@rbd-b#rbd-b'


def test_start_is_idempotent_and_status(cinder_cloud):
    started = time.monotonic()
    res = subprocess.run([sys.executable, CINDERLAB, 'start', '--dir', cinder_cloud['dir'], '--json'],
                         capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - started < 60
    again = json.loads(res.stdout)
    assert {k: v for k, v in again.items() if k != 'pids'} == {k: v for k, v in cinder_cloud.items() if k != 'pids'}
    res = subprocess.run([sys.executable, CINDERLAB, 'status', '--dir', cinder_cloud['dir']],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert 'cinderlab@rbd-a' in res.stdout and 'RSS' in res.stdout


def test_install_is_a_no_op_when_present(cinder_cloud):
    res = subprocess.run([sys.executable, CINDERLAB, 'install'], capture_output=True, text=True, timeout=120,
                         check=False)
    assert res.returncode == 0 and 'Cinder packages present' in res.stderr, res


def test_services_blocked_restores_policy_rc_d(tmp_path, monkeypatch):
    module = cinderlab_module()
    path = tmp_path / 'policy-rc.d'
    monkeypatch.setattr(module, 'POLICY_RC_D', str(path))
    with module.services_blocked():
        assert path.read_text().endswith('exit 101\n') and os.access(path, os.X_OK)
    assert not path.exists()
    path.write_text('#!/bin/sh\nexit 0\n')
    path.chmod(0o700)
    with module.services_blocked():
        assert 'exit 101' in path.read_text()
    assert path.read_text() == '#!/bin/sh\nexit 0\n' and stat.S_IMODE(path.stat().st_mode) == 0o700
