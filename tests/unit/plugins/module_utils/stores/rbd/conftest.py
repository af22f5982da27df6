# -*- coding: utf-8 -*-
"""Fixtures for rbd store tests: the session's real Ceph (tests/ceph), rbd stores declared in it."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import sys
import uuid

import pytest

_ROOT = os.path.abspath(__file__).rsplit(os.sep + 'tests' + os.sep, 1)[0]  # the repository root
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.ceph.pytest_ceph import ceph_cluster, ceph_lab, pytest_configure, rgw_down  # noqa: E402,F401  pylint: disable=unused-import

from ansible_collections.vmimages.multistore.plugins.module_utils.stores.declaration import StoreDeclaration  # noqa: E402

from rbd_params import rbd_params  # noqa: E402


@pytest.fixture(scope='module')
def scratch_pool(ceph_cluster):
    """A pool of this test module's own (created by the admin declaration in the first test that needs it)."""
    return 't-%s' % uuid.uuid4().hex[:8]


@pytest.fixture
def declare_rbd(registry, ceph_cluster):
    def declare_rbd(name, admin=False, **extra):
        params = rbd_params(ceph_cluster, admin, **extra)
        params['name'] = name
        return StoreDeclaration(registry, params).present(check_mode=False)
    return declare_rbd


@pytest.fixture
def admin_rbd(ceph_cluster):
    """(rados cluster handle, function opening an ioctx) as client.admin, to look at what the store wrote."""
    import rados
    cluster = rados.Rados(conffile=ceph_cluster['conf'], rados_id='admin', conf={'keyring': ceph_cluster['admin_keyring']})
    cluster.connect(timeout=10)
    yield cluster
    cluster.shutdown()
