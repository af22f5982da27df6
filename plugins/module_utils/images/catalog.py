# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Images across the stores of a host: finding them (the Catalog).

An image is one id with a record in every store that holds it; ``locations`` are discovered by
reading the stores, never kept in one place. What the ``image`` module asks for is an ImageRequest
(``request``); the rules of where an image may go are in ``policy``, and how its data reaches the
stores (locks, sinks, commit order, rollback) in ``transaction``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import ImageError
from ansible_collections.vmimages.multistore.plugins.module_utils.images.progress import read_progress
from ansible_collections.vmimages.multistore.plugins.module_utils.images.records import ImageView
# Importable from here as before the split (code on other branches imports them from catalog).
from ansible_collections.vmimages.multistore.plugins.module_utils.images.request import BUSES, DRIVERS, ImageRequest

__all__ = ('BUSES', 'DRIVERS', 'Catalog', 'ImageRequest')


class Catalog:
    """The images of every store declared in a registry."""

    def __init__(self, registry):
        self.registry = registry
        self.stores = dict((store.name, store) for store in registry.open_all())

    def store(self, name):
        if name not in self.stores:
            self.registry.open(name)  # raises the "not declared" error with the list of known stores
        return self.stores[name]

    def _connected(self, names=None):
        for name in sorted(names if names is not None else self.stores):
            store = self.store(name)
            if store.identity is not None:
                yield store

    def images(self, store_names=None):
        copies = {}
        for store in self._connected(store_names):
            for image_id, record in store.backend.read_records().items():
                if record:
                    copies.setdefault(image_id, {})[store.name] = record
        return dict((image_id, ImageView(image_id, found, self.stores)) for image_id, found in copies.items())

    def find(self, image_id=None, name=None):
        """The ImageView for an id, or for a name that must be unambiguous; None when absent."""
        if image_id:
            copies = {}
            for store in self._connected():
                record = store.backend.read_record(image_id)
                if record:
                    copies[store.name] = record
            return ImageView(image_id, copies, self.stores) if copies else None
        matches = self.named(name)
        if len(matches) > 1:
            raise ImageError("%d images are named '%s' (ids %s): pass id: to say which one"
                             % (len(matches), name, ', '.join(sorted(view.id for view in matches))))
        return matches[0] if matches else None

    def named(self, name, store_names=None):
        """The ImageViews of the images named ``name`` (sorted by id): from each store's name index, reading only
        the records it names; a store without an index is scanned."""
        candidates = set()
        for store in self._connected(store_names):
            ids = store.backend.image_ids_named(name)
            if ids is None:
                ids = [image_id for image_id, record in store.backend.read_records().items() if record and record.get('name') == name]
            candidates.update(ids)
        views = [self.find(image_id=image_id) for image_id in sorted(candidates)]
        return [view for view in views if view is not None and view.reference().get('name') == name]

    def progress(self, image_id):
        """The live progress of a transfer of ``image_id`` running on this host now, or None."""
        return read_progress(self.registry.directory, image_id)
