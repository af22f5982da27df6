# -*- coding: utf-8 -*-
"""The rbd store against a real single-node Ceph: Glance layout, conversion, copies, clones, locks, errors."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import json
import os
import subprocess
import uuid

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import (
    ImageError, LockError, StoreError, UnsafeImageError)
from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.images.export import Export
from ansible_collections.vmimages.multistore.plugins.module_utils.stores import rbd as rbd_store
from ansible_collections.vmimages.multistore.plugins.module_utils.stores import rbd_lock
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.declaration import StoreDeclaration

from rbd_params import rbd_params
from image_files import sha512_of

pytestmark = pytest.mark.ceph

MIB = 1024 * 1024


def unique(prefix):
    return '%s-%s' % (prefix, uuid.uuid4().hex[:8])


def rbd_bytes(admin_rbd, pool, name, snapshot='snap'):
    import rbd
    with admin_rbd.open_ioctx(pool) as ioctx:
        with rbd.Image(ioctx, name, snapshot=snapshot, read_only=True) as image:
            return image.read(0, image.size())


def qcow2_of(raw_path):
    path = raw_path + '.qcow2'
    subprocess.check_call(['qemu-img', 'convert', '-q', '-f', 'raw', '-O', 'qcow2', raw_path, path])
    return path


def test_declare_with_least_privilege_user_is_idempotent(registry, declare_rbd, ceph_cluster):
    assert declare_rbd('ceph') is True
    assert declare_rbd('ceph') is False
    store = registry.open('ceph')
    assert store.status() == 'connected'
    assert store.identity['type'] == 'rbd'
    stats = store.backend.stats()
    assert stats['capacity'] > 0 and stats['free'] > 0


def test_missing_pool_and_a_user_that_may_not_create_it(registry, declare_rbd, admin_rbd):
    pool = unique('nopool')
    with pytest.raises(StoreError) as failure:
        declare_rbd('ceph', pool=pool)
    assert "pool '%s' does not exist and cannot be created" % pool in str(failure.value)
    assert not admin_rbd.pool_exists(pool)
    assert registry.names() == []


def test_admin_creates_a_missing_pool_for_rbd(registry, declare_rbd, admin_rbd, scratch_pool):
    if not admin_rbd.pool_exists(scratch_pool):
        assert declare_rbd('scratch', admin=True, pool=scratch_pool) is True
    assert admin_rbd.pool_exists(scratch_pool)
    with admin_rbd.open_ioctx(scratch_pool) as ioctx:
        assert 'rbd' in ioctx.application_list()


def test_wrong_key_is_a_clear_error_without_the_key(registry, ceph_cluster, tmp_path):
    keyring = tmp_path / 'wrong.keyring'
    wrong = 'AQAAAAAAAAAAABAAbgzyFc7YnxKRTNo9XW9W3w=='
    keyring.write_text('[client.%s]\n\tkey = %s\n' % (ceph_cluster['rbd_user'], wrong))
    params = rbd_params(ceph_cluster, keyring=str(keyring), name='ceph')
    with pytest.raises(StoreError) as failure:
        StoreDeclaration(registry, params).present(check_mode=False)
    message = str(failure.value)
    assert 'cannot connect to the ceph cluster as client.%s' % ceph_cluster['rbd_user'] in message
    assert 'error connecting to the cluster' in message and "check the user's key in %s" % keyring in message
    assert wrong not in message
    assert registry.names() == []


def test_qcow2_import_is_converted_to_raw_in_glance_layout(registry, declare, declare_rbd, image_request, make_raw, admin_rbd,
                                                           ceph_cluster, tmp_path):
    declare_rbd('ceph')
    declare('local')
    raw = make_raw('disk.raw', [1, None, 2, 3, None], tail=bytes(3 * MIB))
    source = qcow2_of(raw)
    name = unique('qcow')
    request = image_request(name=name, src=source, disk_format='qcow2', stores=['ceph', 'local'],
                            checksum='sha256:' + hashlib.sha256(open(source, 'rb').read()).hexdigest())
    assert request.present(check_mode=False) is True
    assert 'converted from qcow2 to raw' in request.actions[0]
    info = request.result()
    assert info['disk_format'] == 'raw' and info['stores'] == ['ceph', 'local']
    assert info['os_hash_value'] == sha512_of(raw)
    assert info['source']['disk_format'] == 'qcow2'
    assert info['source']['extra_digests'] == {'sha256': hashlib.sha256(open(source, 'rb').read()).hexdigest()}
    rbd_url = [loc['url'] for loc in info['locations'] if loc['metadata']['store'] == 'ceph'][0]
    assert rbd_url == 'rbd://%s/%s/%s/snap' % (ceph_cluster['fsid'], ceph_cluster['rbd_pool'], info['id'])
    # Glance's layout: the image named by its id, a protected snapshot 'snap', the record in the image metadata
    import rbd
    with admin_rbd.open_ioctx(ceph_cluster['rbd_pool']) as ioctx:
        with rbd.Image(ioctx, info['id'], read_only=True) as image:
            assert image.size() == os.path.getsize(raw)
            assert [snap['name'] for snap in image.list_snaps()] == ['snap']
            assert image.is_protected_snap('snap')
            record = json.loads(image.metadata_get(rbd_store.RECORD_KEY))
            assert record['status'] == 'active' and record['id'] == info['id']
    assert hashlib.sha512(rbd_bytes(admin_rbd, ceph_cluster['rbd_pool'], info['id'])).hexdigest() == sha512_of(raw)
    # A re-run with the source's checksum is recognised: no change, no conversion; another source's is refused
    source_sha256 = hashlib.sha256(open(source, 'rb').read()).hexdigest()
    again = image_request(name=name, src=source, stores=['ceph', 'local'], checksum='sha256:' + source_sha256)
    assert again.present(check_mode=False) is False
    assert again.actions == []
    with pytest.raises(ImageError) as failure:
        image_request(name=name, src=source, stores=['ceph'], checksum='sha256:' + '1' * 64).present(check_mode=False)
    assert 'exists with sha256 %s' % source_sha256 in str(failure.value)


def test_unsafe_qcow2_is_refused_before_anything_is_written(registry, declare_rbd, image_request, make_raw, admin_rbd,
                                                            ceph_cluster, tmp_path):
    declare_rbd('ceph')
    base = make_raw('base.raw', [1])
    overlay = str(tmp_path / 'overlay.qcow2')
    subprocess.check_call(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', base, overlay])
    before = set(registry.open('ceph').backend.image_ids())
    with pytest.raises(UnsafeImageError):
        image_request(name=unique('unsafe'), src=overlay, stores=['ceph']).present(check_mode=False)
    assert set(registry.open('ceph').backend.image_ids()) == before


def test_copies_rbd_file_rbd_with_equal_digests(registry, declare, declare_rbd, image_request, make_raw, admin_rbd, ceph_cluster,
                                                scratch_pool, tmp_path):
    declare_rbd('ceph')
    declare_rbd('scratch', admin=True, pool=scratch_pool)
    declare('local')
    raw = make_raw('disk.raw', [7, 7, None, 8], tail=b'end')  # a repeated slice: positions, not just digests
    name = unique('hops')
    assert image_request(name=name, src=raw, stores=['ceph']).present(check_mode=False)
    expected = sha512_of(raw)
    copy = image_request(name=name, stores=['local'])
    assert copy.present(check_mode=False) is True
    assert copy.actions == ['copy to local from ceph']
    catalog = Catalog(registry)
    view = catalog.find(name=name)
    out = str(tmp_path / 'from-local.raw')
    Export(catalog, view, 'local', out).run()
    assert sha512_of(out) == expected
    # file -> rbd: with the rbd copy gone, the slices stream from the file store, written at every position
    assert image_request(name=name, stores=['ceph'], state='absent').absent(check_mode=False)
    to_scratch = image_request(name=name, stores=['scratch'])
    assert to_scratch.present(check_mode=False) is True
    assert to_scratch.actions == ['copy to scratch from local']
    assert hashlib.sha512(rbd_bytes(admin_rbd, scratch_pool, view.id)).hexdigest() == expected
    out2 = str(tmp_path / 'from-scratch.raw')
    catalog = Catalog(registry)
    Export(catalog, catalog.find(name=name), 'scratch', out2).run()
    assert sha512_of(out2) == expected


def test_rbd_to_rbd_in_one_cluster_is_a_deep_copy(registry, declare_rbd, image_request, make_raw, admin_rbd, ceph_cluster,
                                                  scratch_pool, monkeypatch):
    declare_rbd('ceph')
    declare_rbd('scratch', admin=True, pool=scratch_pool)
    raw = make_raw('disk.raw', [11, None, 12])
    name = unique('deep')
    assert image_request(name=name, src=raw, stores=['ceph']).present(check_mode=False)

    def no_streaming(*args, **kwargs):
        raise AssertionError('data was streamed through the host')
    monkeypatch.setattr(rbd_store.RbdStore, 'read_image_slices', no_streaming)
    request = image_request(name=name, stores=['scratch'])
    assert request.present(check_mode=False) is True
    info = request.result()
    assert info['stores'] == ['ceph', 'scratch']
    assert hashlib.sha512(rbd_bytes(admin_rbd, scratch_pool, info['id'])).hexdigest() == sha512_of(raw)
    import rbd
    with admin_rbd.open_ioctx(scratch_pool) as ioctx:
        with rbd.Image(ioctx, info['id'], read_only=True) as image:
            assert image.is_protected_snap('snap')
            assert json.loads(image.metadata_get(rbd_store.RECORD_KEY))['status'] == 'active'


def test_clone_is_copy_on_write_and_guards_its_parent(registry, declare, declare_rbd, image_request, make_raw, admin_rbd,
                                                      ceph_cluster):
    declare_rbd('ceph')
    declare('local')
    raw = make_raw('disk.raw', [21, 22])
    parent_name = unique('parent')
    assert image_request(name=parent_name, src=raw, stores=['ceph', 'local']).present(check_mode=False)
    clone_name = unique('child')
    request = image_request(name=clone_name, clone_from=parent_name, state='cloned')
    assert request.cloned(check_mode=False) is True
    child = request.result()
    assert child['stores'] == ['ceph', 'local'] and child['cloned_from'] != child['id']
    assert child['os_hash_value'] == sha512_of(raw)
    import rbd
    with admin_rbd.open_ioctx(ceph_cluster['rbd_pool']) as ioctx:
        with rbd.Image(ioctx, child['id'], read_only=True) as image:
            assert image.parent_info()[1] == child['cloned_from']  # (pool, image, snap): a COW clone, no data copied
    assert image_request(name=clone_name, clone_from=parent_name, state='cloned').cloned(check_mode=False) is False
    # The parent cannot go while its clone lives in the rbd store; nothing changes anywhere (local keeps it too)
    with pytest.raises(ImageError) as failure:
        image_request(name=parent_name, state='absent').absent(check_mode=False)
    assert 'has 1 clone' in str(failure.value) and 'no store was changed' in str(failure.value)
    assert Catalog(registry).find(name=parent_name).active_stores() == ['ceph', 'local']
    assert image_request(name=clone_name, state='absent').absent(check_mode=False) is True
    assert image_request(name=parent_name, state='absent').absent(check_mode=False) is True
    with admin_rbd.open_ioctx(ceph_cluster['rbd_pool']) as ioctx:
        assert child['cloned_from'] not in rbd.RBD().list(ioctx)
        with pytest.raises(Exception):
            ioctx.stat('multistore.slices.%s' % child['cloned_from'])


def test_a_qcow2_image_in_a_file_store_is_not_copied_into_rbd(registry, declare, declare_rbd, image_request, make_raw):
    declare_rbd('ceph')
    declare('local')
    source = qcow2_of(make_raw('disk.raw', [31]))
    name = unique('q')
    assert image_request(name=name, src=source, stores=['local']).present(check_mode=False)
    with pytest.raises(ImageError) as failure:
        image_request(name=name, stores=['ceph']).present(check_mode=False)
    assert 'raw images only' in str(failure.value)


def test_convert_to_raw_for_a_file_store(registry, declare, image_request, make_raw):
    declare('local')
    raw = make_raw('disk.raw', [41, None])
    request = image_request(name=unique('c'), src=qcow2_of(raw), convert_to='raw', stores=['local'])
    assert request.present(check_mode=False)
    info = request.result()
    assert info['disk_format'] == 'raw' and info['os_hash_value'] == sha512_of(raw)


def test_image_lock_excludes_a_second_owner_and_a_dead_owner_is_broken(registry, declare_rbd):
    declare_rbd('ceph')
    store = registry.open('ceph').backend
    image_id = str(uuid.uuid4())
    with store.image_lock(image_id) as held:
        other = rbd_lock.RbdLock(registry.open('ceph').backend, image_id, wait=1)
        assert other.busy()
        with pytest.raises(LockError):
            with other:
                pass
        held.refresh()
    assert not store.image_lock(image_id).busy()
    # A lock its owner never released (a crashed run) expires after its duration (here 2 s)
    crashed = rbd_lock.RbdLock(store, image_id, ttl=2)
    crashed.__enter__()
    crashed.held = False  # never unlocked, never renewed
    assert store.image_lock(image_id).busy()
    with rbd_lock.RbdLock(store, image_id, wait=10):
        pass


def test_an_import_of_a_known_size_sizes_the_image_before_its_first_write(
        registry, declare_rbd, image_request, make_raw, admin_rbd, ceph_cluster, monkeypatch):
    from ansible_collections.vmimages.multistore.plugins.module_utils.stores.rbd_writer import RbdSliceWriter
    declare_rbd('ceph')
    raw = make_raw('disk.raw', [61, 62, None, 63], tail=b'x' * 100)
    size = os.path.getsize(raw)
    seen = []
    original = RbdSliceWriter.put

    def put(writer, digest, data, index=None):
        seen.append(writer.image.size())  # growing the image mid-import would wait for every write in flight
        return original(writer, digest, data, index)
    monkeypatch.setattr(RbdSliceWriter, 'put', put)
    name = unique('sized')
    image_request(name=name, src=raw, stores=['ceph']).present(check_mode=False)
    assert seen == [size] * 4  # the zero slice is not written
    record = Catalog(registry).find(name=name).copies['ceph']
    assert rbd_bytes(admin_rbd, ceph_cluster['rbd_pool'], record['id']) == open(raw, 'rb').read()


def test_failed_import_leaves_nothing_in_the_pool(registry, declare_rbd, image_request, make_raw):
    declare_rbd('ceph')
    before = set(registry.open('ceph').backend.image_ids())
    raw = make_raw('disk.raw', [51, 52])
    with pytest.raises(Exception) as failure:
        image_request(name=unique('bad'), src=raw, stores=['ceph'], checksum='md5:' + '0' * 32).present(check_mode=False)
    assert 'checksum mismatch' in str(failure.value)
    assert set(registry.open('ceph').backend.image_ids()) == before


def test_cleanup_removes_leftovers_of_interrupted_imports(registry, declare_rbd, image_request, make_raw, admin_rbd, ceph_cluster):
    """The state a killed run leaves, made with the store's own calls: a lock that expires, an image with an
    'importing' record and half its data, an image with no record (killed inside a removal), a slice list alone."""
    from ansible_collections.vmimages.multistore.plugins.module_utils.images.cleanup import StoreCleanup
    from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SLICE_SIZE
    import rbd
    declare_rbd('ceph')
    store = registry.open('ceph').backend
    kept = make_raw('kept.raw', [61])
    assert image_request(name=unique('kept'), src=kept, stores=['ceph']).present(check_mode=False)
    half, bare, alone, busy = (str(uuid.uuid4()) for dummy in range(4))
    crashed = rbd_lock.RbdLock(store, half, ttl=1)
    crashed.__enter__()
    store.write_record(half, {'id': half, 'status': 'importing'})
    writer = store.slice_writer(half)
    writer.put('c' * 64, bytes(range(256)) * (SLICE_SIZE // 256), index=0)
    writer.commit()
    crashed.held = False  # the run dies holding it; the OSD lets the lock expire
    with admin_rbd.open_ioctx(ceph_cluster['rbd_pool']) as ioctx:
        rbd.RBD().create(ioctx, bare, 4 * MIB)
        ioctx.write_full('multistore.slices.%s' % alone, b'{}')
    store.write_record(busy, {'id': busy, 'status': 'importing'})
    with store.image_lock(busy):
        import time
        deadline = time.time() + 30
        while rbd_lock.RbdLock(store, half).busy() and time.time() < deadline:
            time.sleep(0.5)  # the OSD expires a 1 s lock within a few seconds
        changed, report = StoreCleanup(registry.open('ceph'), 86400).run(check_mode=True)
        assert changed is True and half in report['removed_images']
        assert half in rbd.RBD().list(registry.open('ceph').backend.ioctx())  # check mode touched nothing
        changed, report = StoreCleanup(registry.open('ceph'), 86400).run(check_mode=False)
    assert changed is True
    assert half in report['removed_images'] and busy not in report['removed_images']
    assert 'image %s: a run is importing it now' % busy in report['skipped']
    assert 'rbd image %s/%s' % (ceph_cluster['rbd_pool'], bare) in report['removed_staging']
    assert 'rados object %s/multistore.slices.%s' % (ceph_cluster['rbd_pool'], alone) in report['removed_staging']
    names = rbd.RBD().list(registry.open('ceph').backend.ioctx())
    assert half not in names and bare not in names and busy in names
    store.remove_image(busy)
