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
    (until then a re-run of the same import adopts them and sends only what is missing), or at once when their run
    was killed holding the image lock (the lock names a process of this host that is gone); image directories
    without a record (an import killed before its record was written), listed as C(images/<id> (no record)). In an
    rbd pool, images named by an id with no record and slice-list objects whose image is gone.
  - Slices that no image's slice list references (file, s3 and swift stores), under the exclusive slice guard, so
    no import can be relying on them at that moment.
  - Locks are taken in the same order as imports and deletions, so it is safe to run next to other playbooks.
  - With I(verify), then reads the data of every listed store back and checks it (bit rot, a damaged disk, an object
    overwritten by hand); with I(repair), replaces what is corrupt from another store of the host.
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
    description:
      - Seconds after which the staged slices of an interrupted transfer are removed rather than kept for a re-run.
      - The staged slices of a run that was killed (its image lock names a dead process of this host) go at once.
    type: int
    default: 86400
  verify:
    description:
      - Read back every slice that a complete image references in a file (local or over SSH), s3 or swift store, once,
        streaming, and compare its sha256 with its name; the SSH agent hashes on the store host, so no slice crosses the
        network. Local slice files are dropped from the page cache first, so the disk is read, not memory.
      - In an rbd store (whole images), read every 4 MiB range of each image's snapshot C(snap) and compare it with the
        sha256 its slice list recorded at import.
      - Reports C(corrupt) per store; only reads, so it runs in check mode too. A store is verified under its shared
        slice guard - imports may run meanwhile, deletions and garbage collection wait.
    type: bool
    default: false
  verify_sample:
    description:
      - Percentage (1 to 100) of the slices (rbd - of the ranges) to verify, chosen at random on each run; a nightly
        sample finds widespread damage at a fraction of the cost. Needs I(verify). Omitted - every slice.
      - A damaged mark (see I(repair)) is cleared only by a run that verified every slice.
    type: int
  repair:
    description:
      - With I(verify), replace each corrupt slice from another store declared on this host that holds it - read there,
        checked against its sha256 before it is written, written atomically (file - a new file renamed over the bad one;
        s3 and swift - one PUT; rbd - one RADOS write per object under the snapshot) and read back.
      - A slice no other store can provide is reported in C(unrepairable), and the images using it are marked damaged
        in that store (M(vmimages.multistore.image_info) lists the store in C(damaged_in_stores)); delete the image from
        that store and copy it there again, or restore the slice. A later repair that finds the image whole clears
        the mark.
      - In check mode the source slices are read and checked, nothing is written - C(repaired) is what would be.
    type: bool
    default: false
'''

EXAMPLES = r'''
- name: Nightly garbage collection of every store of the host
  vmimages.multistore.store_cleanup:
  register: cleanup

- name: Remove the leftovers of an interrupted import into the Ceph store right away
  vmimages.multistore.store_cleanup:
    stores: [ceph-images]
    staging_max_age: 0

- name: Verify every slice of the host's stores without changing anything, and fail on corruption
  vmimages.multistore.store_cleanup:
    verify: true
  check_mode: true
  register: verified
  failed_when: verified.stores | map(attribute='corrupt') | flatten | length > 0

- name: Nightly, verify a 5 % sample of the edge store and repair what is corrupt from the other stores
  vmimages.multistore.store_cleanup:
    stores: [dcn0]
    verify: true
    verify_sample: 5
    repair: true
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
    verified_slices:
      description: Slices (rbd - 4 MiB ranges) read and checked.
      returned: with I(verify)
      type: int
    verified_bytes:
      description: Bytes read and checked.
      returned: with I(verify)
      type: int
    seconds:
      description: Time the verification took.
      returned: with I(verify)
      type: float
    throughput:
      description: I(verified_bytes) per second.
      returned: with I(verify)
      type: int
    corrupt:
      description:
        - Slices whose bytes do not match their sha256, or that are missing or unreadable.
        - C(slice) (the sha256 it should have; rbd - null for a range recorded as zeros), C(size) (bytes it should have),
          C(images) (C(id) and C(name) of each complete image using it) and, in an rbd store, C(offset) in the image.
      returned: with I(verify)
      type: list
      elements: dict
    repaired:
      description: C(slice) replaced (C(offset) in an rbd image) and C(from) the store it was read from (null - a zero range rewritten).
      returned: with I(repair)
      type: list
      elements: dict
    unrepairable:
      description: C(slice) (and C(offset) in rbd) that no other store could provide, with the C(images) therefore damaged in this store.
      returned: with I(repair)
      type: list
      elements: dict
    marked_damaged:
      description: Ids of the images marked damaged in this store by this run.
      returned: with I(repair)
      type: list
      elements: str
    cleared_damaged:
      description: Ids of the images found whole again, whose damaged mark this run removed.
      returned: with I(repair)
      type: list
      elements: str
  sample:
    - store: central
      removed_images: [6f0c2f0e-2c55-4c4f-9a8e-3f0c1b7d2a11]
      removed_staging: [staging/6f0c2f0e-2c55-4c4f-9a8e-3f0c1b7d2a11.partial]
      removed_slices: 3
      released_bytes: 12582912
      skipped: []
      verified_slices: 5120
      verified_bytes: 21474836480
      seconds: 14.2
      throughput: 1512312426
      corrupt:
        - slice: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
          size: 4194304
          images: [{id: 0b3e1a52-8d63-4c1e-9f0a-2d6b1c7e5f10, name: ubuntu-24.04}]
      repaired:
        - slice: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
          from: dcn0
      unrepairable: []
      marked_damaged: []
      cleared_damaged: []
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
from ansible_collections.vmimages.multistore.plugins.module_utils.images.progress import remove_dead_progress
from ansible_collections.vmimages.multistore.plugins.module_utils.images.verify import (
    StoreVerify, check_verify_options, repair_sources)


def main():
    argument_spec = dict(
        stores=dict(type='list', elements='str'),
        staging_max_age=dict(type='int', default=86400),
        verify=dict(type='bool', default=False),
        verify_sample=dict(type='int'),
        repair=dict(type='bool', default=False),
    )
    argument_spec.update(registry_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    def work():
        params = module.params
        if params['staging_max_age'] < 0:
            raise InvalidArgument('staging_max_age %d is negative: give seconds, 0 or more' % params['staging_max_age'])
        check_verify_options(params['verify'], params['verify_sample'], params['repair'])
        registry = open_registry(module)
        names = params['stores'] or registry.names()
        stores = [registry.open(name) for name in names]
        for store in stores:
            store.ensure_readable()  # every store reachable before any is touched
        sources = repair_sources(registry) if params['repair'] else []
        changed = False
        reports = []
        for store in stores:
            store_changed, report = StoreCleanup(store, params['staging_max_age']).run(module.check_mode)
            if params['verify']:
                verified, verify_report = StoreVerify(store, sources, params['verify_sample'], params['repair']).run(module.check_mode)
                store_changed = store_changed or verified
                report['skipped'].extend(verify_report.pop('skipped', []))
                report.update(verify_report)
            changed = changed or store_changed
            reports.append(report)
        if not module.check_mode:
            remove_dead_progress(registry.directory)  # a display of transfers killed on this host: not a change
        return {'changed': changed, 'stores': reports, 'released_bytes': sum(report['released_bytes'] for report in reports)}

    run(module, work)


if __name__ == '__main__':
    main()
