# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cinder back end: one raw Cinder volume per image, as Glance's cinder store keeps it (seed: Glance on Cinder).

The volume is named ``image-<id>`` with the metadata Glance writes (``glance_image_id``, ``image_size``,
``image_owner``) and is read-only once sealed; data goes through os-brick's connector for the volume's back end
(for RBD: librbd, no kernel device). Cinder is reached through Keystone v3 (``auth_url`` ...) or, for a Cinder
without Keystone, its no-auth ``endpoint``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re

from ansible_collections.vmimages.multistore.plugins.module_utils.backends.backend import COW_CLONE, RAW_ONLY, Backend, Option
from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import InvalidArgument
from ansible_collections.vmimages.multistore.plugins.module_utils.common.validation import check_endpoint

# Cinder names: volume types and availability zones are free text up to 255 characters; we keep them printable.
NAME = re.compile(r'^[^\x00-\x1f\x7f]{1,255}$')


def _name(params, key):
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not NAME.match(value):
        raise InvalidArgument('%s %r is invalid: give the Cinder name (1-255 printable characters)' % (key, value))
    return value


def configure(params):
    """Keystone v3 (auth_url, user, password, project, domains, region) or a no-auth endpoint, and the volume type."""
    if bool(params.get('auth_url')) == bool(params.get('endpoint')):
        raise InvalidArgument('a cinder store needs either auth_url (Keystone v3, with user, password and project) or endpoint '
                              '(the URL of a Cinder API without Keystone, such as http://cinder.example.org:8776/v3), not both')
    declaration = {'validate_certs': params.get('validate_certs', True) is not False}
    if params.get('auth_url'):
        declaration['auth_url'] = check_endpoint(params['auth_url'], 'auth_url')
        missing = [key for key in ('user', 'password', 'project') if not params.get(key)]
        if missing:
            raise InvalidArgument('a cinder store with auth_url needs %s (the Keystone user, its password and the project)'
                                  % ', '.join(missing))
        declaration.update(user=params['user'], password=params['password'], project=params['project'],
                           user_domain=_name(params, 'user_domain') or 'Default',
                           project_domain=_name(params, 'project_domain') or 'Default')
    else:
        declaration['endpoint'] = check_endpoint(params['endpoint'])
        # No Keystone: Cinder's noauth middleware takes the user and project from the token "user:project".
        declaration.update(user=params.get('user') or 'admin', project=params.get('project') or params.get('user') or 'admin')
        if params.get('password'):
            raise InvalidArgument('a cinder store with endpoint (no Keystone) takes no password')
    if not params.get('volume_type'):
        raise InvalidArgument('a cinder store needs volume_type: the Cinder volume type of its back end (each store is one back end)')
    declaration['volume_type'] = _name(params, 'volume_type')
    for key in ('availability_zone', 'region'):
        if params.get(key):
            declaration[key] = _name(params, key)
    if params.get('keyring'):
        if not os.path.isabs(params['keyring']) or not os.path.isfile(params['keyring']):
            raise InvalidArgument('keyring %s is not an absolute path of a file on this host (the Ceph keyring of the user '
                                  "Cinder's RBD back end connects as)" % params['keyring'])
        declaration['keyring'] = params['keyring']
    return declaration


def open_store(name, declaration):
    from ansible_collections.vmimages.multistore.plugins.module_utils.stores.cinder import CinderStore
    return CinderStore(name, declaration)


BACKEND = Backend(
    'cinder',
    options=(
        Option('auth_url'),
        Option('endpoint'),
        Option('user'),
        Option('password', secret=True),
        Option('project'),
        Option('user_domain'),
        Option('project_domain'),
        Option('region'),
        Option('volume_type'),
        Option('availability_zone'),
        Option('keyring', type='path', shown=False),
        Option('validate_certs', type='bool', default=True, shown=False),
    ),
    capabilities=(RAW_ONLY, COW_CLONE),
    place_keys=('auth_url', 'endpoint', 'project', 'volume_type'),
    location_form='cinder://<store>/<volume-id>',
    configure=configure,
    open_store=open_store,
    packages=('python3-cinderclient', 'python3-os-brick', 'python3-rbd', 'python3-rados', 'ceph-common'),
    summary='auth_url or endpoint, user, password, project, user_domain, project_domain, region, volume_type, '
            'availability_zone, keyring, validate_certs',
    needs=('auth_url', 'endpoint'),
)
