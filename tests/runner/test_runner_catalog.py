# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/catalog.yml (role image_catalog) as an AWX job: two images applied to the stores a setup job
declared, on a central host then an edge host (both this machine, each with its own registry), then the same
job again with nothing to change."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SETUP_PLAY = """\
- name: Declare the stores the catalog applies images to
  hosts: central_hosts:edge_hosts
  gather_facts: false
  tasks:
    - name: Declare the stores of this host
      vmimages.multistore.store:
        registry: "{{ multistore_registry }}"
        name: "{{ item.name }}"
        path: "{{ item.path }}"
        zone: "{{ item.zone }}"
        site_role: "{{ item.site_role }}"
      loop: "{{ catalog_stores[inventory_hostname] }}"
"""


@pytest.mark.skipif(not os.path.exists(os.path.join(ROOT, 'playbooks', 'catalog.yml')), reason='no playbooks/catalog.yml')
def test_catalog_under_ansible_runner(runner_job):
    work = os.path.join(runner_job.base, 'catalog')
    src = os.path.join(work, 'src')
    os.makedirs(src)
    sums = dict((name, runner_job.make_image(os.path.join(src, name + '.raw'), mib)) for name, mib in (('alpha', 3), ('beta', 2)))
    central, edge = os.path.join(work, 'stores', 'central'), os.path.join(work, 'stores', 'edge')
    # the central host owns `central`; the edge host owns `edge` and reaches `central` (here: the same directory)
    runner_job.hosts['localhost']['multistore_registry'] = os.path.join(work, 'registry-central')
    runner_job.set_groups('localhost', ['central_hosts'])
    runner_job.add_host('edgehost', groups=['edge_hosts'], multistore_registry=os.path.join(work, 'registry-edge'))
    central_store = {'name': 'central', 'path': central, 'zone': 'site-a', 'site_role': 'central'}
    stores = {'localhost': [central_store],
              'edgehost': [central_store, {'name': 'edge', 'path': edge, 'zone': 'site-b', 'site_role': 'edge'}]}
    runner_job.add_playbook('catalog_stores.yml', SETUP_PLAY)
    job = runner_job.run('catalog_stores.yml', {'catalog_stores': stores})
    assert len(job.results('runner_item_on_ok', module='store')) == 3

    images = {
        'multistore_images': [
            {'name': 'alpha', 'src': os.path.join(src, 'alpha.raw'), 'checksum': 'sha256:' + sums['alpha'],
             'disk_format': 'raw', 'stores': ['central', 'edge'], 'properties': {'os_distro': 'alpha'}},
            {'name': 'beta', 'src': os.path.join(src, 'beta.raw'), 'checksum': 'sha256:' + sums['beta'],
             'disk_format': 'raw', 'stores': ['central'], 'min_disk': 1},
        ],
        'multistore_catalog_prune': True,
        'multistore_catalog_tag': 'runner-catalog',
    }
    job = runner_job.run('catalog.yml', images)
    stats = job.stats()
    assert not stats['failures'] and not stats['dark'], stats
    applied = job.results('runner_item_on_ok', module='image')
    by_host = {}
    for data in applied:
        by_host.setdefault(data['host'], []).append(data['res'])
    # central imported both images into central; the edge host copied alpha to edge
    assert sorted(res['image']['name'] for res in by_host['localhost'] if res['changed']) == ['alpha', 'beta'], job.explain()
    assert [res['image']['name'] for res in by_host['edgehost'] if res['changed']] == ['alpha'], job.explain()
    for res in by_host['localhost'] + by_host['edgehost']:
        assert res['image']['status'] == 'active' and 'runner-catalog' in res['image']['tags'], res['image']
    alpha = [res['image'] for res in by_host['edgehost'] if res['image']['name'] == 'alpha'][0]
    assert sorted(alpha['stores']) == ['central', 'edge']
    assert stats['changed'].get('localhost') and stats['changed'].get('edgehost'), stats

    job = runner_job.run('catalog.yml', images)
    stats = job.stats()
    assert not stats['failures'] and not stats['dark'], stats
    assert sum(stats['changed'].values()) == 0, 'second run changed something: %s\n%s' % (stats, job.explain())
    assert job.results('runner_item_on_ok', module='image')
