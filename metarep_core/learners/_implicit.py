"""The math of iMAML (Rajeswaran et al. 2019) as pure functions over dicts of tensors.

* :func:`proximal_inner` solves the regularised inner problem
  ``phi* = argmin_phi  L_train(phi) + lam/2 ||phi - theta||^2`` approximately by
  gradient descent started at ``theta`` (no graph kept: iMAML never
  back-propagates through the inner loop).
* :func:`conjugate_gradient` solves ``A x = b`` for a symmetric positive-definite
  ``A`` given only as a matrix-vector product, recording the residual norms.
* :func:`implicit_meta_gradient` returns ``g = (I + H/lam)^-1 grad L_test(phi*)``
  with ``H`` the Hessian of ``L_train`` at ``phi*``, using Hessian-vector products
  (double backward) inside conjugate gradient. At the exact ``phi*`` this is the
  gradient of ``L_test(phi*(theta))`` with respect to ``theta`` (implicit function
  theorem on the stationarity condition ``grad L_train(phi*) + lam (phi* - theta) = 0``).
"""
from __future__ import annotations

from typing import Callable

import torch

Params = dict[str, torch.Tensor]
LossFn = Callable[[Params], torch.Tensor]


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _unflat(vec: torch.Tensor, like: Params) -> Params:
    out, i = {}, 0
    for k, t in like.items():
        out[k] = vec[i:i + t.numel()].view_as(t)
        i += t.numel()
    return out


def proximal_inner(loss_fn: LossFn, theta: Params, lam: float, steps: int, lr: float,
                   callback: Callable[[int, Params], None] | None = None) -> Params:
    """``steps`` of gradient descent on ``loss_fn(phi) + lam/2 ||phi - theta||^2``
    from ``phi = theta``; returns the detached ``phi``. ``callback(t, phi)`` is
    called for t = 0..steps."""
    theta = {k: v.detach() for k, v in theta.items()}
    phi = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
    if callback:
        callback(0, phi)
    for t in range(1, steps + 1):
        grads = torch.autograd.grad(loss_fn(phi), list(phi.values()))
        with torch.no_grad():
            # gradient of the proximal objective: grad L + lam (phi - theta)
            phi = {k: (phi[k] - lr * (g + lam * (phi[k] - theta[k]))).requires_grad_(True)
                   for k, g in zip(phi, grads)}
        if callback:
            callback(t, phi)
    return {k: v.detach() for k, v in phi.items()}


def conjugate_gradient(matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor,
                       iters: int, tol: float = 0.0) -> tuple[torch.Tensor, list[float]]:
    """Solve ``A x = b`` from ``x = 0``; returns x and the residual norms
    ``||b - A x_k||`` for k = 0..(iterations done) (length <= iters + 1).

    ``A = I + H/lam`` is positive definite only where ``lam`` outweighs the negative
    curvature of the inner loss; on a direction of non-positive curvature the
    iteration stops (truncated CG, as in Steihaug's method) and keeps the current
    ``x`` — or ``b`` itself (the first-order answer) if that happens at once.
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = torch.dot(r, r)
    residuals = [float(rs.sqrt())]
    for _ in range(iters):
        if residuals[-1] <= tol:
            break
        ap = matvec(p)
        curvature = torch.dot(p, ap)
        if curvature <= 0:
            if len(residuals) == 1:
                x = b.clone()
            break
        alpha = rs / curvature
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = torch.dot(r, r)
        residuals.append(float(rs_new.sqrt()))
        p = r + (rs_new / rs) * p
        rs = rs_new
    return x, residuals


def implicit_meta_gradient(train_loss_fn: LossFn, test_loss_fn: LossFn, phi: Params, lam: float,
                           cg_steps: int, tol: float = 0.0) -> tuple[Params, list[float], float]:
    """``g = (I + H/lam)^-1 grad_phi L_test(phi)`` by CG with Hessian-vector products.

    Returns (g as a dict shaped like ``phi``, CG residual norms, L_test(phi)).
    """
    phi = {k: v.detach().requires_grad_(True) for k, v in phi.items()}
    names = list(phi)
    test_loss = test_loss_fn(phi)
    v = _flat(torch.autograd.grad(test_loss, [phi[k] for k in names]))
    # One graph of the train gradient at phi, reused by every Hessian-vector product.
    train_grads = torch.autograd.grad(train_loss_fn(phi), [phi[k] for k in names], create_graph=True)
    flat_grad = _flat(train_grads)

    def matvec(p: torch.Tensor) -> torch.Tensor:
        hvp = torch.autograd.grad(flat_grad, [phi[k] for k in names], grad_outputs=p,
                                  retain_graph=True, allow_unused=True)
        hvp = _flat([torch.zeros_like(phi[k]) if h is None else h for k, h in zip(names, hvp)])
        return p + hvp / lam

    g, residuals = conjugate_gradient(matvec, v.detach(), cg_steps, tol)
    return _unflat(g.detach(), phi), residuals, float(test_loss.detach())
