"""The floor of the stack: what every layer above may use and that imports nothing of the project.

- :mod:`~trbench.base.errors`: the one error the commands turn into a one-line message and exit 2;
- :mod:`~trbench.base.files`: atomic writes (a reader sees a whole file or none);
- :mod:`~trbench.base.run_folder`: the run-folder format: file names, writing order, every reader;
- :mod:`~trbench.base.results_folder`: a suite's results folder (manifest, runs/, superseded/);
- :mod:`~trbench.base.presets`: finding a preset suite file by name (reproduce and report both ask);
- :mod:`~trbench.base.processes`: helpers for the worker processes of the runner and the tuner.

The layers above: ``algos`` (the learning core), ``suites`` (grids and their execution),
``analysis`` (reads run folders only) and the commands (``trbench.*``). CONTRIBUTING.md draws it.
"""
