# -*- coding: utf-8 -*-
"""The store module's parameters for an s3 or swift store on the test Ceph's radosgw (stores/objects/, stores/)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


def object_params(cluster, kind, bucket, **extra):
    """The store module's parameters for an s3 or swift store in ``bucket`` of the lab's radosgw."""
    if kind == 's3':
        params = {'type': 's3', 'endpoint': cluster['rgw_endpoint'], 'bucket': bucket, 'access_key': cluster['s3_access_key'],
                  'secret_key': cluster['s3_secret_key'], 'region': cluster['s3_region']}
    else:
        params = {'type': 'swift', 'endpoint': cluster['swift_auth_url'], 'container': bucket, 'access_key': cluster['swift_user'],
                  'secret_key': cluster['swift_key']}
    params.update(extra)
    return params
