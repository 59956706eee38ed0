"""Sync between the master base and the provider targets: the shell around ``syncd.core.plan``.

``engine`` runs a list's sync through its phases; ``pull`` reads and reconciles a target,
``select`` plans chunk by chunk, ``writer`` applies the plans in batches, ``state`` stores
TargetState, cursors and run rows, ``report`` holds the figures.
"""
