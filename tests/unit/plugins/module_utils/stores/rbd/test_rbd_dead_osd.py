# -*- coding: utf-8 -*-
"""The cluster's only OSD stopped in the middle of an rbd import, on a real Ceph: the task fails within the store's
op_timeout with a message that says what to check (it does not hang), nothing is visible as an image meanwhile, and
once the OSD is back the re-run adopts what reached the cluster and writes only the rest."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import uuid

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import MultistoreError
from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.images.cleanup import StoreCleanup
from ansible_collections.vmimages.multistore.plugins.module_utils.images.transaction import Transfer

from image_files import sha512_of
from tests.ceph.pytest_ceph import osd_stopped
from test_rbd_writer import image_sha512

pytestmark = pytest.mark.ceph

OP_TIMEOUT = 5
SLICES = 12
STOP_AFTER = 5


def test_an_import_cut_by_a_dead_osd_fails_in_time_and_the_rerun_writes_only_the_rest(
        registry, declare_rbd, image_request, make_raw, admin_rbd, ceph_cluster, monkeypatch):
    declare_rbd('ceph', op_timeout=OP_TIMEOUT)
    name = 'dead-osd-%s' % uuid.uuid4().hex[:8]
    src = make_raw('a.raw', list(range(60, 60 + SLICES)))
    stopped = []
    original = Transfer._refresher

    def stopping_refresher(transfer, locks, progress, sinks):
        refresh = original(transfer, locks, progress, sinks)

        def stop_then_refresh(index):
            if index == STOP_AFTER and not stopped:
                stopped.append(osd_stopped(ceph_cluster))
                stopped[0].__enter__()
            refresh(index)
        return stop_then_refresh
    monkeypatch.setattr(Transfer, '_refresher', stopping_refresher)
    try:
        with pytest.raises(MultistoreError) as failure:
            image_request(name=name, src=src, stores=['ceph']).present(False)
    finally:
        if stopped:
            stopped[0].__exit__(None, None, None)
    monkeypatch.setattr(Transfer, '_refresher', original)
    message = str(failure.value)
    assert stopped and "store 'ceph'" in message, message
    assert 'did not answer within %d s (op_timeout)' % OP_TIMEOUT in message and 'OSDs of pool' in message, message
    assert 'Traceback' not in message
    # nothing half-visible: the import's record says importing, no image by that name
    view = Catalog(registry).find(name=name)
    assert view is None or view.active_stores() == [], view.copies
    store = registry.open('ceph').backend
    records = [record for record in store.read_records().values() if record and record.get('name') == name]
    # (the rollback could not remove it either: the OSD was down; store_cleanup would, the re-run adopts it)
    assert [record['status'] for record in records] == ['importing']
    again = image_request(name=name, src=src, stores=['ceph'])
    assert again.present(check_mode=False) is True
    image_id = again.image_id
    assert image_sha512(admin_rbd, ceph_cluster['rbd_pool'], image_id) == sha512_of(src)
    assert again.result()['os_hash_value'] == sha512_of(src)
    # what reached the cluster before the OSD stopped was adopted, not written again
    resumed = re.search(r'resumed: (\d+) slices were already there', again.actions[-1])
    assert resumed and 1 <= int(resumed.group(1)) < SLICES, again.actions
    changed, report = StoreCleanup(registry.open('ceph'), 86400).run(check_mode=True)
    assert image_id not in report['removed_images']
