"""Small helpers the page scripts share: the page header, errors, the episode."""
from __future__ import annotations

import streamlit as st

from app import services, sidebar
from app.i18n import t
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
        show("error", ctx.error)
        st.stop()
    return ctx


def episode_or_stop(ctx: sidebar.Context, seed: int | None = None):
    """The sidebar's episode, or an error on the page (and the page stops)."""
    try:
        return services.sample_episode(ctx.settings, ctx.dataset, seed)
    except MetaRepError as exc:
        show("error", exc)
        st.stop()


def model_or_stop(ctx: sidebar.Context) -> SessionModel:
    """The session's model for the sidebar's choice, its origin said in a line (an
    info box when it is an untrained init); an error on the page otherwise."""
    try:
        model = services.session_model(ctx.settings, ctx.dataset, ctx.dataset_id)
    except MetaRepError as exc:
        show("error", exc)
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
