# -*- coding: utf-8 -*-
"""An rbd import killed with SIGKILL mid-write, on a real Ceph: the re-run breaks the dead run's lock at once, adopts
the ranges already written and ends with exactly the new image, whatever the killed run had written."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import uuid

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.images.cleanup import StoreCleanup
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SLICE_SIZE
from ansible_collections.vmimages.multistore.plugins.module_utils.stores import rbd_lock

from image_files import sha512_of
from killed_run import kill_group, start_paused

pytestmark = pytest.mark.ceph


def image_sha512(admin_rbd, pool, image_id):
    import rbd
    with admin_rbd.open_ioctx(pool) as ioctx:
        with rbd.Image(ioctx, image_id, snapshot='snap', read_only=True) as image:
            digest = hashlib.sha512()
            for offset in range(0, image.size(), SLICE_SIZE):
                digest.update(image.read(offset, min(SLICE_SIZE, image.size() - offset)))
            return digest.hexdigest()


def killed_import(registry, name, src, kill_after):
    """A real import into the rbd store 'ceph', killed with its process group after ``kill_after`` slices were written."""
    run, _pid = start_paused(registry, name, src, ['ceph'], 'rbd:%d' % kill_after)
    kill_group(run)
    run.wait()
    store = registry.open('ceph').backend
    found = [image_id for image_id, record in store.read_records().items() if record and record.get('name') == name]
    assert len(found) == 1 and store.read_record(found[0])['status'] == 'importing'
    return found[0]


def test_a_killed_import_is_adopted_and_its_lock_broken_at_once(registry, declare_rbd, image_request, make_raw, admin_rbd,
                                                                ceph_cluster, monkeypatch):
    declare_rbd('ceph')
    name = 'resume-%s' % uuid.uuid4().hex[:8]
    src = make_raw('a.raw', list(range(1, 11)), tail=b'tail')
    image_id = killed_import(registry, name, src, 6)
    # the re-run may not wait for the OSD to expire the dead run's 60 s lock: a lock it does not break fails at once
    enter = rbd_lock.RbdLock.__enter__

    def enter_without_waiting(self):
        self.wait = 0
        return enter(self)
    monkeypatch.setattr(rbd_lock.RbdLock, '__enter__', enter_without_waiting)
    again = image_request(name=name, src=src, stores=['ceph'])
    assert again.present(check_mode=False)
    assert again.image_id == image_id
    assert 'resumed: 6 slices were already there' in again.actions[-1]
    assert image_sha512(admin_rbd, ceph_cluster['rbd_pool'], image_id) == sha512_of(src)
    assert again.result()['os_hash_value'] == sha512_of(src)
    changed, report = StoreCleanup(registry.open('ceph'), 86400).run(check_mode=True)
    assert image_id not in report['removed_images']


def test_what_the_killed_run_wrote_is_replaced_where_the_new_image_differs(registry, declare_rbd, image_request, make_raw,
                                                                           admin_rbd, ceph_cluster):
    """The re-run imports other bytes (the source changed): adopted where equal, rewritten where different, zeroed
    where the new image has zeros, cut where it is shorter."""
    declare_rbd('ceph')
    name = 'changed-%s' % uuid.uuid4().hex[:8]
    first = make_raw('first.raw', [1, 2, 3, 4, 5, 6, 7, 8])
    image_id = killed_import(registry, name, first, 7)
    second = make_raw('second.raw', [1, None, 33, 4, None], tail=b'x' * 1000)
    again = image_request(name=name, src=second, stores=['ceph'])
    assert again.present(check_mode=False) and again.image_id == image_id
    writer_resumed = again.actions[-1]
    assert 'resumed: ' in writer_resumed
    assert image_sha512(admin_rbd, ceph_cluster['rbd_pool'], image_id) == sha512_of(second)
    record = registry.open('ceph').backend.read_record(image_id)
    assert record['status'] == 'active' and record['size'] == 5 * SLICE_SIZE + 1000
