# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/demo.yml, a failing job and a long import with async + poll, each run by ansible-runner as AWX runs a
job (fixture runner_job, tests/runner/conftest.py): status, rc, job events with our modules' results, stats."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

# tasks after the store `central` is declared (RunnerJob.add_store_play)
FAILING_TASKS = """\
    - name: Declare a store on a forbidden path (the error is ignored, the job goes on)
      vmimages.multistore.store:
        name: bad
        path: /proc/images
      ignore_errors: true  # noqa: ignore-errors

    - name: Import an image whose checksum is wrong
      vmimages.multistore.image:
        name: wrong-sum
        src: "{{ image }}"
        checksum: "sha256:{{ '0' * 64 }}"
        disk_format: raw
        stores: [central]

    - name: Never reached
      ansible.builtin.debug:
        msg: the import above failed
"""

ASYNC_TASKS = """\
    - name: Import the image served slowly (async, polled every second)
      vmimages.multistore.image:
        name: slow-disk
        src: "{{ url }}"
        checksum: "sha256:{{ sha256 }}"
        disk_format: raw
        stores: [central]
      async: 300
      poll: 1
      register: slow_import

    - name: Look the image up
      vmimages.multistore.image_info:
        name: slow-disk
      register: slow_info

    - name: Check it is active
      ansible.builtin.assert:
        that:
          - slow_import is changed
          - slow_info.images[0].status == 'active'
          - slow_info.images[0].stores == ['central']
"""


def test_demo_under_ansible_runner(runner_job):
    """The demo as an AWX job: successful, one runner_on_ok with the module result for each of our module tasks."""
    job = runner_job.run('demo.yml')
    assert job.rc == 0

    stats = job.stats()
    assert not stats['failures'] and not stats['dark'], stats
    assert stats['ok'].get('localhost', 0) > 0 and stats['changed'].get('localhost', 0) > 0, stats

    # every task of our collection reported its result; store's loop also as runner_item_on_ok events
    store = job.results(module='store')
    assert len(store) == 1 and len(store[0]['res']['results']) == 2
    items = job.results('runner_item_on_ok', module='store')
    assert sorted(item['res']['store']['name'] for item in items) == ['central', 'edge']
    for item in items:
        assert item['res']['store']['status'] == 'connected', item['res']

    images = job.results(module='image')
    assert [data['task'] for data in images] == [
        'Import the image into the central store (checksum verified, format detected)',
        'Copy it to the edge store (only the slices edge lacks move)',
        'Delete the image from the central store only']
    imported, copied, deleted = (data['res'] for data in images)
    assert imported['changed'] and imported['image']['status'] == 'active' and imported['image']['stores'] == ['central']
    assert copied['changed'] and sorted(copied['image']['stores']) == ['central', 'edge']
    assert deleted['changed'] and deleted['image']['stores'] == ['edge']

    info = job.results(module='image_info')
    assert len(info) == 1
    image = info[0]['res']['images'][0]
    assert image['name'] == 'demo-disk' and image['disk_format'] == 'qcow2' and image['id'] == imported['image']['id']

    export = job.results(module='image_export')
    assert len(export) == 1 and export[0]['res']['export']['size'] > 0

    stores = job.results(module='store_info')
    assert len(stores) == 1 and sorted(s['name'] for s in stores[0]['res']['stores']) == ['central', 'edge']

    assert not job.named('runner_on_failed', 'runner_on_unreachable')
    # the job's stdout (what AWX shows) is in the artifacts too
    assert 'PLAY RECAP' in job.stdout()


def test_failing_job_reports_our_message(runner_job):
    work = os.path.join(runner_job.base, 'failing')
    os.makedirs(work)
    image = os.path.join(work, 'disk.raw')
    runner_job.make_image(image, 2)
    runner_job.add_store_play('failing.yml', 'A job that fails with our messages', FAILING_TASKS)

    job = runner_job.run('failing.yml', {'work': work, 'image': image}, expect='failed')
    assert job.rc != 0

    failed = job.named('runner_on_failed')
    assert len(failed) == 2, job.explain()
    forbidden, checksum = (event['event_data'] for event in failed)
    assert forbidden['ignore_errors'] is True
    assert forbidden['resolved_action'] == 'vmimages.multistore.store'
    assert '/proc' in forbidden['res']['msg'] and 'forbidden' in forbidden['res']['msg'].lower(), forbidden['res']['msg']
    assert checksum['resolved_action'] == 'vmimages.multistore.image'
    message = checksum['res']['msg']
    assert 'checksum' in message and '0' * 64 in message, message

    stats = job.stats()
    assert stats['failures'] == {'localhost': 1} and stats['ignored'] == {'localhost': 1}, stats
    assert not [e for e in job.named('runner_on_ok') if e['event_data']['task'] == 'Never reached']
    # nothing was stored under the failed import
    assert not os.listdir(os.path.join(work, 'stores', 'central', 'images'))


def test_async_import_is_polled(runner_job, http_server):
    """An import lasting a few seconds (http /slow/: about 4 MiB/s), async with poll: runner_on_async_poll events."""
    www, url, _closed = http_server
    work = os.path.join(runner_job.base, 'async')
    os.makedirs(work)
    sha256 = runner_job.make_image(os.path.join(www, 'slow.raw'), 12)
    runner_job.add_store_play('async.yml', 'A long import in the background, polled, as a job template would run it', ASYNC_TASKS)

    job = runner_job.run('async.yml', {'work': work, 'url': url + '/slow/slow.raw', 'sha256': sha256})
    polls = job.named('runner_on_async_poll')
    assert len(polls) >= 2, job.explain()
    done = job.named('runner_on_async_ok')
    assert len(done) == 1 and done[0]['event_data']['resolved_action'] == 'vmimages.multistore.image', job.explain()
    assert done[0]['event_data']['res']['changed']
    started = [e for e in job.named('runner_on_start') if e['event_data']['resolved_action'] == 'vmimages.multistore.image']
    assert len(started) == 1
    for poll in polls:
        # each poll is Ansible's async_status, between the image task's start and its async result
        assert started[0]['counter'] < poll['counter'] < done[0]['counter']
        assert poll['event_data']['resolved_action'] == 'ansible.builtin.async_status'
        res = poll['event_data']['res']
        assert res.get('ansible_job_id') and res.get('finished') in (0, False), res
    result = job.results(module='image')
    assert len(result) == 1 and result[0]['res']['image']['status'] == 'active'
    assert not job.stats()['failures']
