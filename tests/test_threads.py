import pytest
import torch

from hw4.threads import single_thread


@pytest.fixture(autouse=True)
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_single_thread_as_block_restores_even_on_error():
    with pytest.raises(RuntimeError, match="boom"):
        with single_thread():
            assert torch.get_num_threads() == 1
            raise RuntimeError("boom")
    assert torch.get_num_threads() == 2


def test_single_thread_as_decorator():
    @single_thread()
    def threads_inside():
        return torch.get_num_threads()

    assert threads_inside() == 1
    assert threads_inside() == 1  # reusable
    assert torch.get_num_threads() == 2
