# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  registry:
    description:
      - Directory on the managed host where the stores declared on that host are listed, one JSON file per store.
      - Defaults to C(/var/lib/vmimages-multistore/stores) for root and C(~/.local/share/vmimages-multistore/stores) for other users.
      - Set it once for all modules of the collection with C(module_defaults) and the C(group/vmimages.multistore.multistore) action group.
    type: path
attributes:
  action_group:
    description: Use C(group/vmimages.multistore.multistore) in C(module_defaults) to set defaults, such as I(registry), for every module of the collection.
    support: full
    membership:
      - vmimages.multistore.multistore
'''
