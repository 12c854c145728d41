"""Embedding space: a 2-D or 3-D projection (UMAP, t-SNE or PCA) of an episode's
support and query embeddings plus more samples of the split's classes, with the
prototypes in the same projection; before meta-training (a fresh init) beside
after (the session's model)."""
import numpy as np
import streamlit as st
import torch

from app import services, state, ui
from app.figures.embedding import embedding_figure
from app.i18n import t
from app.safe_text import show
from metarep_core.errors import MetaRepError

ctx = ui.page("embedding")
if ctx.task == "regression":
    st.info(t("embedding.regression"))
    st.stop()
entry = ui.model_or_stop(ctx)
s = ctx.settings
episode = ui.episode_or_stop(ctx)

c = st.columns(4)
method = c[0].radio(t("embedding.method"), ["umap", "tsne", "pca"], key="emb_method",
                    format_func=services.label_func("embedding.method."), horizontal=True)
dim = c[1].radio(t("embedding.dim"), [2, 3], key="emb_dim", horizontal=True,
                 format_func=lambda d: f"{d}-D")
n_samples = c[2].slider(t("embedding.samples"), 0, 1000, 200, step=50, key="emb_samples",
                        help=t("embedding.samples_help"))
params = {}
if method == "umap":
    params["n_neighbors"] = c[3].slider(t("embedding.n_neighbors"), 2, 200, 15, key="emb_neighbors",
                                        help=t("embedding.n_neighbors_help"))
elif method == "tsne":
    params["perplexity"] = float(c[3].slider(t("embedding.perplexity"), 1, 100, 30,
                                             key="emb_perplexity", help=t("embedding.perplexity_help")))
groups_known = bool(episode.info.get("groups")) and getattr(ctx.dataset, "groups", None)
color_by = st.radio(t("embedding.color_by"), ["class", "group"] if groups_known else ["class"],
                    key="emb_color", horizontal=True, format_func=services.label_func("embedding.color."))


def points_of(learner):
    """Embeddings (n, d) of support, query, extra samples, then prototypes; with the
    per-point class name, alphabet, kind, misclassified flag and image."""
    adapted = services.adapt(learner, episode, record=False)
    extra_x, extra_c = (ctx.dataset.samples(s.split, n_samples, seed=s.seed) if n_samples
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
             [ctx.dataset.class_names[ci] for ci in extra_c])
    groups_all = getattr(ctx.dataset, "groups", None)
    ep_groups = episode.info.get("groups") or [None] * s.n_way
    groups = ([ep_groups[i] for i in episode.support_y] + [ep_groups[i] for i in episode.query_y] +
              [groups_all[ci] if groups_all else None for ci in extra_c])
    kinds = (["support"] * len(episode.support_y) + ["query"] * len(episode.query_y) +
             ["sample"] * len(extra_c))
    wrong = np.zeros(len(kinds), bool)
    wrong[len(episode.support_y):len(episode.support_y) + len(episode.query_y)] = (
        pred.cpu().numpy() != episode.query_y.numpy())
    images = ui.image_array(x)
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


def figure_for(which: str, learner, version):
    from metarep_core.projection import project
    cache = state.cache("projections", max_items=8)
    key = (which, version, s.episode_key(), s.algorithm, method, dim, n_samples,
           tuple(sorted(params.items())))
    if key not in cache:
        emb, names, groups, kinds, wrong, images = points_of(learner)
        xy, notes = project(emb, method=method, dim=dim, seed=s.seed, return_notes=True, **params)
        cache[key] = (xy, names, groups, kinds, wrong, images, notes)
    xy, names, groups, kinds, wrong, images, notes = cache[key]
    for note in notes:
        st.caption(note)
    order = sorted(set(names), key=names.index)
    y = np.array([order.index(n) for n in names])
    return embedding_figure(xy, y, class_names=order, kinds=np.array(kinds), wrong=wrong,
                            images=images, groups=groups if color_by == "group" else None,
                            color_by=color_by, title=t("embedding." + which),
                            labels={k: t("fig." + k) for k in ("support", "query", "sample",
                                                               "prototype", "wrong")})


left, right = st.columns(2)
try:
    from metarep_core.projection import is_warm
    waiting = method == "umap" and not is_warm()
    with st.spinner(t("embedding.computing", method=t("embedding.method." + method))
                    + (" " + t("embedding.compiling") if waiting else "")):
        before = services.before_learner(s, ctx.dataset, ctx.dataset_id)
        fig_before = figure_for("before", before, ("before", s.seed))
        fig_after = figure_for("after", entry["learner"], entry["version"])
except MetaRepError as exc:
    show("error", exc)
    st.stop()
except NotImplementedError:
    st.info(t("embedding.no_embedding"))
    st.stop()
if entry["source"] == "fresh":
    st.info(t("embedding.not_trained"))
left.plotly_chart(fig_before, key="emb_before")
right.plotly_chart(fig_after, key="emb_after")
st.caption(t("embedding.explain"))
