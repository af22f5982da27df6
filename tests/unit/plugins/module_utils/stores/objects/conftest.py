# -*- coding: utf-8 -*-
"""Fixtures for s3 and swift store tests: the session's real Ceph radosgw (tests/ceph), one fresh bucket per store.

The Swift user of the lab is a subuser of its S3 user, so a Swift container is a bucket of the same radosgw
user: the tests look at what either store wrote through one S3 client (``bucket_keys``).
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

from ansible_collections.vmimages.multistore.plugins.module_utils.backends import known as known_backends  # noqa: E402
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.declaration import StoreDeclaration  # noqa: E402
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.objectstore import ObjectStore  # noqa: E402
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.s3 import S3Store  # noqa: E402
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.swift import SwiftStore  # noqa: E402

from object_params import object_params  # noqa: E402

BACKENDS = {'s3': S3Store, 'swift': SwiftStore}


@pytest.fixture(params=['s3', 'swift'])
def kind(request):
    return request.param


@pytest.fixture(scope='session')
def s3_admin(ceph_cluster):
    """A plain boto3 client of the lab's user, to look at buckets from outside the store."""
    import boto3
    import botocore.config
    return boto3.session.Session().client(
        's3', endpoint_url=ceph_cluster['rgw_endpoint'], region_name=ceph_cluster['s3_region'],
        aws_access_key_id=ceph_cluster['s3_access_key'], aws_secret_access_key=ceph_cluster['s3_secret_key'],
        config=botocore.config.Config(s3={'addressing_style': 'path'}, request_checksum_calculation='when_required',
                                      response_checksum_validation='when_required'))


@pytest.fixture
def bucket_keys(s3_admin):
    def bucket_keys(bucket, prefix=''):
        """{key: size} of every object in ``bucket`` under ``prefix``; {} when the bucket does not exist."""
        found = {}
        try:
            for page in s3_admin.get_paginator('list_objects_v2').paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get('Contents') or ():
                    found[item['Key']] = item['Size']
        except s3_admin.exceptions.NoSuchBucket:
            return {}
        return found
    return bucket_keys


@pytest.fixture
def new_bucket(s3_admin, bucket_keys):
    """A function returning a fresh bucket name; the buckets are emptied and removed after the test."""
    made = []

    def new_bucket():
        name = 't-%s' % uuid.uuid4().hex[:12]
        made.append(name)
        return name
    yield new_bucket
    for name in made:
        try:
            for key in bucket_keys(name):
                s3_admin.delete_object(Bucket=name, Key=key)
            s3_admin.delete_bucket(Bucket=name)
        except Exception:  # radosgw stopped by a failed test: the session cluster goes away anyway
            pass


@pytest.fixture
def object_backends():
    """The registry knows s3 and swift (backends/known.py declares them)."""
    assert set(BACKENDS) <= set(known_backends.BACKENDS)


@pytest.fixture
def store_params(ceph_cluster):
    def store_params(kind, bucket, **extra):
        return object_params(ceph_cluster, kind, bucket, **extra)
    return store_params


@pytest.fixture
def make_backend(ceph_cluster, new_bucket):
    """An S3Store or SwiftStore on a fresh bucket (or ``bucket``), not declared anywhere."""
    def make_backend(kind, name='objects', bucket=None, **extra):
        return BACKENDS[kind](name, object_params(ceph_cluster, kind, bucket or new_bucket(), **extra))
    return make_backend


@pytest.fixture
def declare_object(registry, ceph_cluster, object_backends, new_bucket):
    """Declare an s3 or swift store with the store module's logic; return its backend."""
    def declare_object(name, kind, bucket=None, **extra):
        params = object_params(ceph_cluster, kind, bucket or new_bucket(), **extra)
        params['name'] = name
        StoreDeclaration(registry, params).present(check_mode=False)
        return registry.open(name).backend
    return declare_object


@pytest.fixture
def writers(monkeypatch):
    """Every slice writer an object store opens during the test, to read new_bytes and uploaded afterwards."""
    made = []
    original = ObjectStore.slice_writer

    def slice_writer(self, image_id):
        writer = original(self, image_id)
        made.append(writer)
        return writer
    monkeypatch.setattr(ObjectStore, 'slice_writer', slice_writer)
    return made
