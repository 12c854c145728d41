"""Linear CKA (Kornblith et al. 2019) against values worked by hand."""
from __future__ import annotations

import pytest
import torch

from metarep_core.learners._cka import linear_cka


def test_identical_representations_have_cka_one():
    x = torch.randn(10, 7, generator=torch.Generator().manual_seed(0))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_invariant_to_orthogonal_transforms_and_isotropic_scaling():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(12, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(12, 4, generator=gen, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=gen, dtype=torch.float64))
    base = linear_cka(x, y)
    assert 0.0 < base < 1.0
    assert linear_cka(x @ q, y) == pytest.approx(base, abs=1e-10)
    assert linear_cka(3.7 * x, 0.2 * y) == pytest.approx(base, abs=1e-10)
    # but not to an arbitrary invertible (non-orthogonal) map
    stretch = torch.diag(torch.tensor([10.0, 1.0, 1.0, 1.0, 1.0], dtype=torch.float64))
    assert abs(linear_cka(x @ stretch, y) - base) > 1e-3


def test_a_small_example_by_hand():
    """One feature each: CKA is the squared Pearson correlation. x = (1, 2, 3) and
    y = (1, 3, 2) centre to (-1, 0, 1) and (-1, 1, 0): correlation 1/2, CKA 1/4."""
    x = torch.tensor([[1.0], [2.0], [3.0]])
    y = torch.tensor([[1.0], [3.0], [2.0]])
    assert linear_cka(x, y) == pytest.approx(0.25, abs=1e-12)
    # two features: X = [[1,0],[0,1],[-1,-1]] (centred already), Y = X[:, :1]:
    # ||Y^T X||^2 = 2^2 + 1^2 = 5, ||X^T X|| = ||[[2,1],[1,2]]|| = sqrt(10), ||Y^T Y|| = 2
    big = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    assert linear_cka(big, big[:, :1]) == pytest.approx(5 / (2 * 10 ** 0.5), abs=1e-12)


def test_refuses_different_examples():
    with pytest.raises(ValueError, match="same examples"):
        linear_cka(torch.zeros(3, 2), torch.zeros(4, 2))
