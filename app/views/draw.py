"""Draw your own characters: a canvas per drawing (K examples and some queries of each of
N new characters); the drawings become an episode the learners adapt to, a zip in the
Omniglot layout to download, and this session's uploaded dataset on request. The
conversion (canvas pixels -> the dataset's arrays, the zip) is the core's
metarep_core/data/drawing.py."""
import dataclasses

import streamlit as st
from streamlit_drawable_canvas import st_canvas

from app import persistence, services, ui, uploads
from app.figures.adaptation import query_predictions
from app.figures.episodes import episode_grid
from app.i18n import t
from app.safe_text import show
from metarep_core.data import drawing
from metarep_core.errors import MetaRepError

CANVAS_PX = 150
# Omniglot's strokes are about 1/18 of the drawing's width at 28x28 (1.5 pixels); a
# 9-pixel pen on a 150-pixel canvas gives the same after the resize.
STROKE_PX = 9
ZIP_NAME = "my_characters.zip"


def shape_controls() -> tuple[int, int, int]:
    """How many characters, drawings of each for the support set, and queries of each."""
    c1, c2, c3 = st.columns(3)
    n_way = c1.number_input(t("draw.n_way"), 2, 8, 5, key="draw_n_way", help=t("draw.n_way_help"))
    k_shot = c2.number_input(t("draw.k_shot"), 1, 3, 1, key="draw_k_shot")
    n_query = c3.number_input(t("draw.n_query"), 1, 3, 1, key="draw_n_query")
    return int(n_way), int(k_shot), int(n_query)


def canvas(role: str, c: int, i: int):
    """One drawing's canvas; its pixels as paper (H, W) uint8, or None before any stroke."""
    result = st_canvas(stroke_width=STROKE_PX, stroke_color="#000000",
                       background_color="#FFFFFF", height=CANVAS_PX, width=CANVAS_PX,
                       drawing_mode="freedraw", return_image_data=True,
                       key=f"draw_canvas_{role}_{c}_{i}")
    pixels = result.image_data
    return None if pixels is None else drawing.canvas_to_paper(pixels)


def canvases(n_way: int, k_shot: int, n_query: int) -> drawing.DrawnSet:
    """A row per character: its K support canvases, then its query canvases."""
    support, queries = [], []
    for c in range(n_way):
        st.markdown(t("draw.character", n=c + 1, k_shot=k_shot, n_query=n_query))
        cols = st.columns(k_shot + n_query)
        support.append([None] * k_shot)
        queries.append([None] * n_query)
        for i in range(k_shot):
            with cols[i]:
                st.caption(t("draw.example", n=i + 1))
                support[c][i] = canvas("support", c, i)
        for j in range(n_query):
            with cols[k_shot + j]:
                st.caption(t("draw.query", n=j + 1))
                queries[c][j] = canvas("query", c, j)
    return drawing.DrawnSet([f"character{c + 1:02d}" for c in range(n_way)], support, queries)


def use_as_dataset(data: bytes, n_way: int, k_shot: int, n_query: int) -> None:
    """Button callback (before the sidebar is drawn): the zip through the ordinary upload
    path, then the sidebar set to it with the drawn episode's shape."""
    ss = st.session_state
    try:
        uploads.accept_dataset_upload(ZIP_NAME, data)
    except MetaRepError as exc:
        ss["draw_use_error"] = str(exc)
        return
    ss.pop("draw_use_error", None)
    persistence.keep_upload(ZIP_NAME, data)  # the drawn set outlives a reload, as an upload does
    ss.update(dataset="upload", split="all", n_way=n_way, k_shot=k_shot, n_query=n_query)
    ss["draw_used"] = True


def downloads(drawn: drawing.DrawnSet) -> None:
    data = drawing.drawn_zip(drawn)
    d1, d2 = st.columns(2)
    d1.download_button(t("draw.download"), data, ZIP_NAME, "application/zip", key="draw_zip",
                       help=t("draw.download_help"))
    d2.button(t("draw.use"), key="draw_use", help=t("draw.use_help"), on_click=use_as_dataset,
              args=(data, drawn.n_way, len(drawn.support[0]), len(drawn.queries[0])))
    if st.session_state.get("draw_use_error"):
        show("error", st.session_state["draw_use_error"])
    elif st.session_state.pop("draw_used", False):
        st.success(t("draw.used"))


def as_the_model_sees_it(episode) -> None:
    """The drawings at the dataset's size, ink as the learners get it."""
    st.subheader(t("draw.seen_title", size=episode.support_x.shape[-1]))
    labels = {"support": t("fig.support"), "query": t("fig.query")}
    st.plotly_chart(episode_grid(ui.image_array(episode.support_x), episode.support_y.numpy(),
                                 episode.class_names, labels=labels), key="draw_support")


def predictions(ctx, episode) -> None:
    """Each chosen learner adapted to the drawn episode; its predictions on the queries."""
    options = services.algorithms_for("classification")
    default = [ctx.settings.algorithm] + (["maml"] if ctx.settings.algorithm != "maml" else [])
    chosen = st.multiselect(t("draw.algorithms"), options, default=default, key="draw_algorithms",
                            format_func=services.label_func(None))
    cols = st.columns(max(1, min(3, len(chosen))))
    for j, name in enumerate(chosen):
        with cols[j % len(cols)]:
            try:
                model = services.model_for_episode(
                    dataclasses.replace(ctx.settings, algorithm=name), ctx.dataset,
                    ctx.dataset_id, episode)
                probs, accuracy = services.predictions(model, episode)
            except (MetaRepError, RuntimeError) as exc:
                show("error", t("draw.cannot_adapt", name=services.algorithm_label(name), error=exc))
                continue
            st.caption(services.model_caption(model))
            st.plotly_chart(query_predictions(
                ui.image_array(episode.query_x), episode.query_y.numpy(), probs,
                episode.class_names, title=f"{services.algorithm_label(name)} — {accuracy:.0f}%"),
                key=f"draw_pred_{name}")


ctx = ui.page("draw")
shape = ctx.dataset.input_shape if ctx.dataset is not None else ()
if ctx.task != "classification" or len(shape) != 3:
    st.info(t("draw.needs_images"))
    st.stop()
st.caption(t("draw.how", size=shape[-1]))
n_way, k_shot, n_query = shape_controls()
drawn = canvases(n_way, k_shot, n_query)
missing = drawn.missing()
if missing:
    st.info(t("draw.missing", n=len(missing)))
    st.stop()
try:
    episode = drawing.drawn_episode(drawn, image_size=shape[-1], channels=shape[0])
except MetaRepError as exc:
    show("error", exc)
    st.stop()
st.divider()
downloads(drawn)
as_the_model_sees_it(episode)
st.subheader(t("draw.predictions"))
predictions(ctx, episode)
