"""Watch adaptation: adapt the session's model to an episode with the trace
recorded, then scrub (or play) through it step by step. Whatever the family, the
page draws the same things from the trace; family-specific arrays come through
``TraceStep.extras`` and are drawn generically."""
import numpy as np
import streamlit as st
import torch

from app import services, state, ui
from app.figures.adaptation import embedding_motion, query_predictions, trace_extras
from app.figures.curves import trace_curves
from app.figures.episodes import regression_plot
from app.i18n import t
from app.safe_text import show
from metarep_core.errors import MetaRepError

ctx = ui.page("adapt")
entry = ui.model_or_stop(ctx)
s = ctx.settings
ss = st.session_state


def _next_seed() -> None:
    ss["seed"] = min(int(ss["seed"]) + 1, state.LIMITS["seed"][1])


def _toggle_play() -> None:
    ss["_adapt_playing"] = not ss.get("_adapt_playing", False)
    if ss["_adapt_playing"] and ss.get("adapt_step", 0) >= ss.get("_adapt_last", 0):
        ss["adapt_step"] = 0  # play from the start once at the end


b1, b2, _ = st.columns([2, 1, 5])
b1.button(t("adapt.sample"), key="adapt_sample", on_click=_next_seed)
episode = ui.episode_or_stop(ctx)
traces = state.cache("traces", max_items=6)


def recorded_trace(learner, version) -> list:
    key = (version, s.episode_key(), s.algorithm)
    if key not in traces:
        with st.spinner(t("adapt.adapting")):
            traces[key] = services.adapt(learner, episode, record=True).trace or []
    return traces[key]


try:
    trace = recorded_trace(entry["learner"], entry["version"])
except MetaRepError as exc:
    show("error", exc)
    st.stop()
if not trace:
    st.warning(t("adapt.no_trace"))
    st.stop()

last = len(trace) - 1
ss["_adapt_last"] = last
if ss.get("adapt_step", 0) > last:
    ss["adapt_step"] = last
playing = ss.get("_adapt_playing", False) and last > 0
b2.button(t("adapt.pause") if playing else t("adapt.play"), key="adapt_play",
          on_click=_toggle_play, disabled=last == 0)

motion = state.cache("motion", max_items=6)


def motion_points():
    """Aligned 2-D positions of the queries (and prototypes) at every step: (T, n, 2)."""
    key = (entry["version"], s.episode_key(), s.algorithm)
    if key not in motion:
        rows = []
        for step in trace:
            if step.query_emb is None:
                motion[key] = None
                return None
            parts = [step.query_emb] + ([step.prototypes] if step.prototypes is not None else [])
            rows.append(np.concatenate(parts, 0))
        if len({r.shape for r in rows}) != 1:
            motion[key] = None
            return None
        from metarep_core.projection import project_aligned
        motion[key] = np.stack(project_aligned(rows, method="pca", dim=2, seed=s.seed))
    return motion[key]


@st.fragment(run_every=0.8 if playing else None)
def step_view():
    if playing:
        nxt = ss.get("adapt_step", 0) + 1
        if nxt > last:
            ss["_adapt_playing"] = False
            st.rerun()
        ss["adapt_step"] = nxt
    if last > 0:
        i = st.slider(t("adapt.step"), 0, last, key="adapt_step", help=t("adapt.step_help"))
    else:
        i = 0
        st.info(t("adapt.single_step"))
    step = trace[i]
    st.markdown(f"**{t('adapt.step')} {i}/{last}** — {step.label}")
    m = st.columns(4)
    for col, name in zip(m, ("support_loss", "support_accuracy", "query_loss", "query_accuracy")):
        value, first = getattr(step, name), getattr(trace[0], name)
        if value is None:
            continue
        if name.endswith("accuracy"):  # fractions in the trace, percent on screen
            shown, delta = f"{100 * value:.0f}%", f"{100 * (value - (first or 0)):+.0f} pp"
        else:
            shown, delta = f"{value:.3f}", f"{value - (first or 0):+.3f}"
        col.metric(t("adapt." + name), shown, None if first is None or i == 0 else delta,
                   delta_color="inverse" if name.endswith("loss") else "normal")
    st.plotly_chart(trace_curves(trace, i, labels={"support": t("fig.support"),
                                                    "query": t("fig.query"), "loss": t("fig.loss"),
                                                    "accuracy": t("fig.accuracy"),
                                                    "step": t("fig.step")}), key="adapt_curves")
    if episode.is_regression:
        _regression_view(i)
    else:
        a, b = st.columns(2)
        with a:
            st.plotly_chart(query_predictions(ui.image_array(episode.query_x), episode.query_y.numpy(),
                                              step.query_probs, episode.class_names,
                                              title=t("adapt.predictions")), key="adapt_predictions")
        with b:
            points = motion_points()
            if points is not None:
                kinds = ["query"] * len(episode.query_y) + ["prototype"] * (
                    points.shape[1] - len(episode.query_y))
                y = np.concatenate([episode.query_y.numpy(),
                                    np.arange(points.shape[1] - len(episode.query_y))])
                st.plotly_chart(embedding_motion(points, y, upto=i, kinds=kinds,
                                                 labels={"title": t("adapt.motion")}),
                                key="adapt_motion")
    figs = trace_extras(step, n_query=len(episode.query_y), labels=_extras_labels(step.extras))
    if figs:
        st.subheader(t("adapt.extras"))
        cols = st.columns(min(2, len(figs)))
        for j, fig in enumerate(figs):
            cols[j % len(cols)].plotly_chart(fig, key=f"adapt_extra_{j}")


def _extras_labels(extras: dict) -> dict:
    """Translated titles for the documented extras keys (others keep their key) and axes."""
    out = {k: t("fig." + k) for k in ("query_index", "support_index", "slot", "time",
                                      "iteration", "value", "index")}
    out.update({k: t("extras." + k) for k in extras if t("extras." + k) != "extras." + k})
    return out


def _regression_view(i: int) -> None:
    grid = torch.linspace(-5, 5, 200).view(-1, 1)
    true_y = ctx.dataset.evaluate(episode.info, grid).view(-1).numpy()
    before = services.before_learner(s, ctx.dataset, ctx.dataset_id)
    before_trace = recorded_trace(before, ("before", s.seed))
    cols = st.columns(2)
    for j, col, tr, title in ((0, cols[0], trace, t("adapt.meta_learned")),
                              (1, cols[1], before_trace, t("adapt.fresh_start"))):
        step = tr[min(i, len(tr) - 1)]
        curves = {}
        if "curve_x" in step.extras and "curve_y" in step.extras:
            curves[t("adapt.model_curve", step=step.step)] = (step.extras["curve_x"],
                                                              step.extras["curve_y"])
        col.plotly_chart(regression_plot(
            grid.view(-1).numpy(), true_y, episode.support_x.view(-1).numpy(),
            episode.support_y.view(-1).numpy(), curves, title=title,
            labels={"support": t("fig.support"), "true": t("fig.true_curve")}),
            key=f"adapt_regression_{j}")


step_view()
