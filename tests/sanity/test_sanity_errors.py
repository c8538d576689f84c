"""Bad input to a probe is one clear line, never a traceback from deep inside torch."""

from __future__ import annotations

import pytest
import torch
from sanity_helpers import shuffled_loader
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import tunekit
from tunekit.errors import TunekitError
from tunekit.sanity import SanityError
from tunekit.testing import BNNet


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert "\n" not in text and isinstance(exc.value, TunekitError)
    return text


def test_loader_that_yields_a_bare_tensor() -> None:
    loader = DataLoader(torch.randn(32, 1, 8, 8), batch_size=8)
    with pytest.raises(SanityError) as exc:
        tunekit.check_initial_loss(BNNet(), loader, nn.CrossEntropyLoss())
    assert "must yield (inputs, targets) pairs, got a tensor of shape (8, 1, 8, 8)" in _one_line(
        exc
    )


def test_loader_with_inputs_of_the_wrong_shape() -> None:
    loader = DataLoader(
        TensorDataset(torch.randn(32, 3, 8, 8), torch.zeros(32, dtype=torch.long)), batch_size=8
    )
    with pytest.raises(SanityError) as exc:
        tunekit.overfit_small_sample(BNNet(), loader, nn.CrossEntropyLoss())
    text = _one_line(exc)
    assert "cannot run on the loader's batch (inputs of shape (8, 3, 8, 8))" in text


def test_targets_that_do_not_fit_the_outputs() -> None:
    loader = DataLoader(TensorDataset(torch.randn(32, 1, 8, 8), torch.zeros(32, 3)), batch_size=8)
    with pytest.raises(SanityError) as exc:
        tunekit.lr_range_test(
            BNNet(), torch.optim.SGD(BNNet().parameters(), lr=0.1), loader, nn.CrossEntropyLoss()
        )
    assert "outputs (shape (8, 4))" in _one_line(exc) and "targets (shape (8, 3))" in str(exc.value)


def test_loss_that_is_not_a_scalar() -> None:
    model = BNNet()
    with pytest.raises(SanityError) as exc:
        tunekit.lr_range_test(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            shuffled_loader(),
            nn.CrossEntropyLoss(reduction="none"),
        )
    assert "returned a tensor of shape (16,), not a scalar" in _one_line(exc)


def test_model_with_no_trainable_parameters() -> None:
    model = BNNet().requires_grad_(False)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    for probe in (
        lambda: tunekit.overfit_small_sample(model, shuffled_loader(), nn.CrossEntropyLoss()),
        lambda: tunekit.lr_range_test(model, opt, shuffled_loader(), nn.CrossEntropyLoss()),
    ):
        with pytest.raises(SanityError) as exc:
            probe()
        assert "the model has no trainable parameters" in _one_line(exc)


def test_detector_path_needs_a_loss_dict() -> None:
    with pytest.raises(SanityError) as exc:
        tunekit.check_initial_loss(BNNet(), shuffled_loader())  # no loss_fn: treated as a detector
    assert "must return a dict of losses" in _one_line(exc) and "pass loss_fn" in str(exc.value)

    class ReturnsTensor(nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return x.sum()

    with pytest.raises(SanityError) as exc:
        tunekit.check_initial_loss(ReturnsTensor(), shuffled_loader())
    assert "must return a dict of loss terms from model(inputs, targets)" in _one_line(exc)


def test_empty_loader_and_bad_sweep() -> None:
    empty = DataLoader(
        TensorDataset(torch.randn(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)), batch_size=8
    )
    with pytest.raises(SanityError) as exc:
        tunekit.check_initial_loss(BNNet(), empty, nn.CrossEntropyLoss())
    assert "yielded no batches" in _one_line(exc)
    model = BNNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(SanityError) as exc:
        tunekit.lr_range_test(
            model, opt, shuffled_loader(), nn.CrossEntropyLoss(), start_lr=1.0, end_lr=0.1
        )
    assert "0 < start_lr < end_lr" in _one_line(exc)
