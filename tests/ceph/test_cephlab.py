# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Ceph test cluster itself (tests/ceph/cephlab.py): healthy, least-privilege RBD client, S3, Swift,
radosgw stop/start.

    .venv/bin/python -m pytest tests/ceph -m ceph          (make ceph-test)
    CEPH_LAB_DIR=/tmp/vmimages-ceph-dev ...                reuse a running cluster (make ceph-up)
"""

import base64
import email.utils
import hashlib
import hmac
import json
import os
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

from tests.ceph.pytest_ceph import CEPHLAB, ceph_cmd, rgw_stopped

pytestmark = pytest.mark.ceph

KEYS = {'dir', 'fsid', 'conf', 'mon_host', 'admin_keyring', 'rbd_user', 'rbd_keyring', 'rbd_pool',
        'rgw_endpoint', 's3_access_key', 's3_secret_key', 's3_region', 'swift_auth_url', 'swift_user',
        'swift_key'}


def rgw_port(cluster):
    return urllib.parse.urlsplit(cluster['rgw_endpoint']).port


def connection_refused(cluster):
    try:
        socket.create_connection(('127.0.0.1', rgw_port(cluster)), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def rgw_answers(cluster):
    try:
        urllib.request.urlopen(cluster['rgw_endpoint'] + '/', timeout=5).close()
    except urllib.error.HTTPError:
        pass
    return True


def test_cluster_json(ceph_cluster):
    assert set(ceph_cluster) == KEYS
    d = ceph_cluster['dir']
    for name in ('cluster.json', os.path.basename(ceph_cluster['rbd_keyring'])):
        assert stat.S_IMODE(os.stat(os.path.join(d, name)).st_mode) == 0o600, name
    assert ceph_cluster['conf'] == os.path.join(d, 'ceph.conf')
    assert ceph_cluster['rbd_user'] == 'multistore' and ceph_cluster['rbd_pool'] == 'images'
    assert ceph_cluster['swift_auth_url'] == ceph_cluster['rgw_endpoint'] + '/auth/1.0'


def test_health_ok(ceph_cluster):
    health = json.loads(ceph_cmd(ceph_cluster, 'health', '--format', 'json').stdout)
    assert health['status'] == 'HEALTH_OK', health
    res = subprocess.run([sys.executable, CEPHLAB, 'status', '--dir', ceph_cluster['dir']],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=60,
                         check=False)
    assert res.returncode == 0, res.stdout
    assert 'HEALTH_OK' in res.stdout


def test_start_is_idempotent(ceph_cluster):
    started = time.monotonic()
    res = subprocess.run([sys.executable, CEPHLAB, 'start', '--dir', ceph_cluster['dir'], '--json'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=120,
                         check=False)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == ceph_cluster
    assert time.monotonic() - started < 10


def test_rbd_client_is_least_privilege(ceph_cluster):
    try:
        import rados
        import rbd
    except ImportError as e:  # a real-component test fails, it does not skip
        pytest.fail('python3-rados/python3-rbd (Debian) not importable by %s (a venv needs '
                    '--system-site-packages): %s' % (sys.executable, e))
    # no ceph.conf at all: mon_host and the client's own keyring only
    conn = rados.Rados(rados_id=ceph_cluster['rbd_user'],
                       conf={'mon_host': ceph_cluster['mon_host'], 'keyring': ceph_cluster['rbd_keyring']})
    conn.connect(timeout=20)
    try:
        name = 'cephlab-test-%s' % uuid.uuid4().hex[:8]
        with conn.open_ioctx(ceph_cluster['rbd_pool']) as ioctx:
            rbd.RBD().create(ioctx, name, 64 * 1024 ** 2)
            try:
                assert name in rbd.RBD().list(ioctx)
                with rbd.Image(ioctx, name) as image:
                    image.write(b'x' * 4096, 0)
                    assert image.read(0, 4096) == b'x' * 4096
            finally:
                rbd.RBD().remove(ioctx, name)
            assert name not in rbd.RBD().list(ioctx)
        with pytest.raises(rados.PermissionError):
            conn.create_pool('cephlab-test-forbidden')
        assert 'cephlab-test-forbidden' not in conn.list_pools()
    finally:
        conn.shutdown()


def _s3_v2(cluster, method, path, body=b''):
    """Plain HTTP S3 request signed with AWS signature v2 (used only when boto3 is not importable)."""
    date = email.utils.formatdate(usegmt=True)
    string_to_sign = '%s\n\n%s\n%s\n%s' % (method, 'application/octet-stream' if body else '', date, path)
    sig = base64.b64encode(hmac.new(cluster['s3_secret_key'].encode(), string_to_sign.encode(),
                                    hashlib.sha1).digest()).decode()
    headers = {'Date': date, 'Authorization': 'AWS %s:%s' % (cluster['s3_access_key'], sig)}
    if body:
        headers['Content-Type'] = 'application/octet-stream'
    req = urllib.request.Request(cluster['rgw_endpoint'] + path, data=body if method == 'PUT' else None,
                                 method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read()


def test_s3_put_get(ceph_cluster):
    bucket = 'cephlab-test-%s' % uuid.uuid4().hex[:8]
    data = os.urandom(100 * 1024)
    try:
        import boto3
    except ImportError:
        boto3 = None
    if boto3 is None:
        _s3_v2(ceph_cluster, 'PUT', '/' + bucket)
        _s3_v2(ceph_cluster, 'PUT', '/%s/obj' % bucket, data)
        assert _s3_v2(ceph_cluster, 'GET', '/%s/obj' % bucket) == data
        _s3_v2(ceph_cluster, 'DELETE', '/%s/obj' % bucket)
        _s3_v2(ceph_cluster, 'DELETE', '/' + bucket)
        return
    s3 = boto3.client('s3', endpoint_url=ceph_cluster['rgw_endpoint'], region_name=ceph_cluster['s3_region'],
                      aws_access_key_id=ceph_cluster['s3_access_key'],
                      aws_secret_access_key=ceph_cluster['s3_secret_key'])
    s3.create_bucket(Bucket=bucket)
    try:
        s3.put_object(Bucket=bucket, Key='obj', Body=data)
        assert s3.get_object(Bucket=bucket, Key='obj')['Body'].read() == data
        assert [o['Key'] for o in s3.list_objects_v2(Bucket=bucket)['Contents']] == ['obj']
    finally:
        for o in s3.list_objects_v2(Bucket=bucket).get('Contents', []):
            s3.delete_object(Bucket=bucket, Key=o['Key'])
        s3.delete_bucket(Bucket=bucket)


def test_s3_wrong_secret_refused(ceph_cluster):
    with pytest.raises(urllib.error.HTTPError) as err:
        _s3_v2(dict(ceph_cluster, s3_secret_key='wrong' + ceph_cluster['s3_secret_key']), 'GET', '/')
    assert err.value.code == 403


def test_swift_auth_v1(ceph_cluster):
    req = urllib.request.Request(ceph_cluster['swift_auth_url'], headers={
        'X-Auth-User': ceph_cluster['swift_user'], 'X-Auth-Key': ceph_cluster['swift_key']})
    with urllib.request.urlopen(req, timeout=30) as resp:
        token = resp.headers['X-Auth-Token']
        storage_url = resp.headers['X-Storage-Url']
    assert token and storage_url
    # the token works: list the account
    with urllib.request.urlopen(urllib.request.Request(storage_url, headers={'X-Auth-Token': token}),
                                timeout=30) as resp:
        assert resp.status in (200, 204)
    bad = urllib.request.Request(ceph_cluster['swift_auth_url'], headers={
        'X-Auth-User': ceph_cluster['swift_user'], 'X-Auth-Key': 'wrong'})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(bad, timeout=30)
    assert err.value.code in (401, 403)


def test_rgw_down_fixture(rgw_down):
    assert connection_refused(rgw_down)


def test_rgw_is_back_after_rgw_down(ceph_cluster):
    assert rgw_answers(ceph_cluster)


def test_rgw_stopped_context_manager(ceph_cluster):
    with rgw_stopped(ceph_cluster):
        assert connection_refused(ceph_cluster)
        # RBD does not need radosgw
        assert json.loads(ceph_cmd(ceph_cluster, 'health', '--format', 'json').stdout)['status'] == 'HEALTH_OK'
    assert rgw_answers(ceph_cluster)


def test_qemu_img_rbd(ceph_cluster):
    """qemu-img's rbd driver (qemu-block-extra) reaches the pool as the restricted client."""
    name = 'cephlab-qemu-%s' % uuid.uuid4().hex[:8]
    target = 'rbd:%s/%s:id=%s:conf=%s:keyring=%s' % (
        ceph_cluster['rbd_pool'], name, ceph_cluster['rbd_user'], ceph_cluster['conf'], ceph_cluster['rbd_keyring'])
    res = subprocess.run(['qemu-img', 'create', '-f', 'raw', target, '16M'], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, timeout=60, check=False)
    assert res.returncode == 0, res.stdout
    try:
        res = subprocess.run(['qemu-img', 'info', '--output=json', target], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, universal_newlines=True, timeout=60, check=False)
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)['virtual-size'] == 16 * 1024 ** 2
    finally:
        subprocess.run(['rbd', '--conf', ceph_cluster['conf'], '--id', ceph_cluster['rbd_user'],
                        '--keyring', ceph_cluster['rbd_keyring'], 'rm', '--no-progress',
                        '%s/%s' % (ceph_cluster['rbd_pool'], name)], check=True, stdout=subprocess.DEVNULL, timeout=60)
