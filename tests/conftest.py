import os

# one thread per test process: faster on 2 cores and the determinism tests compare like with like
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

torch.set_num_threads(1)
