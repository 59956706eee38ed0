"""Sync between the master base and the provider targets.

``syncd.core.plan`` is the pure diff (desired − last synced); ``engine`` pulls, plans and applies in
batches.
"""
