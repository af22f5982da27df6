# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The file back end: a directory holding deduplicated slices, on this host or on another one reached over SSH."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.vmimages.multistore.plugins.module_utils.backends.backend import DEDUP_SLICES, REFLINK, Backend, Option
from ansible_collections.vmimages.multistore.plugins.module_utils.common.validation import check_port, check_store_path


def configure(params):
    """The declaration of a file store: its path, and for a store on another host how to reach it."""
    declaration = {'path': check_store_path(params.get('path'))}
    if params.get('host'):
        declaration.update(host=params['host'], port=check_port(22 if params.get('port') is None else params['port']), user=params.get('user') or 'root')
        for key in ('private_key', 'known_hosts', 'password'):
            if params.get(key):
                declaration[key] = params[key]
    return declaration


def open_store(name, declaration):
    if declaration.get('host'):
        from ansible_collections.vmimages.multistore.plugins.module_utils.stores.ssh import SshFileStore
        return SshFileStore(name, declaration)
    from ansible_collections.vmimages.multistore.plugins.module_utils.stores.file import FileStore
    return FileStore(name, declaration)


BACKEND = Backend(
    'file',
    options=(
        Option('path', type='path', shown=False),
        Option('host', remote_only=True, shown=False),
        Option('port', type='int', default=22, remote_only=True, shown=False),
        Option('user', remote_only=True, shown=False),
        Option('private_key', type='path', remote_only=True, shown=False),
        Option('password', secret=True, remote_only=True, shown=False),
        Option('known_hosts', type='path', remote_only=True, shown=False),
    ),
    capabilities=(DEDUP_SLICES, REFLINK),
    place_keys=('host', 'path'),
    location_form='file://[<host>]<path>/images/<image-id>',
    configure=configure,
    open_store=open_store,
    shared=False,
    needs=('path',),
    summary='path, host, port, user, private_key, password, known_hosts',
)
