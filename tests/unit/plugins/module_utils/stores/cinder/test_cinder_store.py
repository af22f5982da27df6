# -*- coding: utf-8 -*-
"""The cinder store against a real Cinder (cinder-api, -scheduler, -volume, RabbitMQ) on a real Ceph (RBD back ends):
Glance's volume layout, imports, copies to and from every other store type, clones, deletion, and faults."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import subprocess
import uuid

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import ImageError, InvalidArgument, StoreError
from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.images.cleanup import StoreCleanup
from ansible_collections.vmimages.multistore.plugins.module_utils.stores import cinder_volumes
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.declaration import StoreDeclaration, describe

from image_files import export_sha512, sha512_of
from rbd_params import rbd_params

pytestmark = [pytest.mark.ceph, pytest.mark.cinder]

MIB = 1024 * 1024


def sparse_image(path, pieces=((0, 5 * MIB), (13 * MIB, 3 * MIB + 17))):
    """Random bytes at the given (offset, length) pieces, zeros (holes) between: some slices are zero slices."""
    with open(path, 'wb') as handle:
        for offset, length in pieces:
            handle.seek(offset)
            handle.write(os.urandom(length))
    return str(path)


def rbd_volume_bytes(ceph_cluster, pool, volume_id):
    import rados
    import rbd
    cluster = rados.Rados(conffile=ceph_cluster['conf'], rados_id='admin', conf={'keyring': ceph_cluster['admin_keyring']})
    cluster.connect(timeout=10)
    try:
        with cluster.open_ioctx(pool) as ioctx:
            with rbd.Image(ioctx, 'volume-%s' % volume_id, read_only=True) as image:
                try:
                    parent = image.parent_info()
                except rbd.ImageNotFound:  # librbd's answer for an image without a parent
                    parent = None
                return image.read(0, image.size()), parent
    finally:
        cluster.shutdown()


@pytest.fixture
def cin(registry, declare_cinder, cinder_project):
    """A cinder store 'cin' (volume type ceph-a) in a project of this test's own."""
    assert declare_cinder('cin', project=cinder_project) is True
    return registry.open('cin')


def test_declaring_a_cinder_store_makes_its_identity_volume_once(registry, declare_cinder, cinder_project, cinder_cloud):
    assert declare_cinder('cin', project=cinder_project) is True
    assert declare_cinder('cin', project=cinder_project) is False
    store = registry.open('cin')
    assert store.status() == 'connected' and store.identity['type'] == 'cinder'
    named = store.backend.volumes.named('multistore-store')
    assert len(named) == 1 and named[0].size == 1
    info = describe(store)
    # the capacity is what Cinder's scheduler reports for the volume type's back end (rbd-a: the test Ceph)
    assert info['capacity'] > 10 * 1024 ** 3 and 0 < info['free'] <= info['capacity']
    assert info['volume_type'] == 'ceph-a' and 'keyring' not in info and info['image_count'] == 0
    # a second host declaring the same place finds the same store
    other = StoreDeclaration(registry.__class__(str(registry.directory) + '-other'),
                             dict(registry.declaration('cin'), name='cin', endpoint=cinder_cloud['endpoint']))
    assert other.present(check_mode=False) is True
    assert registry.__class__(str(registry.directory) + '-other').open('cin').id == store.id


def test_bad_declarations_are_refused_and_change_nothing(registry, cinder_params, cinder_project):
    def declare(**params):
        StoreDeclaration(registry, dict(cinder_params(project=cinder_project), name='bad', **params)).present(check_mode=False)
    with pytest.raises(StoreError, match='Cinder has no volume type nonesuch.*ceph-a'):
        declare(volume_type='nonesuch')
    with pytest.raises(InvalidArgument, match='needs either auth_url.*or endpoint'):
        declare(auth_url='http://127.0.0.1:5000/v3')
    with pytest.raises(InvalidArgument, match='needs volume_type'):
        declare(volume_type=None)
    with pytest.raises(StoreError, match=r'is the Cinder API \(or Keystone\) at http://127.0.0.1:9/v3 up'):
        declare(endpoint='http://127.0.0.1:9/v3')
    assert registry.names() == []


def test_an_image_is_one_read_only_volume_in_glances_layout(registry, cin, image_request, tmp_path, cinder_cloud, ceph_cluster):
    src = sparse_image(tmp_path / 'disk.raw')
    request = image_request(name='deb', src=src, disk_format='raw', stores=['cin'])
    assert request.present(check_mode=False) is True
    result = request.result()
    [location] = result['locations']
    volume_id = location['url'].rsplit('/', 1)[1]
    assert location['url'] == 'cinder://cin/%s' % volume_id
    volume = cin.backend.volumes.get(volume_id)
    assert volume.name == 'image-%s' % result['id'] and volume.size == 1
    assert volume.metadata['glance_image_id'] == result['id']
    assert volume.metadata['image_size'] == str(os.path.getsize(src))
    assert 'multistore_dirty' not in volume.metadata
    pool = cinder_cloud['volume_types']['ceph-a']['pool']
    data, _parent = rbd_volume_bytes(ceph_cluster, pool, volume_id)
    with open(src, 'rb') as handle:
        assert data[:os.path.getsize(src)] == handle.read()
    assert data[os.path.getsize(src):] == b'\0' * (len(data) - os.path.getsize(src))
    # read-only once sealed, as Glance's cinder store leaves it
    from tests.cinder.pytest_cinder import cinder_api
    status, body = cinder_api(dict(cinder_cloud, auth_token='admin:%s' % cin.declaration['project']), 'GET', '/v3/volumes/%s' % volume_id)
    assert status == 200 and body['volume']['metadata'].get('readonly') == 'True'
    assert export_sha512(registry, 'deb', 'cin', tmp_path / 'out.raw') == sha512_of(src)
    assert image_request(name='deb', src=src, disk_format='raw', stores=['cin']).present(check_mode=False) is False


def test_a_qcow2_import_is_converted_once_and_sized_in_whole_gib(registry, cin, image_request, tmp_path):
    raw = sparse_image(tmp_path / 'disk.raw', ((0, MIB), (1200 * MIB, 2 * MIB)))
    qcow2 = str(tmp_path / 'disk.qcow2')
    subprocess.check_call(['qemu-img', 'convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, qcow2])
    assert image_request(name='q', src=qcow2, disk_format='qcow2', stores=['cin']).present(check_mode=False) is True
    view = Catalog(registry).find(name='q')
    record = view.copies['cin']
    assert record['disk_format'] == 'raw' and record['size'] == os.path.getsize(raw)
    volume = cin.backend.volume(view.id)
    assert volume.size == 2  # 1.2 GiB of raw: two whole GiB, never more
    assert export_sha512(registry, 'q', 'cin', tmp_path / 'out.raw') == sha512_of(raw)


@pytest.mark.parametrize('other', ['file', 'rbd', 's3', 'cinder'])
def test_copies_to_and_from_every_other_store_type_are_byte_identical(
        other, registry, cin, declare, declare_cinder, cinder_project, image_request, tmp_path, ceph_cluster):
    if other == 'file':
        declare('there')
    elif other == 'rbd':
        StoreDeclaration(registry, dict(rbd_params(ceph_cluster), name='there')).present(check_mode=False)
    elif other == 's3':
        bucket = 'c-%s' % uuid.uuid4().hex[:10]
        StoreDeclaration(registry, {'name': 'there', 'type': 's3', 'endpoint': ceph_cluster['rgw_endpoint'], 'bucket': bucket,
                                    'access_key': ceph_cluster['s3_access_key'], 'secret_key': ceph_cluster['s3_secret_key'],
                                    'region': ceph_cluster['s3_region']}).present(check_mode=False)
    else:
        declare_cinder('there', volume_type='ceph-b', project=cinder_project)  # the other back end (pool cinder-b)
    src = sparse_image(tmp_path / 'disk.raw')
    expected = sha512_of(src)
    # into the other store first, then copied to cinder; then a second image the other way round
    assert image_request(name='a', src=src, disk_format='raw', stores=['there']).present(check_mode=False) is True
    assert image_request(name='a', stores=['there', 'cin']).present(check_mode=False) is True
    assert export_sha512(registry, 'a', 'cin', tmp_path / 'a-cin.raw') == expected
    src_b = sparse_image(tmp_path / 'b.raw', ((2 * MIB, 7 * MIB),))
    assert image_request(name='b', src=src_b, disk_format='raw', stores=['cin']).present(check_mode=False) is True
    assert image_request(name='b', stores=['cin', 'there']).present(check_mode=False) is True
    assert export_sha512(registry, 'b', 'there', tmp_path / 'b-there.raw') == sha512_of(src_b)
    view = Catalog(registry).find(name='b')
    assert view.copies['there']['os_hash_value'] == view.copies['cin']['os_hash_value'] == sha512_of(src_b)
    assert image_request(name='b', stores=['cin', 'there']).present(check_mode=False) is False
    for name in ('a', 'b'):
        image_request(name=name, state='absent').absent(check_mode=False)


def test_a_clone_is_a_cinder_volume_clone_and_holds_its_parent(registry, cin, image_request, tmp_path, cinder_cloud, ceph_cluster):
    src = sparse_image(tmp_path / 'disk.raw')
    assert image_request(name='gold', src=src, disk_format='raw', stores=['cin']).present(check_mode=False) is True
    clone = image_request(name='work', clone_from='gold', stores=['cin'], state='cloned')
    assert clone.cloned(check_mode=False) is True
    catalog = Catalog(registry)
    parent, child = catalog.find(name='gold'), catalog.find(name='work')
    parent_volume, child_volume = cin.backend.volume(parent.id), cin.backend.volume(child.id)
    assert child_volume.source_volid == parent_volume.id
    pool = cinder_cloud['volume_types']['ceph-a']['pool']
    _data, parent_info = rbd_volume_bytes(ceph_cluster, pool, child_volume.id)
    assert parent_info is not None and parent_info[1].startswith('volume-%s' % parent_volume.id)  # copy-on-write: no data moved
    assert export_sha512(registry, 'work', 'cin', tmp_path / 'work.raw') == sha512_of(src)
    with pytest.raises(ImageError, match='has dependants: volume %s.*no store was changed' % child_volume.id):
        image_request(name='gold', state='absent').absent(check_mode=False)
    assert catalog.find(name='gold') is not None and cin.backend.volume(parent.id) is not None
    image_request(name='work', state='absent').absent(check_mode=False)
    assert image_request(name='gold', state='absent').absent(check_mode=False) is True
    assert cin.backend.volume(parent.id) is None and cin.backend.volumes.get(parent_volume.id) is None


def test_an_import_while_cinder_volume_is_down_fails_clearly_and_leaves_nothing_visible(
        registry, cin, image_request, tmp_path, cinder_volume_down, monkeypatch):
    # shorter waits than an operator's (the rollback's deletion cannot finish either); the fault itself is real
    monkeypatch.setattr(cinder_volumes, 'CREATE_TIMEOUT', 15)
    monkeypatch.setattr(cinder_volumes, 'DELETE_TIMEOUT', 10)
    src = sparse_image(tmp_path / 'disk.raw')
    with pytest.raises(StoreError, match=r'is still creating after 15 s.*cinder-volume running'):
        image_request(name='x', src=src, disk_format='raw', stores=['cin']).present(check_mode=False)
    view = Catalog(registry).find(name='x')
    assert view is None or view.active_stores() == []


def test_store_cleanup_removes_the_orphan_volume_of_a_failed_import_and_a_rerun_completes(
        registry, cin, image_request, tmp_path):
    src = sparse_image(tmp_path / 'disk.raw')
    backend = cin.backend
    image_id = str(uuid.uuid4())
    # what an import killed before its first record leaves: a volume named for the image, with no record
    volume = backend.volumes.create('image-%s' % image_id, 1, {'glance_image_id': image_id})
    backend.volumes.wait(volume.id)
    changed, report = StoreCleanup(registry.open('cin'), 0).run(check_mode=True)
    assert changed and report['removed_staging'] == ['cinder volume %s (image-%s)' % (volume.id, image_id)]
    assert backend.volumes.get(volume.id) is not None  # check mode: only said
    changed, report = StoreCleanup(registry.open('cin'), 0).run(check_mode=False)
    assert changed and report['removed_staging'] == ['cinder volume %s (image-%s)' % (volume.id, image_id)]
    assert backend.volumes.get(volume.id) is None
    assert image_request(name='y', src=src, disk_format='raw', stores=['cin']).present(check_mode=False) is True
    assert export_sha512(registry, 'y', 'cin', tmp_path / 'y.raw') == sha512_of(src)


def test_an_import_while_rabbitmq_is_down_fails_clearly_and_the_rerun_after_it_completes(
        registry, cin, image_request, tmp_path, cinder_cloud, monkeypatch):
    from tests.cinder.pytest_cinder import rabbitmq_stopped
    src = sparse_image(tmp_path / 'disk.raw')
    with rabbitmq_stopped(cinder_cloud), monkeypatch.context() as short_waits:
        # shorter waits than an operator's while the fault lasts; the fault itself is real. The re-run below
        # waits as an operator's run does: right after RabbitMQ is back, a cast from a pooled connection of
        # cinder-api that is still in its reconnect back-off can take longer than these short waits.
        short_waits.setattr(cinder_volumes, 'CREATE_TIMEOUT', 20)
        short_waits.setattr(cinder_volumes, 'API_TIMEOUT', 15)
        short_waits.setattr(cinder_volumes, 'DELETE_TIMEOUT', 10)
        with pytest.raises(StoreError) as failure:
            image_request(name='z', src=src, disk_format='raw', stores=['cin']).present(check_mode=False)
        assert 'RabbitMQ' in str(failure.value)
        view = Catalog(registry).find(name='z')
        assert view is None or view.active_stores() == []
    StoreCleanup(registry.open('cin'), 0).run(check_mode=False)
    assert image_request(name='z', src=src, disk_format='raw', stores=['cin']).present(check_mode=False) is True
    assert export_sha512(registry, 'z', 'cin', tmp_path / 'z.raw') == sha512_of(src)


def test_rot_in_a_volume_is_found_by_verify_and_repaired_from_a_file_store(
        registry, cin, declare, image_request, tmp_path, cinder_cloud, ceph_cluster):
    import rados
    import rbd
    from ansible_collections.vmimages.multistore.plugins.module_utils.images.verify import StoreVerify, repair_sources
    declare('central')
    src = sparse_image(tmp_path / 'disk.raw')
    assert image_request(name='v', src=src, disk_format='raw', stores=['central', 'cin']).present(check_mode=False) is True
    volume = cin.backend.volume(Catalog(registry).find(name='v').id)
    # bit rot below Cinder and librbd: bytes changed in the RADOS object under the volume's second MiB
    cluster = rados.Rados(conffile=ceph_cluster['conf'], rados_id='admin', conf={'keyring': ceph_cluster['admin_keyring']})
    cluster.connect(timeout=10)
    try:
        with cluster.open_ioctx(cinder_cloud['volume_types']['ceph-a']['pool']) as ioctx:
            with rbd.Image(ioctx, 'volume-%s' % volume.id, read_only=True) as image:
                info = image.stat()
            ioctx.write('%s.%016x' % (info['block_name_prefix'], 0), b'rot', MIB)
    finally:
        cluster.shutdown()
    changed, report = StoreVerify(registry.open('cin'), [], None, False).run(False)
    assert changed is False and [entry['offset'] for entry in report['corrupt']] == [0]
    changed, report = StoreVerify(registry.open('cin'), repair_sources(registry), None, True).run(False)
    assert changed is True and [(entry['offset'], entry['from']) for entry in report['repaired']] == [(0, 'central')]
    assert export_sha512(registry, 'v', 'cin', tmp_path / 'v.raw') == sha512_of(src)


def test_a_volume_cinder_puts_in_error_fails_clearly_and_is_not_left_behind(registry, declare_cinder, cinder_project, cinder_cloud):
    from tests.cinder.pytest_cinder import cinder_api
    # a volume type whose back end does not exist: the scheduler puts every volume of it in status error
    type_name = 'broken-%s' % uuid.uuid4().hex[:8]
    status, body = cinder_api(cinder_cloud, 'POST', '/v3/types',
                              {'volume_type': {'name': type_name, 'extra_specs': {'volume_backend_name': 'nowhere'}}})
    assert status == 200, body
    try:
        with pytest.raises(StoreError, match=r'volume .* is in status error \(create failed in Cinder\): see the cinder-volume log'):
            declare_cinder('broken', volume_type=type_name, project=cinder_project)
        assert registry.names() == []
        status, listing = cinder_api(dict(cinder_cloud, auth_token='%s:%s' % (cinder_cloud['user'], cinder_project)), 'GET',
                                     '/v3/volumes/detail')
        assert status == 200 and listing['volumes'] == []
    finally:
        cinder_api(cinder_cloud, 'DELETE', '/v3/types/%s' % body['volume_type']['id'])


def test_an_image_no_back_end_has_room_for_fails_clearly_and_leaves_nothing(registry, cin, image_request, tmp_path):
    # 10 TiB of virtual size (a few KiB of qcow2): more than the test Ceph may provision even thinly, so Cinder's
    # scheduler refuses the volume's growth and puts it back at its old size (the API reports no error itself)
    qcow2 = str(tmp_path / 'huge.qcow2')
    subprocess.check_call(['qemu-img', 'create', '-q', '-f', 'qcow2', qcow2, '10T'])
    with pytest.raises(StoreError, match=r'Cinder did not grow volume \S+ to 10240 GiB: it stays at 1 GiB: '
                                         r'no back end of volume type ceph-a has room for it'):
        image_request(name='huge', src=qcow2, disk_format='qcow2', stores=['cin']).present(check_mode=False)
    view = Catalog(registry).find(name='huge')
    assert view is None or view.active_stores() == []
    StoreCleanup(registry.open('cin'), 0).run(check_mode=False)
    assert [volume.name for volume in cin.backend.volumes.client().volumes.list()] == ['multistore-store']
    # the store is whole: an image that fits goes in
    src = sparse_image(tmp_path / 'disk.raw')
    assert image_request(name='fits', src=src, disk_format='raw', stores=['cin']).present(check_mode=False) is True
    assert export_sha512(registry, 'fits', 'cin', tmp_path / 'fits.raw') == sha512_of(src)
