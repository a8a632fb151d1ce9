"""Marker semantics for every test folder: `cuda` tests skip without a CUDA device and `ray` tests
skip without the ray extra, so a test needs only its marker, not a skipif of its own."""

import importlib.util

import pytest


def pytest_collection_modifyitems(config, items):
    cuda_available = None
    ray_available = importlib.util.find_spec("ray") is not None
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            if cuda_available is None:  # torch is imported only when a cuda test is collected
                import torch

                cuda_available = torch.cuda.is_available()
            if not cuda_available:
                item.add_marker(pytest.mark.skip(reason="cuda: needs a CUDA device; none is available"))
        if item.get_closest_marker("ray") is not None and not ray_available:
            item.add_marker(pytest.mark.skip(reason="ray: needs the optional ray extra (pip install -e '.[ray]')"))
