# -*- coding: utf-8 -*-
"""store_cleanup verify and repair on a real Ceph rbd store: bit rot made in the RADOS object under a range of the
image (so its protected snapshot, which exports and clones read, is damaged), found against the slice list's sha256,
repaired from a file store, or reported unrepairable and marked damaged."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import filecmp
import hashlib
import uuid

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.images.export import Export
from ansible_collections.vmimages.multistore.plugins.module_utils.images.verify import StoreVerify, repair_sources
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SLICE_SIZE

from image_files import slice_bytes

pytestmark = pytest.mark.ceph


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def unique(prefix):
    return '%s-%s' % (prefix, uuid.uuid4().hex[:8])


def verify(registry, check_mode=False, repair=False):
    return StoreVerify(registry.open('ceph'), repair_sources(registry) if repair else [], None, repair).run(check_mode)


def mine(entries, image_id):
    """The entries of one image (the session's pool holds other tests' images too)."""
    return [entry for entry in entries if [image['id'] for image in entry['images']] == [image_id]]


def rot(admin_rbd, pool, image_id, offset, data=b'rot'):
    """Change bytes under the image as a failing disk would: in its RADOS object, below librbd and its snapshots."""
    import rbd
    with admin_rbd.open_ioctx(pool) as ioctx:
        with rbd.Image(ioctx, image_id, read_only=True) as image:
            info = image.stat()
        number, within = divmod(offset, 1 << info['order'])
        ioctx.write('%s.%016x' % (info['block_name_prefix'], number), data, within)
        with rbd.Image(ioctx, image_id, snapshot='snap', read_only=True) as image:
            return image.read(offset - offset % SLICE_SIZE, SLICE_SIZE)


def test_rot_under_an_rbd_image_is_found_and_repaired_from_a_file_store(registry, declare, declare_rbd, image_request, make_raw,
                                                                        admin_rbd, ceph_cluster, tmp_path):
    declare_rbd('ceph')
    declare('central')
    name = unique('img')
    src = make_raw('a.raw', [1, 2, None, 3], tail=b'tail')
    image_request(name=name, src=src, stores=['central', 'ceph']).present(check_mode=False)
    image_id = Catalog(registry).find(name=name).id
    assert mine(verify(registry)[1]['corrupt'], image_id) == []

    seen = rot(admin_rbd, ceph_cluster['rbd_pool'], image_id, SLICE_SIZE + 4096)
    assert sha256(seen) != sha256(slice_bytes(2))  # the snapshot reads the rotten bytes
    changed, report = verify(registry, check_mode=True)
    assert changed is False
    expected = {'slice': sha256(slice_bytes(2)), 'size': SLICE_SIZE, 'offset': SLICE_SIZE, 'images': [{'id': image_id, 'name': name}]}
    assert mine(report['corrupt'], image_id) == [expected]
    assert report['verified_bytes'] >= 4 * SLICE_SIZE + 4 and report['throughput'] > 0

    changed, report = verify(registry, check_mode=True, repair=True)
    assert changed is True and {'slice': expected['slice'], 'offset': SLICE_SIZE, 'from': 'central'} in report['repaired']
    changed, report = verify(registry, repair=True)
    assert changed is True and {'slice': expected['slice'], 'offset': SLICE_SIZE, 'from': 'central'} in report['repaired']
    assert mine(report['unrepairable'], image_id) == []
    catalog = Catalog(registry)
    dest = str(tmp_path / 'a.out')
    Export(catalog, catalog.find(name=name), 'ceph', dest).run()
    assert filecmp.cmp(src, dest, shallow=False)
    assert mine(verify(registry)[1]['corrupt'], image_id) == []


def test_rot_in_an_image_no_other_store_holds_is_unrepairable_and_marked(registry, declare_rbd, image_request, make_raw,
                                                                         admin_rbd, ceph_cluster):
    declare_rbd('ceph')
    name = unique('only')
    image_request(name=name, src=make_raw('b.raw', [4, 5]), stores=['ceph']).present(check_mode=False)
    image_id = Catalog(registry).find(name=name).id
    rot(admin_rbd, ceph_cluster['rbd_pool'], image_id, 10)
    changed, report = verify(registry, repair=True)
    assert changed is True and image_id in report['marked_damaged']
    assert mine(report['unrepairable'], image_id) == [{'slice': sha256(slice_bytes(4)), 'offset': 0,
                                                       'images': [{'id': image_id, 'name': name}]}]
    info = Catalog(registry).find(name=name).describe()
    assert info['damaged_in_stores'] == ['ceph'] and info['stores'] == ['ceph']
    # marked once: the next repair leaves the record alone
    assert image_id not in verify(registry, repair=True)[1]['marked_damaged']


def test_rot_in_a_parent_shows_in_its_clone_and_one_repair_heals_both(registry, declare, declare_rbd, image_request, make_raw,
                                                                      admin_rbd, ceph_cluster, tmp_path):
    declare_rbd('ceph')
    declare('central')
    parent_name, clone_name = unique('parent'), unique('child')
    src = make_raw('p.raw', [31, 32])
    image_request(name=parent_name, src=src, stores=['ceph', 'central']).present(check_mode=False)
    image_request(name=clone_name, clone_from=parent_name, state='cloned').cloned(check_mode=False)
    catalog = Catalog(registry)
    parent_id, child_id = catalog.find(name=parent_name).id, catalog.find(name=clone_name).id
    rot(admin_rbd, ceph_cluster['rbd_pool'], parent_id, SLICE_SIZE + 7)
    corrupt = verify(registry)[1]['corrupt']
    assert [entry['offset'] for entry in mine(corrupt, parent_id) + mine(corrupt, child_id)] == [SLICE_SIZE, SLICE_SIZE]

    changed, report = verify(registry, repair=True)
    healed = {'slice': sha256(slice_bytes(32)), 'offset': SLICE_SIZE, 'from': 'central'}
    assert changed is True and report['repaired'].count(healed) == 2
    assert mine(report['unrepairable'], parent_id) + mine(report['unrepairable'], child_id) == []
    assert not set([parent_id, child_id]) & set(report['marked_damaged'])
    import rbd
    with admin_rbd.open_ioctx(ceph_cluster['rbd_pool']) as ioctx:
        with rbd.Image(ioctx, child_id, read_only=True) as image:
            prefix = image.stat()['block_name_prefix']
        assert [obj.key for obj in ioctx.list_objects() if obj.key.startswith(prefix)] == []  # the clone still shares its parent's data
    dest = str(tmp_path / 'child.out')
    Export(catalog, Catalog(registry).find(name=clone_name), 'ceph', dest).run()
    assert filecmp.cmp(src, dest, shallow=False)
