# -*- coding: utf-8 -*-
"""Fixtures for the slice repository's tests: one fresh store over each blob back end (file, s3, swift).

The s3 and swift stores live on the session's real Ceph radosgw (tests/ceph), one fresh bucket per store.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import sys
import uuid

import pytest

_ROOT = os.path.abspath(__file__).rsplit(os.sep + 'tests' + os.sep, 1)[0]  # the repository root
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

# the session's Ceph (ceph_lab behind ceph_cluster) and the `ceph` marker (pytest_configure)
from tests.ceph.pytest_ceph import ceph_cluster, ceph_lab, pytest_configure  # noqa: E402,F401  pylint: disable=unused-import

from ansible_collections.vmimages.multistore.plugins.module_utils.stores.file import FileStore  # noqa: E402
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.s3 import S3Store  # noqa: E402
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.swift import SwiftStore  # noqa: E402

from object_params import object_params  # noqa: E402


@pytest.fixture(params=['file', 's3', 'swift'])
def repository(request, tmp_path):
    """A SliceRepository with its identity written, over the back end named by the parameter."""
    if request.param == 'file':
        store = FileStore('repo', {'path': str(tmp_path / 'store')})
    else:
        cluster = request.getfixturevalue('ceph_cluster')
        bucket = 't-%s' % uuid.uuid4().hex[:12]
        store = (S3Store if request.param == 's3' else SwiftStore)('repo', object_params(cluster, request.param, bucket))
    store.write_identity({'name': 'repo', 'type': store.kind})
    yield store
    if request.param != 'file':
        for key, _size in store.blobs.list(''):
            store.blobs.remove(key)
        store.close()
