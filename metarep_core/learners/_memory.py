"""Memory addressing as pure functions: NTM, MANN's least-recently-used access, DNC.

Every function takes and returns tensors with a leading batch dimension ``B`` (one
episode per row) and keeps no state, so each rule can be checked alone on a small
hand-made example (tests/test_memory_addressing.py). Notation follows the papers:
memory ``M`` (B, N, W) has ``N`` slots of width ``W``; a weighting ``w`` (B, N) is a
distribution (or sub-distribution) over slots.

- NTM (Graves, Wayne & Danihelka 2014): content addressing, interpolation with the
  previous weighting, circular shift, sharpening (eqs. 5-9).
- MANN / LRUA (Santoro et al. 2016): usage decay, least-used slot, write weights that
  interpolate between the last-read and the least-used slots (eqs. 4-8 of that paper).
- DNC (Graves et al. 2016, Methods): retention, usage, allocation from sorted usage,
  write weighting, erase/add write, precedence, temporal link matrix, forward and
  backward weightings, read modes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_EPS = 1e-8


# --------------------------------------------------------------------------- content
def cosine_similarity(memory: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each key with each slot.

    ``memory`` (B, N, W), ``keys`` (B, H, W) for H heads -> (B, H, N).
    """
    m = memory / (memory.norm(dim=-1, keepdim=True) + _EPS)
    k = keys / (keys.norm(dim=-1, keepdim=True) + _EPS)
    return torch.einsum("bhw,bnw->bhn", k, m)


def content_weights(memory: torch.Tensor, keys: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """Content-based weighting: softmax over slots of ``strength * cosine(key, slot)``.

    ``memory`` (B, N, W), ``keys`` (B, H, W), ``strength`` (B, H) (beta >= 0) -> (B, H, N).
    """
    return torch.softmax(strength.unsqueeze(-1) * cosine_similarity(memory, keys), dim=-1)


# --------------------------------------------------------------------------- NTM location
def ntm_interpolate(w_content: torch.Tensor, w_prev: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """Interpolation gate: ``g * w_content + (1 - g) * w_prev``. (B, N), gate (B,) or (B, 1)."""
    gate = gate.reshape(gate.shape[0], *([1] * (w_content.dim() - 1)))
    return gate * w_content + (1 - gate) * w_prev


def ntm_shift(w: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Circular convolution with a shift distribution over offsets ``-S..S``.

    ``w`` (B, N), ``shift`` (B, 2S+1) where column ``j`` is the weight of offset
    ``j - S``; result[i] = sum_j w[i - (j - S)] * shift[j] (indices mod N), so offset +1
    moves the focus one slot forward.
    """
    s = (shift.shape[-1] - 1) // 2
    out = torch.zeros_like(w)
    for j in range(shift.shape[-1]):
        out = out + torch.roll(w, shifts=j - s, dims=-1) * shift[..., j:j + 1]
    return out


def ntm_sharpen(w: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Sharpening: ``w ** gamma / sum(w ** gamma)``; ``gamma`` (B,) or (B, 1), >= 1."""
    gamma = gamma.reshape(gamma.shape[0], *([1] * (w.dim() - 1)))
    p = (w + _EPS) ** gamma
    return p / p.sum(-1, keepdim=True)


def ntm_address(memory, key, strength, w_prev, gate, shift, gamma) -> torch.Tensor:
    """The full NTM addressing pipeline for one head: content -> interpolate -> shift ->
    sharpen. ``memory`` (B, N, W), ``key`` (B, W), ``strength``/``gate``/``gamma`` (B,),
    ``w_prev`` (B, N), ``shift`` (B, 2S+1) -> (B, N)."""
    wc = content_weights(memory, key.unsqueeze(1), strength.unsqueeze(1)).squeeze(1)
    return ntm_sharpen(ntm_shift(ntm_interpolate(wc, w_prev, gate), shift), gamma)


# --------------------------------------------------------------------------- MANN / LRUA
def lru_usage(usage_prev: torch.Tensor, read_w: torch.Tensor, write_w: torch.Tensor,
              gamma: float) -> torch.Tensor:
    """Usage decay: ``u_t = gamma * u_{t-1} + sum_heads w_r + w_w``. (B, N); read_w (B, H, N)."""
    return gamma * usage_prev + read_w.sum(1) + write_w


def lru_least_used(usage: torch.Tensor, n_least: int = 1) -> torch.Tensor:
    """Least-used weights: 1 on the ``n_least`` slots of smallest usage, else 0 (B, N).

    Santoro et al. set ``w_lu(i) = 1`` if ``u(i) <= m(u, n)``, the n-th smallest usage;
    ties are broken by the lower slot index (so an empty memory fills from slot 0).
    """
    # A tiny index-proportional term makes the order deterministic on ties.
    n = usage.shape[-1]
    tie = torch.arange(n, device=usage.device, dtype=usage.dtype) * 1e-6
    idx = torch.topk(-(usage.detach() + tie), n_least, dim=-1).indices
    return torch.zeros_like(usage).scatter(-1, idx, 1.0)


def lru_write_weights(read_w_prev: torch.Tensor, least_used_prev: torch.Tensor,
                      alpha: torch.Tensor) -> torch.Tensor:
    """LRUA write weights: ``sigmoid(alpha) * w_r_{t-1} + (1 - sigmoid(alpha)) * w_lu_{t-1}``.

    ``read_w_prev`` (B, N) (the previous read weights, summed over heads), ``least_used_prev``
    (B, N), ``alpha`` (B,) the controller's learnable gate logit -> (B, N).
    """
    g = torch.sigmoid(alpha).reshape(-1, 1)
    return g * read_w_prev + (1 - g) * least_used_prev


def lru_write(memory: torch.Tensor, least_used_prev: torch.Tensor, write_w: torch.Tensor,
              key: torch.Tensor) -> torch.Tensor:
    """Write ``key`` (B, W) with weights ``write_w`` (B, N), after zeroing the least-used
    slot (Santoro et al.: "prior to writing, the least used memory location is set to
    zero"). ``memory`` (B, N, W) -> (B, N, W)."""
    cleared = memory * (1 - least_used_prev).unsqueeze(-1)
    return cleared + write_w.unsqueeze(-1) * key.unsqueeze(1)


# --------------------------------------------------------------------------- DNC
def dnc_retention(free_gates: torch.Tensor, read_w_prev: torch.Tensor) -> torch.Tensor:
    """Memory retention ``psi = prod_heads (1 - f_i * w_r_i)``: (B, R), (B, R, N) -> (B, N)."""
    return torch.prod(1 - free_gates.unsqueeze(-1) * read_w_prev, dim=1)


def dnc_usage(usage_prev: torch.Tensor, write_w_prev: torch.Tensor, retention: torch.Tensor) -> torch.Tensor:
    """Usage ``u_t = (u_{t-1} + w_w_{t-1} - u_{t-1} * w_w_{t-1}) * psi_t``, all (B, N)."""
    return (usage_prev + write_w_prev - usage_prev * write_w_prev) * retention


def dnc_allocation(usage: torch.Tensor) -> torch.Tensor:
    """Allocation weighting from usage (B, N) -> (B, N).

    With ``phi`` the slot indices sorted by ascending usage,
    ``a[phi_j] = (1 - u[phi_j]) * prod_{i<j} u[phi_i]``: the freest slot gets most.
    """
    # Usage is kept away from exactly 0 and 1 as in the reference implementation, so the
    # exclusive cumulative product stays informative; ties are broken by slot index.
    u = _EPS + (1 - _EPS) * usage
    n = u.shape[-1]
    tie = torch.arange(n, device=u.device, dtype=u.dtype) * 1e-7
    order = torch.argsort(u.detach() + tie, dim=-1)
    sorted_u = torch.gather(u, -1, order)
    prod_before = torch.cumprod(torch.cat([torch.ones_like(sorted_u[..., :1]), sorted_u[..., :-1]], -1), -1)
    sorted_alloc = (1 - sorted_u) * prod_before
    return torch.zeros_like(u).scatter(-1, order, sorted_alloc)


def dnc_write_weights(allocation: torch.Tensor, content_w: torch.Tensor,
                      alloc_gate: torch.Tensor, write_gate: torch.Tensor) -> torch.Tensor:
    """``w_w = g_w * (g_a * a + (1 - g_a) * c)``; (B, N), gates (B,) -> (B, N)."""
    ga = alloc_gate.reshape(-1, 1)
    gw = write_gate.reshape(-1, 1)
    return gw * (ga * allocation + (1 - ga) * content_w)


def dnc_write(memory: torch.Tensor, write_w: torch.Tensor, erase: torch.Tensor,
              value: torch.Tensor) -> torch.Tensor:
    """``M_t = M_{t-1} * (1 - w_w e^T) + w_w v^T``: memory (B, N, W), write_w (B, N),
    erase (B, W) in [0, 1], value (B, W) -> (B, N, W)."""
    ww = write_w.unsqueeze(-1)
    return memory * (1 - ww * erase.unsqueeze(1)) + ww * value.unsqueeze(1)


def dnc_precedence(precedence_prev: torch.Tensor, write_w: torch.Tensor) -> torch.Tensor:
    """``p_t = (1 - sum_i w_w[i]) p_{t-1} + w_w``, all (B, N)."""
    return (1 - write_w.sum(-1, keepdim=True)) * precedence_prev + write_w


def dnc_link(link_prev: torch.Tensor, write_w: torch.Tensor, precedence_prev: torch.Tensor) -> torch.Tensor:
    """Temporal link update, ``L[i, j]`` = how much slot i was written right after slot j.

    ``L_t[i, j] = (1 - w[i] - w[j]) L_{t-1}[i, j] + w[i] p_{t-1}[j]``, diagonal kept 0.
    link_prev (B, N, N), write_w (B, N), precedence_prev (B, N) -> (B, N, N).
    """
    wi = write_w.unsqueeze(-1)
    wj = write_w.unsqueeze(-2)
    link = (1 - wi - wj) * link_prev + wi * precedence_prev.unsqueeze(-2)
    eye = torch.eye(link.shape[-1], device=link.device, dtype=link.dtype)
    return link * (1 - eye)


def dnc_directional(link: torch.Tensor, read_w_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward ``f = L w_r`` and backward ``b = L^T w_r`` weightings.

    link (B, N, N), read_w_prev (B, R, N) -> (forward, backward), each (B, R, N).
    """
    forward = torch.einsum("bij,brj->bri", link, read_w_prev)
    backward = torch.einsum("bji,brj->bri", link, read_w_prev)
    return forward, backward


def dnc_read_weights(read_modes: torch.Tensor, backward: torch.Tensor, content_w: torch.Tensor,
                     forward: torch.Tensor) -> torch.Tensor:
    """``w_r = pi[0] b + pi[1] c + pi[2] f``; read_modes (B, R, 3) (a softmax), the
    others (B, R, N) -> (B, R, N)."""
    pi = read_modes.unsqueeze(-1)
    return pi[:, :, 0] * backward + pi[:, :, 1] * content_w + pi[:, :, 2] * forward


def read_memory(memory: torch.Tensor, read_w: torch.Tensor) -> torch.Tensor:
    """Read vectors ``r = w_r^T M``: memory (B, N, W), read_w (B, H, N) -> (B, H, W)."""
    return torch.einsum("bhn,bnw->bhw", read_w, memory)


def oneplus(x: torch.Tensor) -> torch.Tensor:
    """DNC's ``oneplus(x) = 1 + softplus(x)``, for key strengths (>= 1)."""
    return 1 + F.softplus(x)
