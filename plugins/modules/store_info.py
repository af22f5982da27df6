#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: store_info
short_description: Report the image stores declared on the managed host
version_added: 0.1.0
description:
  - Lists the stores declared with M(vmimages.multistore.store) on the host with their status (C(connected),
    C(disconnected), C(disabled)), capacity, used and free bytes, image and slice counts.
author: vmimages.multistore contributors (@vmimages)
extends_documentation_fragment:
  - vmimages.multistore.registry
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: N/A
  platform:
    platforms: posix
options:
  name:
    description: Report only these stores (all when omitted). An unknown name fails.
    type: list
    elements: str
'''

EXAMPLES = r'''
- name: Show every store of the host
  vmimages.multistore.store_info:
  register: stores

- name: Fail when the central store is not usable
  ansible.builtin.assert:
    that: stores.stores | selectattr('name', 'equalto', 'central') | map(attribute='status') | first == 'connected'
'''

RETURN = r'''
stores:
  description: One entry per store, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Store name.
      type: str
    type:
      description: Backend type.
      type: str
    path:
      description: Root directory of a file store.
      type: str
    id:
      description: Store id from its identity record (null when disconnected).
      type: str
    status:
      description: C(connected), C(disconnected) (identity record missing or path unreachable) or C(disabled).
      type: str
    enabled:
      description: Whether the store takes new images.
      type: bool
    zone:
      description: Zone of the store.
      type: str
    site_role:
      description: C(central), C(edge) or null.
      type: str
    capacity:
      description: Size of the filesystem holding the store, in bytes.
      type: int
    free:
      description: Bytes available to the store's user on that filesystem.
      type: int
    used:
      description: Bytes taken by the store's slices and records.
      type: int
    image_count:
      description: Images with a record in the store.
      type: int
    slice_count:
      description: Distinct slices stored.
      type: int
    quota:
      description: C(bytes) and C(images) limits (null when unlimited).
      type: dict
    data_network:
      description: The data network as declared (an address such as C(10.1.0.11/24) or a network such as C(10.1.0.0/24)).
      type: str
    sync_network:
      description: The image-sync network as declared.
      type: str
    data_address:
      description: The store host's address in its data network (resolved on the store host when a network was declared).
      type: str
    sync_address:
      description: The store host's address in its image-sync network; copies to and from the store use it when this host shares that network.
      type: str
    address:
      description: For a file store on another host, the address this host dials (sync, else data, else the management C(host)).
      type: str
    address_note:
      description: For a file store on another host, why a declared sync or data address is not used from this host (null when it is).
      type: str
    last_check:
      description: When this report was made (UTC).
      type: str
  sample:
    - name: central
      type: file
      path: /cloud_bs
      status: connected
      enabled: true
      capacity: 107374182400
      free: 96636764160
      used: 4194304
      image_count: 1
      slice_count: 1
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmimages.multistore.plugins.module_utils.common.module_support import (
    open_registry, registry_argument_spec, run)
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.declaration import describe


def main():
    argument_spec = dict(name=dict(type='list', elements='str'))
    argument_spec.update(registry_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    def work():
        registry = open_registry(module)
        names = module.params['name'] or registry.names()
        return {'changed': False, 'stores': [describe(registry.open(name)) for name in names]}

    run(module, work)


if __name__ == '__main__':
    main()
