"""Watch adaptation: adapt the session's model to an episode with the trace
recorded, then scrub (or play) through it step by step. Whatever the family, the
page draws the same things from the trace; family-specific arrays come through
``TraceStep.extras`` and are drawn generically. The data (trace, motion, true
curve) comes from :mod:`app.services`; this page only draws it.

Widget state: ``adapt_step`` (the slider) is the step shown; ``_adapt_playing``
says whether it advances on its own."""
import streamlit as st

from app import services, state, ui
from app.figures.adaptation import embedding_motion, query_predictions, trace_extras
from app.figures.curves import trace_curves
from app.figures.episodes import regression_plot
from app.i18n import t
from app.safe_text import show
from metarep_core.errors import MetaRepError

PLAYING = "_adapt_playing"
METRICS = ("support_loss", "support_accuracy", "query_loss", "query_accuracy")


def toggle_play(last: int) -> None:
    ss = st.session_state
    ss[PLAYING] = not ss.get(PLAYING, False)
    if ss[PLAYING] and ss.get("adapt_step", 0) >= last:
        ss["adapt_step"] = 0  # play from the start once at the end


def play_button(col, last: int) -> bool:
    """The play/pause button for a trace whose last step is ``last``; whether it plays."""
    ss = st.session_state
    if ss.get("adapt_step", 0) > last:  # a shorter trace than the last one shown
        ss["adapt_step"] = last
    playing = ss.get(PLAYING, False) and last > 0
    col.button(t("adapt.pause") if playing else t("adapt.play"), key="adapt_play",
               on_click=toggle_play, args=(last,), disabled=last == 0)
    return playing


def regression_inputs(ctx, episode) -> dict:
    """For a regression task, what :func:`step_view` draws beside the model: a fresh
    init's trace and the task's true curve (nothing for classification)."""
    if not episode.is_regression:
        return {}
    before = services.before_model(ctx.settings, ctx.dataset, ctx.dataset_id)
    return {"before_trace": trace_or_stop(before, episode),
            "true_curve": services.true_curve(ctx.dataset, episode)}


def trace_or_stop(model, episode) -> list:
    try:
        with st.spinner(t("adapt.adapting")):
            trace = services.trace(model, episode)
    except MetaRepError as exc:
        show("error", exc)
        st.stop()
    if not trace:
        st.warning(t("adapt.no_trace"))
        st.stop()
    return trace


def metrics_row(trace: list, i: int) -> None:
    """Support/query loss and accuracy at step ``i``, with the change since step 0."""
    for col, name in zip(st.columns(4), METRICS):
        value, first = getattr(trace[i], name), getattr(trace[0], name)
        if value is None:
            continue
        if name.endswith("accuracy"):  # fractions in the trace, percent on screen
            shown, delta = f"{100 * value:.0f}%", f"{100 * (value - (first or 0)):+.0f} pp"
        else:
            shown, delta = f"{value:.3f}", f"{value - (first or 0):+.3f}"
        col.metric(t("adapt." + name), shown, None if first is None or i == 0 else delta,
                   delta_color="inverse" if name.endswith("loss") else "normal")


def classification_view(model, episode, step, i: int, seed: int) -> None:
    """The queries' predicted probabilities, beside the queries' (and prototypes')
    motion in embedding space up to step ``i``."""
    a, b = st.columns(2)
    a.plotly_chart(query_predictions(ui.image_array(episode.query_x), episode.query_y.numpy(),
                                     step.query_probs, episode.class_names,
                                     title=t("adapt.predictions")), key="adapt_predictions")
    motion = services.motion(model, episode, seed)
    if motion is not None:
        b.plotly_chart(embedding_motion(motion.points, motion.y, upto=i, kinds=motion.kinds,
                                        class_names=episode.class_names,
                                        labels={"title": t("adapt.motion")}), key="adapt_motion")


def regression_view(traces: dict, episode, true_curve, i: int) -> None:
    """The model's curve at step ``i`` over the true curve and the support points, for
    each of ``traces`` ({title: trace}) side by side."""
    grid_x, true_y = true_curve
    for j, (col, (title, trace)) in enumerate(zip(st.columns(len(traces)), traces.items())):
        step = trace[min(i, len(trace) - 1)]
        curves = {}
        if "curve_x" in step.extras and "curve_y" in step.extras:
            curves[t("adapt.model_curve", step=step.step)] = (step.extras["curve_x"],
                                                              step.extras["curve_y"])
        col.plotly_chart(regression_plot(
            grid_x, true_y, episode.support_x.view(-1).numpy(), episode.support_y.view(-1).numpy(),
            curves, title=title, labels={"support": t("fig.support"), "true": t("fig.true_curve")}),
            key=f"adapt_regression_{j}")


def extras_view(step, n_query: int) -> None:
    """The step's family-specific arrays (``TraceStep.extras``), drawn by shape."""
    labels = {k: t("fig." + k) for k in ("query_index", "support_index", "slot", "time",
                                         "iteration", "value", "index")}
    labels.update({k: t("extras." + k) for k in step.extras if t("extras." + k) != "extras." + k})
    figs = trace_extras(step, n_query=n_query, labels=labels)
    if figs:
        st.subheader(t("adapt.extras"))
        cols = st.columns(min(2, len(figs)))
        for j, fig in enumerate(figs):
            cols[j % len(cols)].plotly_chart(fig, key=f"adapt_extra_{j}")


def step_view(model, episode, trace: list, playing: bool, seed: int, before_trace=None,
              true_curve=None) -> None:
    """One step of the trace (a fragment: while playing it advances itself)."""
    ss, last = st.session_state, len(trace) - 1
    if playing:
        following = ss.get("adapt_step", 0) + 1
        if following > last:
            ss[PLAYING] = False
            st.rerun()  # a full run: the button says "play" again, the polling stops
        ss["adapt_step"] = following
    if last > 0:
        i = st.slider(t("adapt.step"), 0, last, key="adapt_step", help=t("adapt.step_help"))
    else:
        i = 0
        st.info(t("adapt.single_step"))
    st.markdown(f"**{t('adapt.step')} {i}/{last}** — {trace[i].label}")
    metrics_row(trace, i)
    st.plotly_chart(trace_curves(trace, i, labels={k: t("fig." + k) for k in
                                                   ("support", "query", "loss", "accuracy", "step")}),
                    key="adapt_curves")
    if episode.is_regression:
        regression_view({t("adapt.meta_learned"): trace, t("adapt.fresh_start"): before_trace},
                        episode, true_curve, i)
    else:
        classification_view(model, episode, trace[i], i, seed)
    extras_view(trace[i], n_query=len(episode.query_y))


ctx = ui.page("adapt")
model = ui.model_or_stop(ctx)
sample_col, play_col, _ = st.columns([2, 1, 5])
sample_col.button(t("adapt.sample"), key="adapt_sample", on_click=state.next_seed)
episode = ui.episode_or_stop(ctx)
trace = trace_or_stop(model, episode)
playing = play_button(play_col, last=len(trace) - 1)
st.fragment(step_view, run_every=0.8 if playing else None)(
    model, episode, trace, playing, ctx.settings.seed, **regression_inputs(ctx, episode))
