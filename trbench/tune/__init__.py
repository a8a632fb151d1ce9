"""`trbench tune`: Optuna search over an algorithm's settings (by default TRPO's max_kl × damping).

One trial trains the candidate configuration on K seeds (× every env) and scores it by the mean
final deterministic evaluation return (on normalised scores when several envs are given). The
study lives in an Optuna storage (by default ``DIR/study.db``), so several worker processes, or
several machines, share it, and rerunning the same command continues it to N trials in total.
Every run is an ordinary run folder under ``DIR/runs/``, so ``trbench report DIR`` reads them.
The user guide is docs/tuning.md.

The modules, in the order a study uses them: :mod:`.space` (the search space), :mod:`.settings`
(what a study needs, from the command line and a suite file), :mod:`.storage` (opening the
storage, with heartbeats), :mod:`.trials` (which trials count, and recovering interrupted ones),
:mod:`.study` (sampler, pruner, the study itself), :mod:`.objective` (one trial's runs),
:mod:`.workers`, :mod:`.outputs` (trials.csv, best.json, figures, tuned.toml),
:mod:`.reevaluate` and :mod:`.cli`.
"""
