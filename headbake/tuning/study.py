"""The Optuna study behind ``headbake tune``: journal-file storage, resumable, seeded trial by trial.

Storage is Optuna's journal file (``JournalStorage`` over ``JournalFileBackend``):
an append-only log that several processes or machines can share (it locks
with a symlink, which also works on NFS). A study is named by a digest of
everything that decides its trials' values (model weights, dev rows,
calibration data and settings, objective, search space, sampler, seed), so
running the same command again continues the same study, and changing any
of those starts a new one in the same file.

The first run stores the measured S_v in the study; later runs and other
machines read it from there instead of calibrating again, so every trial of
a study applies the rule to the same S_v.

``--trials N`` is a total: the run stops when the study holds N evaluated
trials, counting those of earlier runs and of other machines. A draw that is
infeasible, or that selects the very gains of a trial already evaluated, is
recorded as pruned: it costs no model time and is not counted, and the
sampler learns to look elsewhere. That last rule matters: without it the
sampler settles on its best point so far and repeats it. On the planted
model (tests/planted.py, whose perceptual head alone peaks at another gain
than the best pair) TPE found the best setting within 150 trials for 14 of
32 seeds when repeats counted as trials, and for 31 of 32 when they were
pruned (simulated on the design; 15 of 16 seeds on the real model, median
70 evaluated trials). A run
that draws ``PRUNED_LIMIT`` pruned trials in a row stops early: the space is
(nearly) exhausted. The sampler is re-seeded before each trial from ``seed``
and the number of finished trials (and of trials another worker has in
flight), so a run that was interrupted and resumed draws exactly the trials
an uninterrupted run would have (on one machine); a trial cut short by
Ctrl-C is marked failed and leaves no trace in the sampling.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

from headbake.errors import HeadbakeError

SAMPLERS = ("tpe", "nsga2")
DIRECTIONS = ("maximize", "minimize")  # dev accuracy, KL from vanilla
STUDY_PREFIX = "headbake-tune-"
PRUNED_LIMIT = 500


def _optuna():
    try:
        import optuna
    except ImportError:  # pragma: no cover - a declared dependency
        raise HeadbakeError("headbake tune needs optuna: pip install optuna") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
    return optuna


def study_name(identity: dict) -> str:
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return STUDY_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:16]


def open_storage(path):
    """Optuna's journal storage in ``path`` (created with its folder if missing)."""
    optuna = _optuna()
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = Path(path)
    if path.is_dir():
        raise HeadbakeError(f"--storage is a directory: {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return JournalStorage(JournalFileBackend(str(path)))
    except (ValueError, KeyError, json.JSONDecodeError) as e:
        raise HeadbakeError(f"--storage {path.name} is not an Optuna journal file ({type(e).__name__}); "
                            "name another file") from None
    except optuna.exceptions.OptunaError as e:
        raise HeadbakeError(f"cannot open --storage {path.name}: {e}") from None


def trial_seed(seed: int, done: int, busy: int = 0) -> int:
    """The sampler's seed for the next trial: a hash, so the streams of two ``--seed`` values do not overlap."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{done}:{busy}".encode()).digest()[:4], "big")


def make_sampler(kind: str, seed: int, population: int = 20):
    optuna = _optuna()
    if kind == "tpe":
        # Independent TPE (Optuna's own default for several objectives): on the planted model it found the best
        # setting more often than the multivariate one (12 vs 7 of 16 seeds within 300 draws).
        return optuna.samplers.TPESampler(seed=seed, multivariate=False, n_startup_trials=10)
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
    raise HeadbakeError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {kind!r}")


def open_study(storage, name: str):
    """The study ``name`` in ``storage``, created if it does not exist yet."""
    optuna = _optuna()
    return optuna.create_study(storage=storage, study_name=name, directions=list(DIRECTIONS),
                               load_if_exists=True)


def finished(study) -> list:
    """Trials the sampler has learnt from: evaluated or pruned as infeasible (not failed, not running)."""
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def evaluated(study) -> list:
    """Trials that count towards ``--trials``."""
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def run_trials(study, target: int, sampler: str, seed: int, trial_fn, on_trial=None) -> tuple[int, bool]:
    """Ask, evaluate and tell until the study holds ``target`` evaluated trials.

    Returns ``(trials drawn here, whether the run stopped early because every draw was pruned)``.

    ``trial_fn(trial)`` returns ``(accuracy, kl)`` or raises ``optuna.TrialPruned``;
    ``on_trial(frozen_trial)`` is called after each one is stored.
    """
    optuna = _optuna()
    from optuna.trial import TrialState

    ran = pruned = 0
    while True:
        if len(evaluated(study)) >= target:
            return ran, False
        if pruned >= PRUNED_LIMIT:
            return ran, True
        done = len(finished(study))
        # Trials in flight elsewhere (another machine on the same file) shift the seed, so two workers at the
        # same count do not draw the same values; alone, a run's draws depend only on seed and count.
        busy = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        study.sampler = make_sampler(sampler, trial_seed(seed, done, busy))
        trial = study.ask()
        try:
            values = trial_fn(trial)
        except optuna.TrialPruned:
            frozen = study.tell(trial, state=TrialState.PRUNED)
            pruned += 1
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)  # Ctrl-C or an error: never left RUNNING
            raise
        else:
            frozen = study.tell(trial, list(values))
            pruned = 0
        ran += 1
        if on_trial is not None:
            on_trial(frozen)
