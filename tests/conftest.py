"""Suite-wide test settings."""

import torch


def pytest_configure(config):
    # Tests use tiny tensors: one intra-op thread is faster for them and immune to the
    # thread-contention stalls seen on shared 2-core machines.
    torch.set_num_threads(1)
