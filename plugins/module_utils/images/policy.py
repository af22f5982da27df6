# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rules of where an image may go and where a copy reads from.

Central and edge stores: an edge store takes an image only when a central store holds it already or
takes it in the same run (committed first); a copy reads from a central store first, and from a copy
``store_cleanup`` marked damaged only when no whole copy is left. Stores that hold raw images only
(rbd) get converted data on import and refuse a copy of an image stored in another format. A disabled
store is not one of ``all_stores``; with ``allow_failure`` a store that cannot take data fails alone.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.vmimages.multistore.plugins.module_utils.backends.backend import COW_CLONE, RAW_ONLY
from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import ImageError, StoreError
from ansible_collections.vmimages.multistore.plugins.module_utils.transfer.convert import RAW_LIKE


def central_rank(store):
    """The sort key of the commit order (and of the source-store choice): central stores first, then by name."""
    return (store.site_role != 'central', store.name)


def central_first(stores):
    return sorted(stores, key=central_rank)


def requested_targets(catalog, params):
    """The stores ``stores:`` names (in order, once each), or every enabled store for ``all_stores: true``."""
    if params.get('all_stores'):
        # A disabled store takes no new images (ZStack's meaning of disabled): it is not one of "all".
        return [store for name, store in sorted(catalog.stores.items()) if store.identity is None or store.enabled]
    names = []
    for name in params.get('stores') or []:
        if name not in names:
            names.append(name)
    return [catalog.store(name) for name in names]


def usable(stores, allow_failure, failed_import):
    """The stores that can take data now; with allow_failure the others only fail themselves (into ``failed_import``)."""
    result = []
    for store in stores:
        try:
            store.ensure_writable()
        except StoreError as exc:
            if not allow_failure:
                raise
            failed_import.append({'store': store.name, 'error': str(exc)})
            continue
        result.append(store)
    if not result:
        raise StoreError('no target store can take the image: %s' % '; '.join(f['error'] for f in failed_import))
    return result


def check_edge_rule(catalog, targets, holding):
    """Refuse edge targets while no central store holds the image (``holding``) or is among ``targets``."""
    centrals = [store.name for store in catalog.stores.values() if store.site_role == 'central']
    edges = [store.name for store in targets if store.site_role == 'edge']
    if edges and centrals and not (set(centrals) & (set(holding) | set(store.name for store in targets))):
        raise ImageError("store%s %s %s at the edge: the central store (%s) must hold the image first; add it to stores:"
                         % ('s' if len(edges) > 1 else '', ', '.join(edges), 'are' if len(edges) > 1 else 'is',
                            ', '.join(centrals)))


def central_holds(catalog, image_id):
    """True when a connected central store has an active copy (or when the site has no central store)."""
    centrals = [store for store in catalog.stores.values() if store.site_role == 'central' and store.identity is not None]
    if not centrals:
        return True
    return any((store.backend.read_record(image_id) or {}).get('status') == 'active' for store in centrals)


def source_store(catalog, active, view):
    """Central first, and a copy store_cleanup marked damaged only when no whole copy is left."""
    stores = [catalog.store(name) for name in active]
    return sorted(central_first(stores), key=lambda store: bool(view.copies[store.name].get('damaged')))[0]


def raw_only(store):
    """True for a store that holds raw images only (rbd)."""
    return store.backend.can(RAW_ONLY)


def clones_in_place(store):
    """True for a store that clones an image itself (rbd copy-on-write) rather than sharing its slices."""
    return store.backend.can(COW_CLONE)


def converts_to_raw(targets, convert_to):
    """An import is converted to raw when asked, or when one of its targets holds raw images only."""
    return convert_to == 'raw' or any(raw_only(store) for store in targets)


def check_raw_only(record, image_id, stores):
    """Refuse a copy of a non-raw image into stores that hold raw images only."""
    names = [store.name for store in stores if raw_only(store)]
    if names and record.get('disk_format') not in RAW_LIKE:
        raise ImageError("image '%s' (id %s) is %s and store%s %s hold%s raw images only: import it again with convert_to: raw "
                         "(under a new name), or export it as raw and import that"
                         % (record.get('name'), image_id, record.get('disk_format'), 's' if len(names) > 1 else '',
                            ', '.join(names), '' if len(names) > 1 else 's'))
