# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The swift back end: a container (TempAuth v1, as radosgw serves it) holding deduplicated slices."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.vmimages.multistore.plugins.module_utils.backends.backend import DEDUP_SLICES, Backend
from ansible_collections.vmimages.multistore.plugins.module_utils.backends.objects import configure_objects, object_options
from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import InvalidArgument


def configure(params):
    if not params.get('endpoint'):
        raise InvalidArgument('a swift store needs endpoint: (the auth URL, e.g. http://rgw.example.org:7480/auth/1.0)')
    declaration = configure_objects(params, 'container')
    if not declaration.get('access_key'):
        raise InvalidArgument('a swift store needs access_key (the Swift user, account:user) and secret_key (its key)')
    return declaration


def open_store(name, declaration):
    from ansible_collections.vmimages.multistore.plugins.module_utils.stores.swift import SwiftStore
    return SwiftStore(name, declaration)


BACKEND = Backend(
    'swift',
    options=object_options('container'),
    capabilities=(DEDUP_SLICES,),
    place_keys=('endpoint', 'container', 'prefix'),
    location_form='swift://<endpoint host>/<container>/<prefix>images/<image-id>',
    configure=configure,
    open_store=open_store,
    packages=('python3-swiftclient',),
    summary='endpoint, container, access_key, secret_key, region',
    needs=('container',),
)
