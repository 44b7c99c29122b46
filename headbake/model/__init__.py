"""Model knowledge shared by bake and calibrate: what a checkpoint is (``info``) and how to load it (``loading``).

Per-architecture facts are data (``architectures.json``); aliases too (``aliases.json``).
"""
