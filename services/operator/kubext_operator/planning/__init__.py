"""Pure reconcile planning: desired children from a spec, status from observed children.

Nothing here performs I/O or reads the clock: callers pass ``now`` and random sources in.
"""
