"""The head strategy: a regression head's bins follow `melasma.masi.severity` exactly; a classifier's
probabilities are the softmax and its bins their argmax."""

from __future__ import annotations

import pytest
import torch

from melasma.masi import SCALE_MAX, SEVERITIES, severity
from melasma.models.head import bins_from_masi, head_for


def test_regression_bins_are_the_severity_of_the_clipped_masi() -> None:
    head = head_for("regression")
    cutoffs = (10.7, 32.0)
    masi = torch.tensor([-3.0, 0.0, 10.0, 10.69, 10.7, 10.71, 31.99, 32.0, 48.0, 60.0])
    outputs = (masi / SCALE_MAX["masi"]).unsqueeze(1)
    clipped = head.masi(outputs)
    assert clipped.min() == 0 and clipped.max() == SCALE_MAX["masi"] and clipped.dtype == torch.float32
    expected = [SEVERITIES.index(severity(float(value), "masi", cutoffs)) for value in clipped]
    assert head.bins(outputs, cutoffs).tolist() == expected
    probs = head.probabilities(outputs, cutoffs, len(SEVERITIES))
    assert probs.argmax(1).tolist() == expected and probs.sum(1).tolist() == [1.0] * len(masi)
    assert head.outputs(3) == 1 and head.predicts_masi


def test_bins_compare_in_float64() -> None:
    edge = torch.tensor([10.7], dtype=torch.float32)  # 10.69999980926..., just below the cut-off 10.7
    assert severity(float(edge), "masi", (10.7, 32.0)) == "mild"
    assert bins_from_masi(edge, (10.7, 32.0)).tolist() == [0]  # a float32 comparison says moderate


def test_classification_reads_logits() -> None:
    head = head_for("classification")
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.5, 3.0]])
    assert torch.equal(head.probabilities(logits, (16.0, 32.0), 3), logits.softmax(1))
    assert head.bins(logits, (16.0, 32.0)).tolist() == [0, 2] and head.masi(logits) is None
    assert head.outputs(3) == 3 and not head.predicts_masi


def test_unknown_head_is_refused() -> None:
    with pytest.raises(ValueError, match="head must be classification or regression"):
        head_for("ordinal")
