"""Linear centered kernel alignment (CKA), the similarity of two representations of
the same examples (Kornblith, Norouzi, Lee & Hinton 2019), as Raghu et al. (2020) use
it to show that MAML's inner loop barely changes the body (feature reuse).

For ``X`` (n, p) and ``Y`` (n, q), the rows being the same n examples, with columns
centred:

    CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)       in [0, 1].

It is 1 for identical representations, and invariant to orthogonal transforms and
isotropic scaling of either one (not to arbitrary invertible linear maps).
"""
from __future__ import annotations

import torch


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of ``x`` (n, ...) and ``y`` (n, ...) (each flattened to (n, features)).

    Computed in float64. A representation that is constant over the examples has no
    similarity structure: CKA is then 0 (and 1 if both are constant).
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA compares two representations of the same examples; got "
                         f"{x.shape[0]} and {y.shape[0]} rows")
    x = x.detach().reshape(x.shape[0], -1).double()
    y = y.detach().reshape(y.shape[0], -1).double()
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    # n x n Gram matrices: ||Y^T X||_F^2 = <XX^T, YY^T>, cheaper when features > examples
    kx, ky = x @ x.T, y @ y.T
    nx, ny = kx.norm(), ky.norm()
    if nx == 0 or ny == 0:
        return 1.0 if nx == ny else 0.0
    return float((kx * ky).sum() / (nx * ny))
