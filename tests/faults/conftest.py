# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tests/faults: real ansible-playbook runs killed, raced and starved of disk (`make faults`, `make torture`).

Helpers: playbooks.py (start/run a playbook with the JSON callback, kill_tree). Every test here runs the real
modules against real file systems; the ones that need loop devices skip without root.
"""
