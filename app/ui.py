"""Small helpers the page scripts share: the page header, errors, the episode."""
from __future__ import annotations

import streamlit as st

from app import services, sidebar
from app.figures import how_to_read
from app.i18n import t
from app.messages import user_message
from app.safe_text import show
from app.state import SessionModel
from metarep_core.errors import MetaRepError


def page(name: str) -> sidebar.Context:
    """Title + intro of page ``name``; the run's context. Stops the page (with the
    reason shown) when the dataset could not be loaded."""
    st.title(t(f"page.{name}"))
    st.caption(t(f"page.{name}.intro"))
    ctx = sidebar.context()
    if ctx.error:
        show("error", user_message(ctx.error))
        st.stop()
    return ctx


def episode_or_stop(ctx: sidebar.Context, seed: int | None = None):
    """The sidebar's episode, or an error on the page (and the page stops)."""
    try:
        return services.sample_episode(ctx.settings, ctx.dataset, seed)
    except MetaRepError as exc:
        show("error", user_message(exc))
        st.stop()


def model_or_stop(ctx: sidebar.Context) -> SessionModel:
    """The session's model for the sidebar's choice, its origin said in a line (an
    info box when it is an untrained init); an error on the page otherwise."""
    try:
        model = services.session_model(ctx.settings, ctx.dataset, ctx.dataset_id)
    except MetaRepError as exc:
        show("error", user_message(exc))
        st.stop()
    # the caption may name an uploaded file
    show("info" if model.source == "fresh" else "caption", services.model_caption(model))
    return model


def image_array(x):
    """(n, C, H, W) tensor -> (n, H, W) or (n, H, W, 3) numpy for display."""
    arr = x.detach().cpu().numpy() if hasattr(x, "detach") else x
    if arr.ndim == 4:
        arr = arr[:, 0] if arr.shape[1] == 1 else arr.transpose(0, 2, 3, 1)
    return arr


def chart(fig, *, key: str, container=None, caption: bool = True, **kwargs):
    """Draw the Plotly figure ``fig`` (keyed ``key``) in ``container`` (default: where
    the page is writing) with its "how to read this" text in a caption under it
    (``caption=False``: not here, e.g. when twin charts share one caption below
    them). ``kwargs`` go to ``st.plotly_chart`` (e.g. ``on_select``); returns what it
    returns (the selection event when ``on_select`` is set)."""
    where = container if container is not None else st
    event = where.plotly_chart(fig, key=key, **kwargs)
    how = how_to_read(fig)
    if caption and how:
        where.caption(how)
    return event

