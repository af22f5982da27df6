# -*- coding: utf-8 -*-
"""Fixtures for cinder store tests: the session's real Ceph and a real Cinder on it (tests/ceph, tests/cinder)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import sys
import uuid

import pytest

_ROOT = os.path.abspath(__file__).rsplit(os.sep + 'tests' + os.sep, 1)[0]  # the repository root
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.ceph.pytest_ceph import ceph_cluster, ceph_lab, rgw_down  # noqa: E402,F401  pylint: disable=unused-import
from tests.cinder.pytest_cinder import (  # noqa: E402,F401  pylint: disable=unused-import
    cinder_cloud, cinder_lab, cinder_volume_down, pytest_configure, rabbitmq_down)

from ansible_collections.vmimages.multistore.plugins.module_utils.stores.declaration import StoreDeclaration  # noqa: E402


@pytest.fixture
def cinder_params(cinder_cloud):
    """The store module's parameters for a cinder store on the lab's Cinder (no Keystone: its noauth endpoint)."""
    def cinder_params(volume_type='ceph-a', **extra):
        params = {'type': 'cinder', 'endpoint': cinder_cloud['endpoint'], 'user': cinder_cloud['user'],
                  'project': cinder_cloud['project'], 'volume_type': volume_type, 'keyring': cinder_cloud['ceph_keyring']}
        params.update(extra)
        return params
    return cinder_params


@pytest.fixture
def declare_cinder(registry, cinder_params):
    def declare_cinder(name, volume_type='ceph-a', **extra):
        params = cinder_params(volume_type, **extra)
        params['name'] = name
        return StoreDeclaration(registry, params).present(check_mode=False)
    return declare_cinder


@pytest.fixture
def cinder_project(cinder_cloud):
    """A project of this test's own: the noauth token names it, so each test sees only its own volumes (and
    its own store identity volumes), and the volumes are deleted after it."""
    from tests.cinder.pytest_cinder import cinder_api
    project = uuid.uuid4().hex
    cloud = dict(cinder_cloud, project=project)
    yield project
    status, body = cinder_api(dict(cloud, auth_token='%s:%s' % (cloud['user'], project)), 'GET', '/v3/volumes/detail')
    for volume in (body or {}).get('volumes', []) if status == 200 else []:
        cinder_api(dict(cloud, auth_token='%s:%s' % (cloud['user'], project)), 'POST', '/v3/volumes/%s/action' % volume['id'],
                   {'os-reset_status': {'status': 'available', 'attach_status': 'detached'}})
        cinder_api(dict(cloud, auth_token='%s:%s' % (cloud['user'], project)), 'DELETE', '/v3/volumes/%s' % volume['id'])


@pytest.fixture
def keystone_params(cinder_cloud):
    """The store module's parameters for a cinder store reached through the lab's Keystone (user and project
    `multistore`, role member, the cinder-api that runs with auth_strategy = keystone). The project's volumes are
    deleted after the test, through Keystone as that user."""
    keystone = cinder_cloud['keystone']

    def keystone_params(volume_type='ceph-b', **extra):
        params = {'type': 'cinder', 'auth_url': keystone['auth_url'], 'user': keystone['user'],
                  'password': keystone['password'], 'project': keystone['project'],
                  'user_domain': keystone['user_domain'], 'project_domain': keystone['project_domain'],
                  'region': keystone['region'], 'volume_type': volume_type, 'keyring': cinder_cloud['ceph_keyring']}
        params.update(extra)
        return params
    yield keystone_params
    from ansible_collections.vmimages.multistore.plugins.module_utils.stores.cinder_volumes import CinderVolumes
    volumes = CinderVolumes('teardown', keystone_params())
    for volume in volumes.client().volumes.list():
        volumes.delete(volume.id)
