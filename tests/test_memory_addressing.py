"""Memory addressing rules (NTM, MANN's LRUA, DNC) on small hand-made inputs.

Each expected value is worked out by hand in the comment next to it; the functions
under test are the pure ones in metarep_core/learners/_memory.py.
"""
import math

import torch

from metarep_core.learners import _memory as mem


def t(*rows):
    """A batch of one: t([..]) -> (1, n) float64 tensor."""
    return torch.tensor(rows, dtype=torch.float64)


def close(a, b, tol=1e-6):
    torch.testing.assert_close(a, torch.as_tensor(b, dtype=a.dtype), atol=tol, rtol=0)


# --------------------------------------------------------------------------- content
def test_content_addressing_is_softmax_of_strength_times_cosine():
    memory = t([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])      # (1, 3, 2)
    key = t([[2.0, 0.0]])                                 # (1, 1, 2): direction (1, 0)
    # cosines: slot0 = 1, slot1 = 0, slot2 = 1/sqrt(2); strength 2 -> exponents 2, 0, sqrt(2)
    w = mem.content_weights(memory, key, t([2.0]))
    z = math.exp(2) + 1 + math.exp(math.sqrt(2))
    close(w, [[[math.exp(2) / z, 1 / z, math.exp(math.sqrt(2)) / z]]])
    close(mem.cosine_similarity(memory, key), [[[1.0, 0.0, 1 / math.sqrt(2)]]])


def test_content_addressing_strength_zero_is_uniform_and_large_is_argmax():
    memory = t([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    key = t([[0.0, 3.0]])
    close(mem.content_weights(memory, key, t([0.0])), [[[1 / 3, 1 / 3, 1 / 3]]])
    close(mem.content_weights(memory, key, t([200.0])), [[[0.0, 1.0, 0.0]]])


# --------------------------------------------------------------------------- NTM location
def test_ntm_interpolation_gate():
    # g = 0.25: 0.25 * [1, 0, 0] + 0.75 * [0, 0, 1] = [0.25, 0, 0.75]
    close(mem.ntm_interpolate(t([1.0, 0, 0]), t([0.0, 0, 1]), t(0.25)), [[0.25, 0.0, 0.75]])


def test_ntm_shift_is_a_circular_convolution():
    # weight all on slot 0; shift distribution over offsets (-1, 0, +1) = (0.1, 0.2, 0.7):
    # +1 moves 0.7 to slot 1, 0 keeps 0.2 on slot 0, -1 wraps 0.1 round to slot 3.
    close(mem.ntm_shift(t([1.0, 0, 0, 0]), t([0.1, 0.2, 0.7])), [[0.2, 0.7, 0.0, 0.1]])
    # a spread weighting: [0.5, 0.5, 0, 0] shifted by +1 exactly -> [0, 0.5, 0.5, 0]
    close(mem.ntm_shift(t([0.5, 0.5, 0, 0]), t([0.0, 0.0, 1.0])), [[0.0, 0.5, 0.5, 0.0]])


def test_ntm_sharpening():
    # [0.5, 0.25, 0.25] ** 2 = [0.25, 0.0625, 0.0625], sum 0.375 -> [2/3, 1/6, 1/6]
    close(mem.ntm_sharpen(t([0.5, 0.25, 0.25]), t(2.0)), [[2 / 3, 1 / 6, 1 / 6]], tol=1e-6)
    # gamma = 1 leaves a distribution unchanged
    close(mem.ntm_sharpen(t([0.2, 0.3, 0.5]), t(1.0)), [[0.2, 0.3, 0.5]], tol=1e-6)


def test_ntm_full_addressing_pipeline():
    # memory rows e1, e2, e3 (orthonormal); key e2 with a huge strength -> content [0, 1, 0];
    # gate 1 keeps content; shift +1 -> [0, 0, 1]; sharpen keeps a one-hot.
    memory = torch.eye(3, dtype=torch.float64).unsqueeze(0)
    w = mem.ntm_address(memory, t([0.0, 1.0, 0.0]), t(500.0), t([1.0, 0, 0]), t(1.0),
                        t([0.0, 0.0, 1.0]), t(1.0))
    close(w, [[0.0, 0.0, 1.0]], tol=1e-6)
    # gate 0 ignores content and keeps the previous weighting [1, 0, 0], then shifted -1
    # wraps it to slot 2.
    w = mem.ntm_address(memory, t([0.0, 1.0, 0.0]), t(500.0), t([1.0, 0, 0]), t(0.0),
                        t([1.0, 0.0, 0.0]), t(1.0))
    close(w, [[0.0, 0.0, 1.0]], tol=1e-6)


# --------------------------------------------------------------------------- MANN / LRUA
def test_lru_least_used_picks_the_smallest_usage_lower_index_on_ties():
    usage = t([0.5, 0.1, 0.3, 0.1])
    close(mem.lru_least_used(usage), [[0.0, 1.0, 0.0, 0.0]])         # slots 1 and 3 tie: 1
    close(mem.lru_least_used(usage, 2), [[0.0, 1.0, 0.0, 1.0]])      # the two smallest
    close(mem.lru_least_used(t([0.0, 0.0, 0.0])), [[1.0, 0.0, 0.0]])  # empty memory: slot 0


def test_lru_usage_decays_and_adds_reads_and_writes():
    # gamma 0.9: 0.9 * [1, 0, 0] + reads [0.5, 0.5, 0] + write [0, 0, 1] = [1.4, 0.5, 1.0]
    read_w = t([[0.5, 0.5, 0.0]])                                    # (1, 1 head, 3)
    close(mem.lru_usage(t([1.0, 0, 0]), read_w, t([0.0, 0, 1]), 0.9), [[1.4, 0.5, 1.0]])


def test_lru_write_weights_interpolate_last_read_and_least_used():
    # alpha = 0 -> sigmoid 0.5: 0.5 * [0.8, 0.2, 0] + 0.5 * [0, 0, 1] = [0.4, 0.1, 0.5]
    w = mem.lru_write_weights(t([0.8, 0.2, 0.0]), t([0.0, 0.0, 1.0]), t(0.0))
    close(w, [[0.4, 0.1, 0.5]])
    # alpha = log(3) -> sigmoid 0.75: [0.6, 0.15, 0.25]
    close(mem.lru_write_weights(t([0.8, 0.2, 0.0]), t([0.0, 0.0, 1.0]), t(math.log(3))), [[0.6, 0.15, 0.25]])


def test_lru_write_clears_the_least_used_slot_then_adds():
    memory = t([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    # least used = slot 2 (cleared to 0); write [0, 0.5, 0.5] of key (2, 4):
    # slot0 unchanged (1, 1); slot1 (2, 2) + 0.5 * (2, 4) = (3, 4); slot2 0 + (1, 2)
    out = mem.lru_write(memory, t([0.0, 0.0, 1.0]), t([0.0, 0.5, 0.5]), t([2.0, 4.0]))
    close(out, [[[1.0, 1.0], [3.0, 4.0], [1.0, 2.0]]])


# --------------------------------------------------------------------------- DNC
def test_dnc_allocation_from_a_known_usage_vector():
    # usage [0.4, 0.1, 0.8]: sorted ascending -> slot1 (0.1), slot0 (0.4), slot2 (0.8)
    # a[1] = 1 - 0.1 = 0.9; a[0] = (1 - 0.4) * 0.1 = 0.06; a[2] = (1 - 0.8) * 0.1 * 0.4 = 0.008
    close(mem.dnc_allocation(t([0.4, 0.1, 0.8])), [[0.06, 0.9, 0.008]], tol=1e-6)
    # a fully used memory allocates nothing; an empty one allocates the first slot
    close(mem.dnc_allocation(t([1.0, 1.0])), [[0.0, 0.0]], tol=1e-6)
    close(mem.dnc_allocation(t([0.0, 0.0, 0.0])), [[1.0, 0.0, 0.0]], tol=1e-6)


def test_dnc_retention_and_usage():
    # one read head with free gate 1 that read [0.5, 0.5, 0]: psi = [0.5, 0.5, 1]
    psi = mem.dnc_retention(t([1.0]), t([[0.5, 0.5, 0.0]]))
    close(psi, [[0.5, 0.5, 1.0]])
    # u = (u + w - u*w) * psi with u = [0.4, 0.1, 0.8], last write [0.5, 0, 0]:
    # slot0 (0.4 + 0.5 - 0.2) * 0.5 = 0.35; slot1 0.1 * 0.5 = 0.05; slot2 0.8 * 1 = 0.8
    close(mem.dnc_usage(t([0.4, 0.1, 0.8]), t([0.5, 0.0, 0.0]), psi), [[0.35, 0.05, 0.8]])


def test_dnc_write_weights_and_erase_add_write():
    # g_w 0.5, g_a 0.25: 0.5 * (0.25 * [1, 0] + 0.75 * [0.2, 0.8]) = [0.2, 0.3]
    close(mem.dnc_write_weights(t([1.0, 0.0]), t([0.2, 0.8]), t(0.25), t(0.5)), [[0.2, 0.3]])
    # M = ones(2, 2); write slot 0 fully, erase (1, 0), value (2, 3):
    # row0 = (1 * (1 - 1) + 2, 1 * (1 - 0) + 3) = (2, 4); row1 untouched (1, 1)
    out = mem.dnc_write(torch.ones(1, 2, 2, dtype=torch.float64), t([1.0, 0.0]), t([1.0, 0.0]), t([2.0, 3.0]))
    close(out, [[[2.0, 4.0], [1.0, 1.0]]])


def test_dnc_link_matrix_and_precedence_after_two_writes():
    n = 3
    link = torch.zeros(1, n, n, dtype=torch.float64)
    p = torch.zeros(1, n, dtype=torch.float64)
    # write 1 to slot 0: L stays 0 (no precedence yet); p = (1 - 1) * 0 + [1, 0, 0]
    w1 = t([1.0, 0.0, 0.0])
    link = mem.dnc_link(link, w1, p)
    p = mem.dnc_precedence(p, w1)
    close(link, torch.zeros(1, n, n))
    close(p, [[1.0, 0.0, 0.0]])
    # write 2 to slot 1: L[1, 0] = w[1] * p[0] = 1 (slot 1 was written after slot 0)
    w2 = t([0.0, 1.0, 0.0])
    link = mem.dnc_link(link, w2, p)
    p = mem.dnc_precedence(p, w2)
    close(link, [[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    close(p, [[0.0, 1.0, 0.0]])
    # a half write to slot 2: L[2, 1] = 0.5 * p[1] = 0.5; L[1, 0] keeps (1 - 0 - 0) * 1 = 1;
    # p = (1 - 0.5) * [0, 1, 0] + [0, 0, 0.5] = [0, 0.5, 0.5]
    w3 = t([0.0, 0.0, 0.5])
    link3 = mem.dnc_link(link, w3, p)
    close(link3, [[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.5, 0.0]]])
    close(mem.dnc_precedence(p, w3), [[0.0, 0.5, 0.5]])


def test_dnc_forward_and_backward_weightings_and_read_modes():
    link = t([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])   # written 0 -> 1 -> 2
    read_w = t([[0.0, 1.0, 0.0]])                                      # head reads slot 1
    fwd, bwd = mem.dnc_directional(link, read_w)
    close(fwd, [[[0.0, 0.0, 1.0]]])   # forward: the slot written after slot 1 = slot 2
    close(bwd, [[[1.0, 0.0, 0.0]]])   # backward: the slot written before slot 1 = slot 0
    # modes (backward, content, forward) = (0.2, 0.3, 0.5) with content on slot 1:
    # 0.2 * [1, 0, 0] + 0.3 * [0, 1, 0] + 0.5 * [0, 0, 1]
    w = mem.dnc_read_weights(t([[0.2, 0.3, 0.5]]), bwd, t([[0.0, 1.0, 0.0]]), fwd)
    close(w, [[[0.2, 0.3, 0.5]]])
    # the read vector is w^T M
    memory = t([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    close(mem.read_memory(memory, w), [[[0.2 + 1.0, 0.3 + 1.0]]])


def test_allocation_is_differentiable_in_usage():
    usage = torch.tensor([[0.4, 0.1, 0.8]], dtype=torch.float64, requires_grad=True)
    # d a[0] / d u[0] = -u[1] = -0.1 (a[0] = (1 - u0) * u1)
    (g,) = torch.autograd.grad(mem.dnc_allocation(usage)[0, 0], usage)
    close(g, [[-0.1, 0.6, 0.0]], tol=1e-6)
