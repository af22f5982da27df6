# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the ``image`` module asked for, and its outcome: ImageRequest.

The request validates the module's parameters, compares them with the image the stores hold
(``Catalog.find``) and decides what to do: import ``src`` (or make an empty datablock), copy to the
stores that lack the image, update metadata, clone, delete. Where an image may go is ``policy``'s
business; how the data and the records reach the stores is ``transaction``'s. The request keeps the
outcome the module returns: ``actions``, ``failed_import``, ``released``, ``before``/``after``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import functools
import uuid

from ansible_collections.vmimages.multistore.plugins.module_utils.common.clock import utc_now
from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import (
    ImageError, InvalidArgument, SourceError, SourceRestart, StoreError)
from ansible_collections.vmimages.multistore.plugins.module_utils.common.validation import (
    check_glance_int, check_image_id, check_image_name, check_properties, check_tags, parse_checksum, parse_size)
from ansible_collections.vmimages.multistore.plugins.module_utils.formats.inspector import (
    CONTAINER_FORMATS, DISK_FORMATS, check_declared)
from ansible_collections.vmimages.multistore.plugins.module_utils.images import fanout, policy
from ansible_collections.vmimages.multistore.plugins.module_utils.images.records import MUTABLE_FIELDS, digest_of, new_record
from ansible_collections.vmimages.multistore.plugins.module_utils.images.transaction import (
    Transfer, clone_into, copy_from, remove_copy, update_records)
from ansible_collections.vmimages.multistore.plugins.module_utils.signatures.verifier import SignatureSpec
from ansible_collections.vmimages.multistore.plugins.module_utils.transfer import pipeline
from ansible_collections.vmimages.multistore.plugins.module_utils.transfer.datablock import Datablock
from ansible_collections.vmimages.multistore.plugins.module_utils.transfer.convert import RawPreparation, check_raw
from ansible_collections.vmimages.multistore.plugins.module_utils.transfer.sources import DEFAULT_SIZE_CAP, make_source

# HyperCX's disk buses (Glance's hw_disk_bus) and mapping drivers.
BUSES = ('virtio', 'scsi', 'sata', 'ide')
DRIVERS = ('raw', 'qcow2')
# How often a cut download that cannot resume starts over before the task fails.
RESTART_LIMIT = 2


class ImageRequest:
    """Desired state of one image, from the module's parameters."""

    def __init__(self, catalog, params, work_dir=None):
        self.catalog = catalog
        self.params = params
        self.work_dir = work_dir  # where conversions write their temporary files (None: the system's temp dir)
        self.image_id = check_image_id(params['id']) if params.get('id') else None
        self.name = check_image_name(params['name']) if params.get('name') else None
        if not self.image_id and not self.name:
            raise InvalidArgument('give the image a name: (or an id:)')
        self.checksum = parse_checksum(params['checksum']) if params.get('checksum') else None
        disk_format = params.get('disk_format')
        if disk_format and disk_format not in DISK_FORMATS:
            raise InvalidArgument("disk_format '%s' is unknown: use one of %s" % (disk_format, ', '.join(DISK_FORMATS)))
        container_format = params.get('container_format') or 'bare'
        if container_format not in CONTAINER_FORMATS:
            raise InvalidArgument("container_format '%s' is unknown: use one of %s" % (container_format, ', '.join(CONTAINER_FORMATS)))
        self.allow_failure = bool(params.get('allow_failure'))
        self.enabled = params.get('enabled')
        self._check_hypercx_fields(params)
        check_tags(params.get('tags'))
        check_properties(params.get('properties'))
        for field in ('min_disk', 'min_ram'):
            check_glance_int(params.get(field), field)
        cap = params.get('size_cap')
        self.size_cap = DEFAULT_SIZE_CAP if cap is None else parse_size(cap, 'size_cap')
        if self.size_cap == 0:
            raise InvalidArgument('size_cap 0 would refuse every image: give the largest size to accept, e.g. 200G')
        self.download = None  # what an http(s) download went through (resumes, restarts), for the result
        self.datablock = None
        if params.get('size') is not None or params.get('filesystem'):
            if params.get('src') or params.get('clone_from'):
                raise InvalidArgument('size: and filesystem: make an empty datablock: give them without src: or clone_from:')
            if params.get('image_type') not in (None, 'datablock'):
                raise InvalidArgument('size: makes an empty datablock: image_type is datablock (or leave it out), not %s' % params['image_type'])
            if self.checksum:
                raise InvalidArgument('an empty datablock is made here: it takes no checksum:')
            self.datablock = Datablock(params.get('size'), params.get('filesystem'), disk_format)
        self.signature = SignatureSpec.from_params(params['signature']) if params.get('signature') else None
        if self.signature and (self.datablock or params.get('clone_from')):
            raise InvalidArgument('signature: verifies the data of src:; a datablock or a clone has none to verify')
        self.actions = []
        self.name_locks = []  # held while this run makes a new image, until its 'importing' records are written
        self.done_elsewhere = []  # target stores another run completed the image in while this run waited for it
        self.failed_import = []
        self.notes = []  # what the operator should know that changes no outcome (a direct route not taken)
        self.released = 0
        self.before = {}
        self.after = {}

    @staticmethod
    def _check_hypercx_fields(params):
        bus, driver = params.get('bus'), params.get('driver')
        if bus is not None and bus not in BUSES:
            raise InvalidArgument("bus '%s' is unknown: use one of %s" % (bus, ', '.join(BUSES)))
        if driver is not None and driver not in DRIVERS:
            raise InvalidArgument("driver '%s' is unknown: use one of %s" % (driver, ', '.join(DRIVERS)))
        given_bus = (params.get('properties') or {}).get('hw_disk_bus')
        if bus and given_bus not in (None, bus):
            raise InvalidArgument('bus %s and properties.hw_disk_bus %s disagree: give one of them (bus is recorded as hw_disk_bus)'
                                  % (bus, given_bus))
        persistent = params.get('persistent')
        if persistent is not None and not isinstance(persistent, bool):
            raise InvalidArgument('persistent %r is not true or false' % (persistent,))

    def _check_driver(self, disk_format, image_name):
        """driver: (HyperCX) must name the format the stores hold, after any conversion."""
        driver = self.params.get('driver')
        if driver and disk_format and driver != disk_format:
            raise ImageError("driver %s does not match image '%s', which is stored as %s: set driver: %s (or convert the image); "
                             "nothing was stored" % (driver, image_name, disk_format, disk_format))

    # ---- helpers
    def _targets(self):
        return policy.requested_targets(self.catalog, self.params)

    def _usable(self, stores):
        return policy.usable(stores, self.allow_failure, self.failed_import)

    def _metadata(self):
        metadata = dict((field, self.params.get(field)) for field in MUTABLE_FIELDS)
        if self.datablock and metadata['image_type'] is None:
            metadata['image_type'] = 'datablock'
        return metadata

    @staticmethod
    def _summary(record, stores):
        summary = dict((field, record.get(field)) for field in ('name',) + MUTABLE_FIELDS)
        summary['enabled'] = record.get('status') != 'deactivated'
        summary['stores'] = sorted(stores)
        return summary

    # ---- state: present
    def present(self, check_mode):
        view = self.catalog.find(self.image_id, self.name)
        targets = self._targets()
        if view is None:
            return self._create_once(targets, check_mode)
        return self._converge(view, targets, check_mode)

    def _create_once(self, targets, check_mode, make=None, unfinished=None):
        """Make the image (``make()``, by default an import into ``targets``), unless another run made it meanwhile. Runs
        making one name at once take the name's lock in each target store (in store order) and look again once they
        have it. An import holds it until its 'importing' records are written, a clone until it is made; the others
        then find the image (and wait for its image locks, if it is still importing) and converge on it. An image
        found for which ``unfinished(view)`` is true is made again under its id (a clone killed half-way)."""
        if make is None:
            make = functools.partial(self._create, targets, check_mode)
        if check_mode or not self.name or not targets:
            return make()
        with contextlib.ExitStack() as stack:
            for store in sorted(targets, key=lambda s: s.name):
                try:
                    store.ensure_writable()
                except StoreError:
                    continue  # it cannot take the image: _create says so (or lists it in failed_import)
                self.name_locks.append(stack.enter_context(store.backend.name_lock(self.name)))
            try:
                view = self.catalog.find(self.image_id, self.name)
                if view is not None and unfinished is not None and unfinished(view):
                    self.image_id, view = view.id, None
                if view is None:
                    return make()
            finally:
                self._release_name_locks()
        return self._converge(view, self._targets(), check_mode)

    def _release_name_locks(self):
        """Once the new image shows in every target (its 'importing' records), other runs find it by its name."""
        for lock in self.name_locks:
            lock.__exit__(None, None, None)  # what every back end's lock has (the rbd lock has no release); a second exit is a no-op
        self.name_locks = []

    def _create(self, targets, check_mode):
        src = self.params.get('src')
        if not src and not self.datablock:
            raise ImageError("image '%s' is in no store and no src: was given: give src: to import it (or size: for an empty datablock)"
                             % (self.name or self.image_id))
        if not targets:
            raise InvalidArgument('give stores: (a list of store names) or all_stores: true to say where to import the image')
        if not self.name:
            raise InvalidArgument('a new image needs a name:')
        policy.check_edge_rule(self.catalog, targets, [])
        targets = self._usable(targets)
        image_id = self.image_id or str(uuid.uuid4())
        status = 'deactivated' if self.enabled is False else 'active'
        self.after = self._summary(dict(self._metadata(), name=self.name, status=status), [store.name for store in targets])
        self._import_src(image_id, targets, check_mode)
        if not check_mode:
            self.image_id = image_id
            if self.enabled is False:
                self.actions.append('deactivate')
                self._update(image_id, {'status': 'deactivated'})
        return True

    def _import_src(self, image_id, targets, check_mode):
        """Import the src parameter (or make the datablock) into ``targets`` (in check mode: only check the source)."""
        converting = policy.converts_to_raw(targets, self.params.get('convert_to'))
        if self.datablock:
            self._check_driver('raw' if converting else self.datablock.disk_format, self.name)
            self.actions.append('make %s in %s' % (self.datablock.description, ', '.join(store.name for store in targets)))
            if not check_mode:
                with self.datablock.make(self.work_dir) as source:
                    self._import_prepared(image_id, source, targets, converting, disk_format=self.datablock.disk_format)
            return
        source = make_source(self.params['src'], **self._source_options())
        source.check()
        self._check_driver('raw' if converting else self.params.get('disk_format'), self.name)
        self.actions.append('import %s into %s' % (source.description, ', '.join(store.name for store in targets)))
        if not check_mode:
            self._import_restartable(image_id, source, targets, converting)

    def _import_restartable(self, image_id, source, targets, converting):
        """Import ``source``; a download that was cut and cannot resume starts over (each attempt is all or nothing)."""
        restarts = 0
        try:
            while True:
                try:
                    self._import_prepared(image_id, source, targets, converting, disk_format=self.params.get('disk_format'),
                                          checksum=self.checksum)
                    return
                except SourceRestart as restart:
                    if restarts >= RESTART_LIMIT:
                        raise SourceError('%s; it started over %d times already: nothing was stored, run again' % (restart, restarts))
                    restarts += 1
                    source.note('restarts', {'at': restart.at, 'why': restart.reason},
                                'download restarted from byte 0 after a cut at byte %d: %s' % (restart.at, restart.reason))
        finally:
            summary = source.summary() if hasattr(source, 'summary') else ''
            if hasattr(source, 'resumes'):
                self.download = {'url': source.description, 'resumed_from': [entry['from'] for entry in source.resumes],
                                 'restarts': [dict(entry) for entry in source.restarts]}
            if summary:
                self.actions[-1] += ' (%s)' % summary

    def _import_prepared(self, image_id, source, targets, converting, disk_format=None, checksum=None):
        verifier = self.signature.verifier() if self.signature else None
        if not converting:
            self._import(image_id, source, targets, disk_format, checksum, verifier=verifier)
            return
        observers = [verifier.update] if verifier else []
        with RawPreparation(source, checksum, disk_format, self.work_dir, observers=observers) as prepared:
            if prepared.observed and verifier:
                verifier.verify()  # the conversion's pass read the source: its signature is settled before anything is stored
                verifier = None
            if prepared.origin:
                self.actions[-1] += ' (converted from %s to raw)' % prepared.origin['disk_format']
            self._import(image_id, prepared.source, targets, disk_format, checksum, origin=prepared.origin, raw_only=True,
                         verifier=verifier)

    def _converge(self, view, targets, check_mode):
        record = view.reference()
        active = view.held_stores()
        self.image_id = view.id
        self._check_same_image(view, record)
        if self.checksum:
            algorithm, expected = self.checksum
            # checksum: is the digest of src; for an image converted on import, src is the source kept under 'source'.
            known = digest_of(record.get('source') or record, algorithm)
            if known is not None and known != expected:
                raise ImageError("image '%s' (id %s) exists with %s %s, not the checksum given: a new version needs a new "
                                 "name, or delete the old image first with state: absent" % (record.get('name'), view.id, algorithm, known))
        self.before = self._summary(record, active)
        missing = [store for store in targets if store.name not in active]
        deactivated = view.deactivated_stores()
        if missing and deactivated and self.enabled is not True:
            raise ImageError("image '%s' (id %s) is deactivated: re-enable it with enabled: true before copying it to %s"
                             % (record.get('name'), view.id, ', '.join(store.name for store in missing)))
        if missing:
            policy.check_edge_rule(self.catalog, missing, active)
        updates = self._updates(record)
        reactivate = self.enabled is True and bool(deactivated)
        if reactivate:
            self.actions.append('reactivate')
        if self.enabled is False and view.active_stores():
            updates['status'] = 'deactivated'
        elif reactivate:
            record = dict(record, status='active')
        self.after = self._summary(dict(record, **updates), active + [store.name for store in missing])
        changed = bool(missing or updates or reactivate)
        if active:  # a copy; a re-import from src (every earlier attempt failed) converts as any import does
            policy.check_raw_only(record, view.id, missing)
        if missing:
            missing = self._usable(missing)
        if reactivate and not check_mode:
            # Once every check passed, and before a copy: the copy reads from an active copy.
            self._update(view.id, {'status': 'active'})
            view = self.catalog.find(view.id)
        if missing:
            if active:
                self.actions.append('copy to %s from %s' % (', '.join(store.name for store in missing), self._source_store(active, view).name))
                if not check_mode:
                    self._copy(view, missing)
            elif self.params.get('src'):
                # Every earlier attempt failed: import again from the source.
                self._import_src(view.id, missing, check_mode)
            else:
                raise ImageError("image '%s' (id %s) is active in no store: give src: to import it again"
                                 % (record.get('name'), view.id))
        if updates:
            fields = sorted(field for field in updates if field != 'status')
            if fields:
                self.actions.append('update %s' % ', '.join(fields))
            if 'status' in updates:
                self.actions.append('deactivate (the data stays; enabled: true reactivates)')
            if not check_mode:
                self._update(view.id, updates)
        if missing and not updates and not reactivate and set(store.name for store in missing) <= set(self.done_elsewhere):
            return False  # another run put the image everywhere this one was to put it: nothing changed here
        return changed

    def _check_same_image(self, view, record):
        """What was asked to make the image (datablock, signature, driver) must fit the image found."""
        name = record.get('name')
        made = record.get('datablock')
        if self.datablock:
            if not made:
                raise ImageError("image '%s' (id %s) exists and is not an empty datablock: give it another name" % (name, view.id))
            wanted = self.datablock.describe()
            if made != wanted:
                raise ImageError("image '%s' (id %s) is a datablock of %s; size:, filesystem: and disk_format: ask for %s: datablocks are "
                                 "not resized or reformatted here; delete it first (state: absent) or use another name"
                                 % (name, view.id, _datablock_words(made), _datablock_words(wanted)))
        if self.signature:
            signed = (record.get('learned_properties') or {}).get('img_signature')
            if signed != self.signature.properties()['img_signature']:
                raise ImageError("image '%s' (id %s) exists %s: a signature is verified when the data is imported; a newly signed "
                                 "version needs a new name" % (name, view.id, 'with another signature' if signed else 'unsigned'))
        self._check_driver(record.get('disk_format'), name)

    def _updates(self, record):
        updates = {}
        for field in MUTABLE_FIELDS:
            value = self.params.get(field)
            if value is not None and record.get(field) != value:
                updates[field] = value
        if self.image_id and self.name and record.get('name') != self.name:
            updates['name'] = self.name
        return updates

    def _update(self, image_id, updates):
        update_records([self.catalog.store(name) for name in self.catalog.find(image_id).held_stores()], image_id, updates)

    def _source_options(self):
        params = self.params
        return {'validate_certs': params.get('validate_certs', True), 'timeout': params.get('url_timeout') or 30,
                'headers': params.get('url_headers'), 'username': params.get('url_username'),
                'password': params.get('url_password'), 'size_cap': self.size_cap}

    def _source_store(self, active, view):
        return policy.source_store(self.catalog, active, view)

    # ---- transfers
    def _transfer(self, image_id, targets, placeholder, move_data):
        """Run ``move_data(sinks, refresh, progress)`` into every target (see transaction.Transfer)."""
        transfer = Transfer(self.catalog, image_id, targets, self.allow_failure, self.failed_import, self._note_resumed,
                            on_placeholders=self._release_name_locks)
        transfer.run(placeholder, move_data)
        if transfer.done_elsewhere:
            self.done_elsewhere.extend(transfer.done_elsewhere)
            self.actions[-1] += (' (another run completed it in %s meanwhile: nothing was written there)'
                                 % ', '.join(transfer.done_elsewhere))

    def _note_route(self, fan):
        """Say which store hosts fetched their slices directly, and why any could not (images/fanout.py)."""
        if self.actions and fan.describe():
            self.actions[-1] += ' (store to store: %s)' % fan.describe()
        self.notes.extend(fan.notes)

    def _note_resumed(self, resumed):
        if self.actions:
            self.actions[-1] += ' (resumed: %d slices were already there)' % resumed

    def _import(self, image_id, source, targets, disk_format, checksum, origin=None, raw_only=False, verifier=None):
        placeholder = {'id': image_id, 'name': self.name, 'status': 'importing', 'created_at': utc_now()}
        # A converted source was verified against the checksum already; the stores get its raw bytes.
        checksum = None if origin else checksum
        extra = [checksum[0]] if checksum and checksum[0] not in ('md5', 'sha512') else []
        declared = 'raw' if origin else disk_format

        def move_data(sinks, refresh, progress):
            if hasattr(source, 'listener'):
                source.listener = progress.note
                if source.last_event:
                    progress.note(source.last_event)  # this attempt started over: say why
            # Store hosts that can fetch the image from the store this host writes get it from there, down a chain.
            first, pulling = fanout.split_import(sinks)
            written = [sink for sink in sinks if sink not in pulling]
            reader = source.open()
            progress.set_total(getattr(reader, 'expected_size', None))
            for sink in written:
                sink.writer.expect(getattr(reader, 'expected_size', None))
            try:
                result = pipeline.run(reader, written, extra_algorithms=extra, on_slice=refresh,
                                      observers=[verifier.update] if verifier else ())
            finally:
                reader.close()
            if checksum and result.digests[checksum[0]] != checksum[1]:
                raise SourceError('checksum mismatch for %s: %s is %s, expected %s; nothing was stored'
                                  % (source.description, checksum[0], result.digests[checksum[0]], checksum[1]))
            if declared:
                check_declared(declared, result.report, converted=bool(origin))
            if raw_only:
                check_raw(result.report)
            stored_format = declared or result.report.format
            self._check_driver(stored_format, self.name)
            learned = dict(getattr(result.report, 'properties', None) or {})
            if self.signature:
                if verifier is not None:
                    verifier.verify()
                self.signature.check_trust()  # the certificate may have expired while the data streamed
                learned.update(self.signature.properties())
            record = new_record(image_id, self.name, stored_format, self.params.get('container_format') or 'bare',
                                self._metadata(), result.size, result.report.virtual_size, result.digests, 'active', learned=learned)
            if origin:
                record['source'] = origin
            if self.datablock:
                record['datablock'] = self.datablock.describe()
            if pulling:
                fan = fanout.fan_out_staged(first, image_id, result.slice_list, pulling, refresh, progress, result.size)
                if fan is not None:
                    self._note_route(fan)
            return record, result.slice_list

        self._transfer(image_id, targets, placeholder, move_data)

    def _copy(self, view, targets):
        source_store = self._source_store(view.active_stores(), view)
        record = view.copies[source_store.name]
        slice_list = source_store.backend.read_slice_list(view.id)
        placeholder = dict(record, status='importing', updated_at=utc_now())
        self._transfer(view.id, targets, placeholder, copy_from(source_store, view.id, record, slice_list, self._note_route))

    # ---- state: cloned
    def cloned(self, check_mode):
        """A new image (new id) with the data of ``clone_from``: a new record over the same slices, a COW clone in rbd."""
        if not self.name:
            raise InvalidArgument('state: cloned needs the name: of the new image')
        if self.params.get('src'):
            raise InvalidArgument('state: cloned takes clone_from:, not src:')
        view = self.catalog.find(self.image_id, self.name)
        if view is not None and _clone_cut_short(view):
            # Killed before its first record was active: only placeholders exist, which no source can complete;
            # clone again under the same id (the records are written over, the dead run's locks broken).
            self.image_id = view.id
            view = None
        if view is not None:
            # The clone exists: from now on it is an image like any other (copies, metadata updates).
            return self._converge(view, self._targets(), check_mode)
        # Made under the name's locks (as an import is) in the stores it may go to: clones of one name at once make one.
        stores = self._targets() or [store for store in self.catalog.stores.values() if store.identity is not None]
        return self._create_once(stores, check_mode, functools.partial(self._clone, check_mode), unfinished=_clone_cut_short)

    def _clone(self, check_mode):
        parent_ref = self.params.get('clone_from')
        if not parent_ref:
            raise InvalidArgument('state: cloned needs clone_from: (the name or id of the image to clone)')
        try:
            parent = self.catalog.find(image_id=check_image_id(parent_ref))
        except InvalidArgument:
            parent = self.catalog.find(name=check_image_name(parent_ref))
        if parent is not None and parent.deactivated_stores():
            raise ImageError("clone_from image '%s' (id %s) is deactivated: re-enable it with enabled: true before cloning it"
                             % (parent_ref, parent.id))
        if parent is None or not parent.active_stores():
            raise ImageError("clone_from image '%s' is active in no store" % parent_ref)
        active = parent.active_stores()
        targets = self._targets() or [self.catalog.store(name) for name in active]
        lacking = [store.name for store in targets if store.name not in active]
        if lacking:
            raise ImageError("clone_from image '%s' (id %s) is not in store%s %s (it is in %s): copy it there first"
                             % (parent_ref, parent.id, 's' if len(lacking) > 1 else '', ', '.join(lacking), ', '.join(active)))
        for store in targets:
            store.ensure_writable()
        image_id = self.image_id or str(uuid.uuid4())
        base = parent.copies[targets[0].name]
        metadata = dict((field, base.get(field)) for field in MUTABLE_FIELDS)
        metadata.update(dict((field, value) for field, value in self._metadata().items() if value is not None))
        metadata['protected'] = bool(self.params.get('protected'))
        self.after = self._summary(dict(metadata, name=self.name), [store.name for store in targets])
        self.actions.append('clone %s (id %s) as %s in %s' % (base.get('name'), parent.id, self.name, ', '.join(store.name for store in targets)))
        if check_mode:
            return True
        now = utc_now()
        record = dict(base, id=image_id, name=self.name, status='active', created_at=now, updated_at=now, cloned_from=parent.id, **metadata)
        clone_into(targets, parent.id, image_id, record)
        self.image_id = image_id
        return True

    # ---- state: absent
    def absent(self, check_mode):
        view = self.catalog.find(self.image_id, self.name)
        if view is None:
            return False
        self.image_id = view.id
        listed = self.params.get('stores')
        if listed:
            names = [name for name in listed if self.catalog.store(name) and name in view.copies]
        else:
            names = sorted(view.copies)
        record = view.reference()
        self.before = self._summary(record, view.held_stores())
        self.after = self._summary(record, [name for name in view.held_stores() if name not in names]) if len(names) < len(view.copies) else {}
        if not names:
            return False
        if record.get('protected'):
            raise ImageError("image '%s' (id %s) is protected: set protected: false before deleting it" % (record.get('name'), view.id))
        targets = [self.catalog.store(name) for name in names]
        for store in targets:
            store.ensure_writable()
            problem = store.backend.removal_problem(view.id)
            if problem:
                raise ImageError('%s; no store was changed' % problem)
        self.actions.append('delete from %s' % ', '.join(names))
        if not check_mode:
            for store in targets:
                self.released += remove_copy(store, view.id)
        return True

    def result(self):
        view = self.catalog.find(self.image_id) if self.image_id else None
        return view.describe() if view else {}


def _clone_cut_short(view):
    """True for a clone killed before it was active in any store: every record it has is its 'importing' placeholder."""
    records = list(view.copies.values())
    return bool(records) and all(record.get('cloned_from') and record.get('status') == 'importing' for record in records)


def _datablock_words(made):
    return '%d bytes, %s%s' % (made.get('size'), made.get('disk_format'), ', %s' % made['filesystem'] if made.get('filesystem') else '')
