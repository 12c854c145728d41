"""The Embedding page's data: a model's embedding of an episode plus more samples of
the split (:func:`embedded`), memoised apart from its 2-D/3-D projection
(:func:`points`), so changing only a projection setting re-projects without adapting
or embedding again (tested in tests/test_app_services.py)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from app import services, state
from metarep_core.episodes import Episode


@dataclass(frozen=True)
class EmbeddingPoints:
    """One model's embedding of an episode (support, query, extra samples of the
    split, then its prototypes), projected: ``xy`` (n, dim); per point the class
    name, group (alphabet) or None, kind ("support", "query", "sample",
    "prototype"), whether a query was misclassified, and its image (n, H, W[, 3]);
    ``notes`` say what the projection clamped."""

    xy: np.ndarray
    names: list[str]
    groups: list
    kinds: np.ndarray
    wrong: np.ndarray
    images: np.ndarray
    notes: list[str]

    @property
    def class_names(self) -> list[str]:
        """The distinct class names in order of first appearance."""
        return sorted(set(self.names), key=self.names.index)

    @property
    def y(self) -> np.ndarray:
        """(n,) each point's index in :attr:`class_names`."""
        order = self.class_names
        return np.array([order.index(n) for n in self.names])


@dataclass(frozen=True)
class Embedded:
    """One model's embedding of an episode before any projection: ``emb`` (n, d)
    float, then per point what :class:`EmbeddingPoints` carries (names, groups,
    kinds, wrong, images)."""

    emb: np.ndarray
    names: list[str]
    groups: list
    kinds: np.ndarray
    wrong: np.ndarray
    images: np.ndarray


def embedded(model: state.SessionModel, episode: Episode, dataset, *, split: str,
             n_samples: int, seed: int) -> Embedded:
    """:class:`Embedded` of ``model`` adapted to ``episode`` (support, query,
    ``n_samples`` images of ``split`` drawn with ``seed``, prototypes). Memoised apart
    from the projection: changing only a projection setting reuses it (adapting and
    embedding a thousand images is most of the page's time)."""
    def compute():
        emb, names, groups, kinds, wrong, images = _embed(model.learner, episode, dataset,
                                                          split, n_samples, seed)
        return Embedded(emb, names, groups, np.array(kinds), wrong, images)
    return model.remember(("embedded", services.episode_key(episode), split, n_samples, seed), compute)


def points(model: state.SessionModel, episode: Episode, dataset, *, split: str,
           n_samples: int, method: str, dim: int, seed: int, **params) -> EmbeddingPoints:
    """:class:`EmbeddingPoints` of ``model`` (adapted to ``episode``) with ``n_samples``
    more images of ``split``, projected by ``method`` ("umap", "tsne", "pca") to ``dim``
    dimensions (``params``: n_neighbors, perplexity). The embedding comes from
    :func:`embedded`, so a new projection of the same points does not adapt or embed
    again. NotImplementedError when the learner has no embedding; MetaRepError for a
    projection parameter out of range."""
    def compute():
        from metarep_core.projection import project
        e = embedded(model, episode, dataset, split=split, n_samples=n_samples, seed=seed)
        xy, notes = project(e.emb, method=method, dim=dim, seed=seed, return_notes=True, **params)
        return EmbeddingPoints(xy, e.names, e.groups, e.kinds, e.wrong, e.images, list(notes))
    key = ("points", services.episode_key(episode), split, n_samples, seed, method, dim,
           tuple(sorted(params.items())))
    return model.remember(key, compute)


def _embed(learner, episode: Episode, dataset, split: str, n_samples: int, seed: int):
    """Embeddings (n, d) of support, query, extra samples, then prototypes; with the
    per-point class name, group, kind, misclassified flag and image."""
    from app.ui import image_array
    adapted = services.adapt(learner, episode, record=False)
    extra_x, extra_c = (dataset.samples(split, n_samples, seed=seed) if n_samples
                        else (episode.query_x[:0], []))
    x = torch.cat([episode.support_x, episode.query_x, extra_x])
    with torch.no_grad():
        try:
            emb = adapted.embed(x)
        except NotImplementedError:  # a learner whose adapted state has no embedding of its own
            emb = learner.embed(x)
        pred = adapted.predict(episode.query_x).argmax(1)
    names = ([episode.class_names[i] for i in episode.support_y] +
             [episode.class_names[i] for i in episode.query_y] +
             [dataset.class_names[ci] for ci in extra_c])
    groups_all = getattr(dataset, "groups", None)
    ep_groups = episode.info.get("groups") or [None] * episode.n_way
    groups = ([ep_groups[i] for i in episode.support_y] + [ep_groups[i] for i in episode.query_y] +
              [groups_all[ci] if groups_all else None for ci in extra_c])
    kinds = (["support"] * len(episode.support_y) + ["query"] * len(episode.query_y) +
             ["sample"] * len(extra_c))
    wrong = np.zeros(len(kinds), bool)
    wrong[len(episode.support_y):len(episode.support_y) + len(episode.query_y)] = (
        pred.cpu().numpy() != episode.query_y.numpy())
    images = image_array(x)
    emb = emb.detach().cpu().numpy()
    if adapted.prototypes is not None:
        protos = adapted.prototypes.detach().cpu().numpy()
        emb = np.concatenate([emb, protos])
        names += list(episode.class_names)
        groups += list(ep_groups)
        kinds += ["prototype"] * len(protos)
        wrong = np.concatenate([wrong, np.zeros(len(protos), bool)])
        images = np.concatenate([images, np.zeros((len(protos),) + images.shape[1:], images.dtype)])
    return emb, names, groups, kinds, wrong, images
