"""Tune: choose the selection values automatically, with an honest held-out check (``headbake tune``).

Modules: ``space`` (the six values, searched as heads per class and gains on
a grid; the rule's constraints), ``objective`` (dev accuracy and KL from the
original, on the loaded model), ``study`` (Optuna journal storage, resumable
and shareable, seeded per trial), ``front`` (Pareto front, the choice rule,
table and plot), ``data`` (dev and held-out rows, split, overlap refusal),
``holdout`` (the held-out check with paired statistics), ``run`` (one run).

Importing this package loads neither torch, transformers nor optuna.
"""
