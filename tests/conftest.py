import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    # The emulator's ops are tiny; on a 2-core machine intra-op threads only add waits.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
