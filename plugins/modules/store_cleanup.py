#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: store_cleanup
short_description: Remove the leftovers of interrupted imports and unreferenced slices from image stores
version_added: 0.1.0
description:
  - Removes, from every listed store (every declared store when none are listed), what no image needs any more,
    and never what a running import or copy uses.
  - Images whose record is not C(active) (an import that was interrupted or failed, listed by
    M(vmimages.multistore.image_info) in C(failed_import)) and whose image lock is free.
  - Staging data of transfers that are not running. In a file store, staged slices older than I(staging_max_age)
    (until then a re-run of the same import adopts them and sends only what is missing). In an rbd pool, images
    named by an id with no record and slice-list objects whose image is gone.
  - Slices that no image's slice list references (file, s3 and swift stores), under the exclusive slice guard, so
    no import can be relying on them at that moment.
  - Locks are taken in the same order as imports and deletions, so it is safe to run next to other playbooks.
author: vmimages.multistore contributors (@vmimages)
extends_documentation_fragment:
  - vmimages.multistore.registry
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  stores:
    description: Names of the stores to clean; every declared store when omitted. Disconnected stores fail the task.
    type: list
    elements: str
  staging_max_age:
    description: Seconds after which the staged slices of an interrupted transfer are removed rather than kept for a re-run.
    type: int
    default: 86400
'''

EXAMPLES = r'''
- name: Nightly garbage collection of every store of the host
  vmimages.multistore.store_cleanup:
  register: cleanup

- name: Remove the leftovers of an interrupted import into the Ceph store right away
  vmimages.multistore.store_cleanup:
    stores: [ceph-images]
    staging_max_age: 0
'''

RETURN = r'''
stores:
  description: One report per store.
  returned: always
  type: list
  elements: dict
  contains:
    store:
      description: Store name.
      type: str
    removed_images:
      description: Ids of the failed or interrupted imports removed (or that would be, in check mode).
      type: list
      elements: str
    removed_staging:
      description: Staging leftovers removed.
      type: list
      elements: str
    removed_slices:
      description: Number of unreferenced slices removed.
      type: int
    released_bytes:
      description: Bytes released (staged data and slices; not counted in check mode for slices).
      type: int
    skipped:
      description: What was left alone because a run is using it.
      type: list
      elements: str
  sample:
    - store: central
      removed_images: [6f0c2f0e-2c55-4c4f-9a8e-3f0c1b7d2a11]
      removed_staging: [staging/6f0c2f0e-2c55-4c4f-9a8e-3f0c1b7d2a11.partial]
      removed_slices: 3
      released_bytes: 12582912
      skipped: []
released_bytes:
  description: Bytes released over all stores.
  returned: always
  type: int
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import InvalidArgument
from ansible_collections.vmimages.multistore.plugins.module_utils.common.module_support import (
    open_registry, registry_argument_spec, run)
from ansible_collections.vmimages.multistore.plugins.module_utils.images.cleanup import StoreCleanup


def main():
    argument_spec = dict(
        stores=dict(type='list', elements='str'),
        staging_max_age=dict(type='int', default=86400),
    )
    argument_spec.update(registry_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    def work():
        if module.params['staging_max_age'] < 0:
            raise InvalidArgument('staging_max_age %d is negative: give seconds, 0 or more' % module.params['staging_max_age'])
        registry = open_registry(module)
        names = module.params['stores'] or registry.names()
        stores = [registry.open(name) for name in names]
        for store in stores:
            store.ensure_readable()  # every store reachable before any is touched
        changed = False
        reports = []
        for store in stores:
            store_changed, report = StoreCleanup(store, module.params['staging_max_age']).run(module.check_mode)
            changed = changed or store_changed
            reports.append(report)
        return {'changed': changed, 'stores': reports, 'released_bytes': sum(report['released_bytes'] for report in reports)}

    run(module, work)


if __name__ == '__main__':
    main()
