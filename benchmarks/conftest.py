"""Micro-benchmarks of the numerical kernels (pytest-benchmark).

They are collected only when named (the project's ``testpaths`` is ``tests``): ``pytest benchmarks``
runs each once as a test (the project's pytest options include ``--benchmark-disable``), as
``scripts/test.sh`` does for the whole suite; ``pytest benchmarks --benchmark-enable`` times them.
One torch thread, as in a suite worker.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

torch.set_num_threads(1)
