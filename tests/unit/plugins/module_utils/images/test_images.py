# -*- coding: utf-8 -*-
"""Import, copy, update and delete images across real file stores."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import json
import os
import subprocess

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import (
    FormatError, ImageError, SourceError, StoreError, UnsafeImageError)
from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SLICE_SIZE

from image_files import leftovers, slice_bytes, stored_slices


def digest_of_file(path, name):
    with open(path, 'rb') as handle:
        return hashlib.new(name, handle.read()).hexdigest()


def test_import_dedups_slices_and_skips_zeros(declare, image_request, make_raw):
    path = declare('central')
    src = make_raw('a.raw', [1, 1, 2, None, 1], tail=b'tail')
    request = image_request(name='img', src=src, stores=['central'], tags=['x'])
    assert request.present(check_mode=False) is True
    info = request.result()
    assert info['status'] == 'active' and info['stores'] == ['central']
    assert info['size'] == 5 * SLICE_SIZE + 4 and info['virtual_size'] == info['size']
    assert info['checksum'] == digest_of_file(src, 'md5')
    assert info['os_hash_algo'] == 'sha512' and info['os_hash_value'] == digest_of_file(src, 'sha512')
    assert info['disk_format'] == 'raw' and info['image_type'] == 'os' and info['tags'] == ['x']
    assert info['locations'][0]['url'] == 'file://%s/images/%s' % (path, info['id'])
    expected = sorted(set(hashlib.sha256(data).hexdigest() for data in (slice_bytes(1), slice_bytes(2), b'tail')))
    assert stored_slices(path) == expected
    slice_list = json.load(open(os.path.join(path, 'images', info['id'], 'slices.json')))
    assert slice_list['slices'][3] is None and slice_list['slices'][0] == slice_list['slices'][1]
    assert leftovers(path) == ['images/%s' % info['id']]


def test_second_run_is_a_noop_that_reads_no_data(declare, image_request, make_raw):
    declare('central')
    src = make_raw('a.raw', [1, 2])
    image_request(name='img', src=src, stores=['central']).present(False)
    os.unlink(src)  # the source is gone: a no-op run must not need it
    request = image_request(name='img', src=src, stores=['central'])
    assert request.present(check_mode=True) is False
    assert request.present(check_mode=False) is False and request.actions == []


def test_check_mode_predicts_and_touches_nothing(declare, image_request, make_raw):
    path = declare('central')
    request = image_request(name='img', src=make_raw('a.raw', [1]), stores=['central'])
    assert request.present(check_mode=True) is True
    assert request.actions and stored_slices(path) == [] and leftovers(path) == []


def test_import_into_two_stores_then_copy_moves_only_missing_slices(declare, image_request, make_raw, registry):
    central, edge, third = declare('central'), declare('edge'), declare('third')
    first = image_request(name='one', src=make_raw('one.raw', [1, 2, 3]), stores=['central', 'edge'])
    first.present(False)
    assert first.result()['stores'] == ['central', 'edge']
    image_request(name='shared', src=make_raw('shared.raw', [1, 2]), stores=['third']).present(False)
    inodes = dict((name, os.stat(os.path.join(third, 'slices', name[:2], name)).st_ino) for name in stored_slices(third))
    copy = image_request(name='one', stores=['third'])
    assert copy.present(False) is True and copy.actions == ['copy to third from central']
    assert copy.result()['stores'] == ['central', 'edge', 'third']
    for name, inode in inodes.items():  # slices third already had were not written again
        assert os.stat(os.path.join(third, 'slices', name[:2], name)).st_ino == inode
    assert stored_slices(third) == stored_slices(central)
    # the copy is a full image: same record, same digests
    records = [json.load(open(os.path.join(p, 'images', first.image_id, 'record.json'))) for p in (central, third)]
    assert records[0]['os_hash_value'] == records[1]['os_hash_value'] and records[1]['status'] == 'active'


def test_delete_from_one_store_keeps_slices_other_images_use(declare, image_request, make_raw):
    path = declare('central')
    declare('edge')
    image_request(name='a', src=make_raw('a.raw', [1, 2]), stores=['central', 'edge']).present(False)
    image_request(name='b', src=make_raw('b.raw', [2, 3]), stores=['central']).present(False)
    request = image_request(name='a', stores=['central'], state='absent')
    assert request.absent(check_mode=False) is True
    assert request.released == SLICE_SIZE  # slice 1 only: slice 2 belongs to b too
    assert stored_slices(path) == sorted(hashlib.sha256(slice_bytes(n)).hexdigest() for n in (2, 3))
    assert request.result()['stores'] == ['edge']
    everywhere = image_request(name='a', state='absent')
    assert everywhere.absent(check_mode=False) is True and everywhere.result() == {}
    assert image_request(name='a', state='absent').absent(check_mode=False) is False


def test_protected_image_is_not_deleted(declare, image_request, make_raw):
    declare('central')
    image_request(name='a', src=make_raw('a.raw', [1]), stores=['central'], protected=True).present(False)
    with pytest.raises(ImageError, match='protected'):
        image_request(name='a', state='absent').absent(False)


def test_metadata_update_touches_every_copy(declare, image_request, make_raw):
    declare('central')
    declare('edge')
    image_request(name='a', src=make_raw('a.raw', [1]), stores=['central', 'edge'], min_ram=512).present(False)
    request = image_request(name='a', stores=['central', 'edge'], min_ram=1024, properties={'os_distro': 'debian'})
    assert request.present(False) is True
    assert request.before['min_ram'] == 512 and request.after['min_ram'] == 1024
    catalog_view = request.result()
    assert catalog_view['min_ram'] == 1024 and catalog_view['properties'] == {'os_distro': 'debian'}
    assert image_request(name='a', min_ram=1024).present(False) is False


def test_checksum_mismatch_leaves_no_trace(declare, image_request, make_raw):
    path = declare('central')
    with pytest.raises(SourceError, match='checksum mismatch'):
        image_request(name='a', src=make_raw('a.raw', [1, 2]), stores=['central'], checksum='sha256:' + '0' * 64).present(False)
    assert stored_slices(path) == [] and leftovers(path) == []


def test_good_checksum_is_remembered(declare, image_request, make_raw):
    declare('central')
    src = make_raw('a.raw', [1])
    image_request(name='a', src=src, stores=['central'], checksum='sha256:' + digest_of_file(src, 'sha256')).present(False)
    with pytest.raises(ImageError, match='new version needs a new name'):
        image_request(name='a', src=src, stores=['central'], checksum='sha256:' + '1' * 64).present(False)


def test_declared_format_must_match(declare, image_request, make_raw):
    path = declare('central')
    with pytest.raises(FormatError, match='qcow2'):
        image_request(name='a', src=make_raw('a.raw', [1]), stores=['central'], disk_format='qcow2').present(False)
    assert leftovers(path) == [] and stored_slices(path) == []


def test_qcow2_with_backing_file_is_refused(declare, image_request, tmp_path):
    path = declare('central')
    base = str(tmp_path / 'base.raw')
    top = str(tmp_path / 'top.qcow2')
    subprocess.check_call(['qemu-img', 'create', '-q', '-f', 'raw', base, '1M'])
    subprocess.check_call(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', base, '-F', 'raw', top])
    with pytest.raises(UnsafeImageError, match='backing'):
        image_request(name='a', src=top, stores=['central']).present(False)
    assert leftovers(path) == [] and stored_slices(path) == []


def test_qcow2_import_records_virtual_size(declare, image_request, tmp_path):
    declare('central')
    src = str(tmp_path / 'disk.qcow2')
    subprocess.check_call(['qemu-img', 'create', '-q', '-f', 'qcow2', src, '3G'])
    request = image_request(name='q', src=src, stores=['central'], disk_format='qcow2')
    request.present(False)
    info = request.result()
    assert info['disk_format'] == 'qcow2' and info['virtual_size'] == 3 << 30 and info['size'] == os.path.getsize(src)


def test_quota_bytes_all_or_nothing(declare, image_request, make_raw):
    big = declare('central')
    small = declare('small', quota={'bytes': SLICE_SIZE})
    with pytest.raises(StoreError, match="'small' quota exceeded"):
        image_request(name='a', src=make_raw('a.raw', [1, 2]), stores=['central', 'small']).present(False)
    for path in (big, small):
        assert leftovers(path) == [] and stored_slices(path) == []


def test_allow_failure_keeps_the_stores_that_succeeded(declare, image_request, make_raw):
    declare('central')
    small = declare('small', quota={'bytes': SLICE_SIZE})
    request = image_request(name='a', src=make_raw('a.raw', [1, 2]), stores=['central', 'small'], allow_failure=True)
    assert request.present(False) is True
    info = request.result()
    assert info['status'] == 'active' and info['stores'] == ['central'] and info['failed_import'] == ['small']
    assert request.failed_import[0]['store'] == 'small' and stored_slices(small) == []
    # raising the quota and running again retries only the failed store, as a copy
    declare('small', quota={'bytes': 10 * SLICE_SIZE})
    retry = image_request(name='a', src='/nonexistent', stores=['central', 'small'], allow_failure=True)
    assert retry.present(False) is True and retry.actions == ['copy to small from central']
    assert retry.result()['stores'] == ['central', 'small']


def test_quota_images(declare, image_request, make_raw):
    declare('central', quota={'images': 1})
    image_request(name='a', src=make_raw('a.raw', [1]), stores=['central']).present(False)
    with pytest.raises(StoreError, match='quota.images is 1'):
        image_request(name='b', src=make_raw('b.raw', [2]), stores=['central']).present(False)


def test_disabled_unknown_and_missing(declare, image_request, make_raw):
    declare('central')
    declare('dcn0', enabled=False)
    with pytest.raises(StoreError, match="'dcn0' is disabled: enable it with enabled: true"):
        image_request(name='a', src=make_raw('a.raw', [1]), stores=['central', 'dcn0']).present(False)
    with pytest.raises(StoreError, match="'nowhere' is not declared.*known: central, dcn0"):
        image_request(name='a', src=make_raw('a.raw', [1]), stores=['nowhere']).present(False)
    with pytest.raises(SourceError, match='does not exist'):
        image_request(name='a', src='/no/such/file.img', stores=['central']).present(False)
    with pytest.raises(ImageError, match='give src'):
        image_request(name='zzz', stores=['central']).present(False)


@pytest.mark.skipif(os.geteuid() != 0, reason='chattr +i needs root')
def test_store_not_writable(declare, image_request, make_raw):
    path = declare('central')
    slices = os.path.join(path, 'slices')
    subprocess.check_call(['chattr', '+i', slices])
    try:
        with pytest.raises(StoreError, match='not writable'):
            image_request(name='a', src=make_raw('a.raw', [1]), stores=['central']).present(False)
    finally:
        subprocess.check_call(['chattr', '-i', slices])
    assert leftovers(path) == []


def test_duplicate_names_are_ambiguous(declare, image_request, make_raw):
    declare('central')
    image_request(name='twin', id='11111111-1111-4111-8111-111111111111', src=make_raw('a.raw', [1]), stores=['central']).present(False)
    image_request(name='twin', id='22222222-2222-4222-8222-222222222222', src=make_raw('b.raw', [2]), stores=['central']).present(False)
    with pytest.raises(ImageError, match='2 images are named'):
        image_request(name='twin', stores=['central']).present(False)


def test_edge_store_needs_central_first(declare, image_request, make_raw):
    declare('central', site_role='central')
    declare('dcn0', site_role='edge')
    src = make_raw('a.raw', [1])
    with pytest.raises(ImageError, match='central store .central. must hold the image first'):
        image_request(name='a', src=src, stores=['dcn0']).present(False)
    request = image_request(name='a', src=src, stores=['dcn0', 'central'])
    request.present(False)
    assert request.result()['stores'] == ['central', 'dcn0']


def test_interrupted_import_is_reported_and_completed_on_rerun(declare, image_request, make_raw, registry):
    path = declare('central')
    image_id = '33333333-3333-4333-8333-333333333333'
    # what a run killed mid-import leaves: a placeholder record, a staged slice, a lock of a dead process
    os.makedirs(os.path.join(path, 'images', image_id))
    json.dump({'id': image_id, 'name': 'a', 'status': 'importing'}, open(os.path.join(path, 'images', image_id, 'record.json'), 'w'))
    # its name index entry (written before the first record)
    os.makedirs(os.path.join(path, 'names', hashlib.sha256(b'a').hexdigest()))
    open(os.path.join(path, 'names', hashlib.sha256(b'a').hexdigest(), image_id), 'w').close()
    os.makedirs(os.path.join(path, 'staging', image_id + '-dead'))
    json.dump({'token': 'x', 'host': os.uname()[1], 'pid': 2 ** 22 + 1, 'expires_at': 2 ** 40},
              open(os.path.join(path, 'locks', image_id + '.lock'), 'w'))
    view = Catalog(registry).find(image_id)
    assert view.describe()['failed_import'] == ['central'] and view.describe()['status'] == 'killed'
    request = image_request(name='a', src=make_raw('a.raw', [1]), stores=['central'])
    assert request.present(False) is True
    assert request.result()['stores'] == ['central'] and request.image_id == image_id


def test_new_version_stores_only_its_new_slices(declare, image_request, make_raw):
    path = declare('central')
    image_request(name='v1', src=make_raw('v1.raw', [1, 2, 3]), stores=['central']).present(False)
    shared = [hashlib.sha256(slice_bytes(n)).hexdigest() for n in (1, 3)]
    inodes = dict((d, os.stat(os.path.join(path, 'slices', d[:2], d)).st_ino) for d in shared)
    image_request(name='v2', src=make_raw('v2.raw', [1, 4, 3]), stores=['central']).present(False)
    assert len(stored_slices(path)) == 4
    for digest, inode in inodes.items():  # not written again
        assert os.stat(os.path.join(path, 'slices', digest[:2], digest)).st_ino == inode


def test_edge_never_holds_an_image_central_lacks_even_with_allow_failure(declare, image_request, make_raw):
    declare('central', site_role='central', quota={'bytes': SLICE_SIZE})
    edge = declare('dcn0', site_role='edge')
    request = image_request(name='a', src=make_raw('a.raw', [1, 2]), stores=['central', 'dcn0'], allow_failure=True)
    with pytest.raises(StoreError, match='no central store holds'):
        request.present(False)
    assert stored_slices(edge) == [] and leftovers(edge) == []


def test_failed_import_record_is_not_an_image_for_quota(declare, image_request, make_raw, registry):
    declare('ok')
    declare('q', quota={'bytes': SLICE_SIZE + SLICE_SIZE // 2, 'images': 1})
    image_request(name='a', src=make_raw('a.raw', [1, 2]), stores=['ok', 'q'], allow_failure=True).present(False)
    from ansible_collections.vmimages.multistore.plugins.module_utils.stores.declaration import describe
    assert describe(registry.open('q'))['image_count'] == 0
    request = image_request(name='b', src=make_raw('b.raw', [3]), stores=['q'])
    assert request.present(False) is True and request.result()['stores'] == ['q']


def test_all_stores_skips_disabled_and_allow_failure_skips_disconnected(declare, image_request, make_raw):
    declare('central')
    declare('maint', enabled=False)
    gone = declare('gone')
    os.rename(os.path.join(gone, 'multistore.json'), os.path.join(gone, 'away.json'))
    with pytest.raises(StoreError, match="'gone' is disconnected"):
        image_request(name='a', src=make_raw('a.raw', [1]), all_stores=True).present(False)
    request = image_request(name='a', src=make_raw('a.raw', [1]), all_stores=True, allow_failure=True)
    assert request.present(False) is True
    assert request.result()['stores'] == ['central'] and [f['store'] for f in request.failed_import] == ['gone']


def _failing_commit(monkeypatch, failing_root):
    """ENOSPC at commit time in one store: a mock, since a full disk at exactly that moment cannot be arranged for real."""
    from ansible_collections.vmimages.multistore.plugins.module_utils.stores import file as file_store
    import errno
    original = file_store.FileSliceWriter.commit

    def commit(self):
        if self.store.root == failing_root:
            raise OSError(errno.ENOSPC, 'No space left on device')
        return original(self)
    monkeypatch.setattr(file_store.FileSliceWriter, 'commit', commit)


def test_commit_failure_of_one_store_with_allow_failure_keeps_the_others(declare, image_request, make_raw, monkeypatch):
    declare('a')
    failing = declare('b')
    declare('c')
    _failing_commit(monkeypatch, failing)
    request = image_request(name='img', src=make_raw('x.raw', [1, 2]), stores=['a', 'b', 'c'], allow_failure=True)
    assert request.present(check_mode=False) is True
    info = request.result()
    assert info['stores'] == ['a', 'c']  # the store after the failing one was committed too
    assert info['failed_import'] == ['b']
    assert [f['store'] for f in request.failed_import] == ['b']
    assert 'No space left on device' in request.failed_import[0]['error']


def test_commit_failure_without_allow_failure_rolls_back_committed_stores(declare, image_request, make_raw, monkeypatch):
    path_a = declare('a')
    failing = declare('b')
    _failing_commit(monkeypatch, failing)
    with pytest.raises(StoreError) as failure:
        image_request(name='img', src=make_raw('x.raw', [1, 2]), stores=['a', 'b']).present(check_mode=False)
    assert "store 'b': commit failed (No space left on device); no store was changed" in str(failure.value)
    assert stored_slices(path_a) == []
    assert Catalog(image_request(name='img').catalog.registry).find(name='img') is None
