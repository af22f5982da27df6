# -*- coding: utf-8 -*-
"""The store module's parameters for an rbd store on the test Ceph (rbd/, cinder/): a plain module, because test
directories each have a conftest.py and `from conftest import ...` finds whichever was imported first."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


def rbd_params(cluster, admin=False, **extra):
    params = {'type': 'rbd', 'pool': cluster['rbd_pool'], 'ceph_conf': cluster['conf']}
    if admin:
        params.update(user='admin', keyring=cluster['admin_keyring'])
    else:
        params.update(user=cluster['rbd_user'], keyring=cluster['rbd_keyring'])
    params.update(extra)
    return params
