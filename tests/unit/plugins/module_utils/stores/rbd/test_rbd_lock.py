# -*- coding: utf-8 -*-
"""The rbd image lock on a real Ceph: its owner's identity, and who may break it (a killed run on this host: see
test_rbd_writer.py; a live owner or one on another host: nobody, until the OSD expires it)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import uuid

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import LockError
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.rbd_lock import RbdLock

pytestmark = pytest.mark.ceph


def test_a_lock_of_a_live_owner_or_of_another_host_is_not_broken(registry, declare_rbd):
    declare_rbd('ceph')
    store = registry.open('ceph').backend
    image_id = str(uuid.uuid4())
    with RbdLock(store, image_id) as held:
        owner = held.owner()[0]
        assert owner['pid'] > 0 and 'started' in owner and 'boot_id' in owner
        # the same lock seen as another host's run (its pid means nothing here): kept until the OSD expires it
        store.ioctx().write_full(held.key, b'{"host": "elsewhere", "pid": 1, "started": 1}')
        other = RbdLock(store, image_id, wait=1)
        assert other.busy()
        with pytest.raises(LockError, match='elsewhere'):
            other.__enter__()
