# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The store_host role with a cinder store, against the real Cinder of tests/cinder on the real Ceph: the Ceph
client keyring of Cinder's RBD user written, the store declared and connected, idempotent, check mode makes no
volume, and a cinder store without volume_type refused before anything is touched.

As in tests/ceph/test_store_host_ceph.py, the role runs on the controller itself (ansible_connection: local): the
lab containers cannot reach a Cinder on this machine's 127.0.0.1. Runs as root.
"""

import os
import uuid

import pytest

from tests.ceph.test_store_host_ceph import ROLE_PLAY, ansible_playbook, keyring_key, role_variables, store_report
from tests.cinder.pytest_cinder import cinder_api

pytestmark = [pytest.mark.ceph, pytest.mark.cinder]


@pytest.fixture
def work(tmp_path):
    if os.geteuid() != 0:
        pytest.fail('the store_host role runs as root (it sets root ownership): run this test as root', pytrace=False)
    return str(tmp_path)


def project_volumes(cloud, project):
    status, body = cinder_api(dict(cloud, auth_token='%s:%s' % (cloud['user'], project)), 'GET', '/v3/volumes/detail')
    assert status == 200, body
    return body['volumes']


def cinder_variables(work, ceph_cluster, cloud, project, **store):
    variables = role_variables(work, ceph_cluster, [])
    # the keyring of the Ceph user Cinder's RBD back ends connect as, written by the role like any client keyring
    variables['multistore_ceph_clusters'][0]['keyrings'] = [
        {'user': cloud['ceph_client'], 'key': keyring_key(cloud['ceph_keyring'])}]
    keyring = os.path.join(variables['multistore_ceph_conf_dir'], 'ceph.%s.keyring' % cloud['ceph_client'])
    variables['multistore_stores'] = [dict({'name': 'role-cinder', 'type': 'cinder', 'endpoint': cloud['endpoint'],
                                            'user': cloud['user'], 'project': project, 'volume_type': 'ceph-a',
                                            'keyring': keyring, 'site_role': 'central'}, **store)]
    return variables


def test_role_declares_a_cinder_store(work, ceph_cluster, cinder_cloud):
    project = uuid.uuid4().hex
    variables = cinder_variables(work, ceph_cluster, cinder_cloud, project)
    key = keyring_key(cinder_cloud['ceph_keyring'])

    output, _changed = ansible_playbook(work, ROLE_PLAY, variables, '--check', '--diff', '-v')
    assert key not in output
    assert project_volumes(cinder_cloud, project) == []

    output, changed = ansible_playbook(work, ROLE_PLAY, variables, '--diff', '-v')
    assert changed > 0 and key not in output
    assert [volume['name'] for volume in project_volumes(cinder_cloud, project)] == ['multistore-store']

    _output, changed = ansible_playbook(work, ROLE_PLAY, variables, '--diff', '-v')
    assert changed == 0

    store = store_report(work, variables)['role-cinder']
    assert (store['type'], store['status'], store['volume_type'], store['site_role']) == ('cinder', 'connected', 'ceph-a', 'central')
    assert store['capacity'] > 0


def test_role_refuses_a_cinder_store_without_volume_type(work, ceph_cluster, cinder_cloud):
    project = uuid.uuid4().hex
    variables = cinder_variables(work, ceph_cluster, cinder_cloud, project)
    del variables['multistore_stores'][0]['volume_type']
    with pytest.raises(AssertionError) as failure:
        ansible_playbook(work, ROLE_PLAY, variables)
    assert 'a cinder store needs volume_type and either auth_url' in str(failure.value)
    assert project_volumes(cinder_cloud, project) == []
    assert not os.path.exists(variables['multistore_registry'])
