# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rbd back end: a Ceph pool holding one raw image per image in Glance's layout (image, protected snapshot)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.vmimages.multistore.plugins.module_utils.backends.backend import COW_CLONE, RAW_ONLY, SERVER_COPY, Backend, Option
from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import InvalidArgument
from ansible_collections.vmimages.multistore.plugins.module_utils.common.validation import check_ceph_user, check_mon_host, check_pool_name


def configure(params):
    declaration = {'pool': check_pool_name(params.get('pool')), 'user': check_ceph_user(params.get('user') or 'admin')}
    for key in ('ceph_conf', 'keyring'):
        if params.get(key):
            if not os.path.isabs(params[key]):
                raise InvalidArgument('%s %s is relative: give an absolute path on the host' % (key, params[key]))
            if not os.path.isfile(params[key]):
                raise InvalidArgument('%s %s does not exist on this host (the store_host role writes it)' % (key, params[key]))
            declaration[key] = params[key]
    if params.get('mon_hosts'):
        declaration['mon_hosts'] = [check_mon_host(host) for host in params['mon_hosts']]
    timeout = params.get('op_timeout')
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= 3600:
            raise InvalidArgument('op_timeout %r must be a whole number of seconds from 1 to 3600' % (timeout,))
        declaration['op_timeout'] = timeout
    if not declaration.get('ceph_conf') and not declaration.get('mon_hosts'):
        if not os.path.isfile('/etc/ceph/ceph.conf'):
            raise InvalidArgument('give ceph_conf or mon_hosts: there is no /etc/ceph/ceph.conf on this host')
        declaration['ceph_conf'] = '/etc/ceph/ceph.conf'
    return declaration


def open_store(name, declaration):
    from ansible_collections.vmimages.multistore.plugins.module_utils.stores.rbd import RbdStore
    return RbdStore(name, declaration)


BACKEND = Backend(
    'rbd',
    options=(
        Option('pool'),
        Option('ceph_conf', type='path'),
        Option('keyring', type='path', shown=False),
        Option('user'),
        Option('mon_hosts', type='list', elements='str'),
        Option('op_timeout', type='int'),
    ),
    capabilities=(RAW_ONLY, COW_CLONE, SERVER_COPY),
    place_keys=('pool', 'ceph_conf', 'mon_hosts'),
    location_form='rbd://<fsid>/<pool>/<image-id>/snap',
    configure=configure,
    open_store=open_store,
    packages=('ceph-common', 'python3-rbd', 'python3-rados', 'qemu-block-extra'),
    summary='pool, ceph_conf, keyring, user, mon_hosts, op_timeout',
    needs=('pool',),
)
