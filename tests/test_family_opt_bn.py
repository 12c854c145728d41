"""Batch norm at test time for the optimization family (MAML, Reptile, iMAML, ANIL):
their nets keep no running statistics, so query predictions are normalised by the
query batch's own statistics ("transductive", the default, as Finn's code) or by the
support set's ("support", the switch ``test_bn``). Checked by what each means: a
transductive prediction depends on the other queries, a support-statistics one does not."""
from __future__ import annotations

import pytest
import torch

from metarep_core.episodes import Episode
from metarep_core.learners import build_learner
from metarep_core.learners._functional import support_stats_forward

OPT = ["maml", "reptile", "imaml", "anil"]


def episode(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return Episode(torch.rand(3, 1, 8, 8, generator=gen), torch.arange(3),
                   torch.rand(9, 1, 8, 8, generator=gen), torch.arange(3).repeat_interleave(3),
                   ["a", "b", "c"], 3, 1, 3, seed)


def build(name, test_bn):
    torch.manual_seed(0)
    extra = {} if name == "maml" else {"hidden": 8}
    return build_learner(name, (1, 8, 8), 3, test_bn=test_bn, eval_steps=2, **extra)


@pytest.mark.parametrize("name", OPT)
def test_test_bn_is_declared_and_transductive_by_default(name):
    learner = build_learner(name, (1, 8, 8), 3)
    assert learner.hp["test_bn"] == "transductive"
    assert "transductive" in type(learner).summary


@pytest.mark.parametrize("name", OPT)
def test_support_statistics_make_each_query_independent_of_the_others(name):
    ep = episode()
    few = ep.query_x[:2]
    trans = build(name, "transductive").adapt(ep)
    # transductive: the same two queries are predicted differently beside the other seven
    assert not torch.allclose(trans.predict(ep.query_x)[:2], trans.predict(few), atol=1e-4)
    support = build(name, "support").adapt(ep)
    torch.testing.assert_close(support.predict(ep.query_x)[:2], support.predict(few), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(support.predict(ep.query_x)[:1], support.predict(ep.query_x[:1]))
    # the adaptation is the same; only the query statistics differ
    torch.testing.assert_close(support.predict(ep.support_x), trans.predict(ep.support_x))


def test_support_stats_forward_normalises_by_the_support_batch():
    """With the support set as the input, it is the plain batch-statistics forward."""
    torch.manual_seed(0)
    learner = build_learner("reptile", (1, 8, 8), 3, hidden=8)
    params = dict(learner.net.named_parameters())
    ep = episode()
    torch.testing.assert_close(support_stats_forward(learner.net, params, {}, ep.support_x, ep.support_x),
                               learner.net(ep.support_x))
    # and by nothing of the query batch: a query's output is the same alone or in a batch
    one = support_stats_forward(learner.net, params, {}, ep.support_x, ep.query_x[:1])
    all_ = support_stats_forward(learner.net, params, {}, ep.support_x, ep.query_x)
    torch.testing.assert_close(one, all_[:1])
