"""Embedding space: a 2-D or 3-D projection (UMAP, t-SNE or PCA) of an episode's
support and query embeddings plus more samples of the split's classes, with the
prototypes in the same projection; before meta-training (a fresh init) beside
after (the session's model). The points come from :func:`app.embedding_space.points`.
Clicking a point (2-D) shows its image, class and kind under its chart
(:func:`app.clicks.clicked_points` reads the chart's selection)."""
import streamlit as st

from app import clicks, embedding_space, persistence, services, ui
from app.figures import how_to_read
from app.figures.embedding import embedding_figure
from app.i18n import t
from app.safe_text import plain, show
from app.messages import user_message
from metarep_core.errors import MetaRepError

METHODS = ("umap", "tsne", "pca")


def projection_controls(episode, dataset) -> dict:
    """The method, dimension, extra samples, method parameter and colouring chosen:
    ``{"method", "dim", "n_samples", "params", "color_by"}``."""
    groups_known = bool(episode.info.get("groups")) and getattr(dataset, "groups", None)
    persistence.restore_page(
        "embedding", emb_method=lambda v: v in METHODS, emb_dim=lambda v: v in (2, 3),
        emb_samples=lambda v: type(v) is int and 0 <= v <= 1000 and v % 50 == 0,
        emb_neighbors=lambda v: type(v) is int and 2 <= v <= 200,
        emb_perplexity=lambda v: type(v) is int and 1 <= v <= 100,
        emb_color=lambda v: v == "class" or (v == "group" and bool(groups_known)))
    c = st.columns(4)
    method = c[0].radio(t("embedding.method"), list(METHODS), key="emb_method",
                        format_func=services.label_func("embedding.method."), horizontal=True)
    dim = c[1].radio(t("embedding.dim"), [2, 3], key="emb_dim", horizontal=True,
                     format_func=lambda d: f"{d}-D")
    n_samples = c[2].slider(t("embedding.samples"), 0, 1000, 200, step=50, key="emb_samples",
                            help=t("embedding.samples_help"))
    params = {}
    if method == "umap":
        params["n_neighbors"] = c[3].slider(t("embedding.n_neighbors"), 2, 200, 15,
                                            key="emb_neighbors", help=t("embedding.n_neighbors_help"))
    elif method == "tsne":
        params["perplexity"] = float(c[3].slider(t("embedding.perplexity"), 1, 100, 30,
                                                 key="emb_perplexity",
                                                 help=t("embedding.perplexity_help")))
    color_by = st.radio(t("embedding.color_by"), ["class", "group"] if groups_known else ["class"],
                        key="emb_color", horizontal=True,
                        format_func=services.label_func("embedding.color."))
    persistence.keep_page("embedding", emb_method=method, emb_dim=dim, emb_samples=n_samples,
                          emb_color=color_by, **{("emb_neighbors" if k == "n_neighbors" else
                                                  "emb_perplexity"): int(v) for k, v in params.items()})
    return {"method": method, "dim": dim, "n_samples": n_samples, "params": params,
            "color_by": color_by}


def points_or_stop(ctx, model, episode, choice: dict) -> dict:
    """``{"before": EmbeddingPoints, "after": ...}``: a fresh init's and ``model``'s, or
    a message and the page stops."""
    from metarep_core.projection import is_warm
    method, s = choice["method"], ctx.settings
    waiting = method == "umap" and not is_warm()
    try:
        with st.spinner(t("embedding.computing", method=t("embedding.method." + method))
                        + (" " + t("embedding.compiling") if waiting else "")):
            models = {"before": services.before_model(s, ctx.dataset, ctx.dataset_id),
                      "after": model}
            return {which: embedding_space.points(m, episode, ctx.dataset, split=s.split,
                                           n_samples=choice["n_samples"], method=method,
                                           dim=choice["dim"], seed=s.seed, **choice["params"])
                    for which, m in models.items()}
    except MetaRepError as exc:
        show("error", user_message(exc))
        st.stop()
    except NotImplementedError:
        st.info(t("embedding.no_embedding"))
        st.stop()


def figure(points, which: str, color_by: str):
    return embedding_figure(points.xy, points.y, class_names=points.class_names,
                            kinds=points.kinds, wrong=points.wrong, images=points.images,
                            groups=points.groups if color_by == "group" else None,
                            color_by=color_by, title=t("embedding." + which),
                            labels={k: t("fig." + k) for k in ("support", "query", "sample",
                                                               "prototype", "wrong")})


def point_details(container, infos) -> None:
    """Under a chart: each clicked point's image(s), then what it is. Names go in the
    image captions (plain text: an uploaded class name is never read as markdown)."""
    for info in infos:
        kind = t("fig." + info.kind)
        names = [plain(info.class_name)] * len(info.images)
        if len(info.images):
            container.image(list(info.images), width=84, caption=names, clamp=True)
        line = t("embedding.point", kind=kind, index=info.index)
        if info.kind == "query":
            line += " " + t("embedding.point_wrong" if info.wrong else "embedding.point_right")
        elif info.kind == "prototype":
            line += " " + t("embedding.point_prototype")
        container.caption(line)


ctx = ui.page("embedding")
if ctx.task == "regression":
    st.info(t("embedding.regression"))
    st.stop()
model = ui.model_or_stop(ctx)
episode = ui.episode_or_stop(ctx)
choice = projection_controls(episode, ctx.dataset)
points = points_or_stop(ctx, model, episode, choice)
for note in points["before"].notes + points["after"].notes:
    st.caption(user_message(note))
if model.source == "fresh":
    st.info(t("embedding.not_trained"))
st.caption(t("embedding.click_hint") if choice["dim"] == 2 else t("embedding.click_hint_3d"))
left, right = st.columns(2)
for column, which, key in ((left, "before", "emb_before"), (right, "after", "emb_after")):
    fig = figure(points[which], which, choice["color_by"])
    # a click selects a point (2-D); the page reruns and shows it under its chart
    event = ui.chart(fig, key=key, container=column, caption=False, on_select="rerun",
                     selection_mode="points")
    point_details(column.container(key=f"{key}_point"),
                  clicks.clicked_points(points[which], event))
st.caption(how_to_read(fig))  # the same for both maps: said once, under them
