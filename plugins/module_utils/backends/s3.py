# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The s3 back end: a bucket (radosgw, MinIO, AWS) holding deduplicated slices, like a file store."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.vmimages.multistore.plugins.module_utils.backends.backend import DEDUP_SLICES, Backend
from ansible_collections.vmimages.multistore.plugins.module_utils.backends.objects import configure_objects, object_options


def configure(params):
    return configure_objects(params, 'bucket')


def open_store(name, declaration):
    from ansible_collections.vmimages.multistore.plugins.module_utils.stores.s3 import S3Store
    return S3Store(name, declaration)


BACKEND = Backend(
    's3',
    options=object_options('bucket'),
    capabilities=(DEDUP_SLICES,),
    place_keys=('endpoint', 'bucket', 'prefix'),
    location_form='s3://<endpoint host>/<bucket>/<prefix>images/<image-id>',
    configure=configure,
    open_store=open_store,
    packages=('python3-boto3',),
    summary='endpoint, bucket, access_key, secret_key, region',
    needs=('bucket',),
)
