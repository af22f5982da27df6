# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every module of the collection shares: the registry option and turning engine errors into failures."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import MultistoreError
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.registry import Registry


def registry_argument_spec():
    return {'registry': {'type': 'path'}}


def open_registry(module):
    return Registry(module.params.get('registry'))


def run(module, work):
    """Call ``work()`` and exit with its result dict; an engine error becomes a clear ``failed`` message."""
    try:
        result = work()
    except MultistoreError as exc:
        module.fail_json(msg=str(exc))
    except (IOError, OSError) as exc:
        module.fail_json(msg='%s: %s' % (getattr(exc, 'filename', None) or 'I/O error', exc.strerror or exc))
    module.exit_json(**result)
