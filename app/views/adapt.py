"""Watch adaptation: adapt the session's model to an episode with the trace
recorded, then scrub (or play) through it step by step. Whatever the family, the
page draws the same things from the trace; family-specific arrays come through
``TraceStep.extras`` and are drawn generically. The data (trace, motion, true
curve) comes from :mod:`app.services`; this page only draws it.

Widget state: ``adapt_step`` (the slider) is the step shown, as the trace numbers
it (``TraceStep.step``: the curves' x axis counts the same way); ``_adapt_playing``
says whether it advances on its own."""
import numpy as np
import streamlit as st

from app import persistence, services, state, ui
from app.figures import how_to_read
from app.figures.adaptation import embedding_motion, query_predictions, trace_extras
from app.figures.curves import trace_curves
from app.figures.episodes import episode_grid, regression_plot
from app.figures.step_labels import step_label
from app.i18n import current_lang, t
from app.safe_text import plain, show
from app.messages import user_message
from metarep_core.errors import MetaRepError

PLAYING = "_adapt_playing"
METRICS = ("support_loss", "support_accuracy", "query_loss", "query_accuracy")


def shown_step(value, steps: list[int]) -> int:
    """The step of ``steps`` (the trace's own step numbers, ascending) to show for the
    slider's ``value``: itself when it is one, else the nearest (the first when
    unset). A trace of another learner may start at 1 (shots) where the last started
    at 0, or end earlier."""
    if value is None:
        return steps[0]
    return min(steps, key=lambda s: (abs(s - value), s))


def toggle_play(first: int, last: int) -> None:
    ss = st.session_state
    ss[PLAYING] = not ss.get(PLAYING, False)
    if ss[PLAYING] and ss.get("adapt_step", first) >= last:
        ss["adapt_step"] = first  # play from the start once at the end


def play_button(col, steps: list[int]) -> bool:
    """The play/pause button for a trace with step numbers ``steps``; whether it plays.
    Fits the slider's value to these steps first (before the slider is drawn)."""
    ss = st.session_state
    first, last = steps[0], steps[-1]
    if "adapt_step" in ss and ss["adapt_step"] not in steps:
        ss["adapt_step"] = shown_step(ss["adapt_step"], steps)
    playing = ss.get(PLAYING, False) and last > first
    col.button(t("adapt.pause") if playing else t("adapt.play"), key="adapt_play",
               on_click=toggle_play, args=(first, last), disabled=last == first)
    return playing


def support_view(episode) -> None:
    """The support set the learner adapts to, as a compact grid (classification only:
    a regression task's support points are in its curve plot)."""
    if episode.is_regression:
        return
    n_rows = len(episode.class_names)
    col, _ = st.columns([2, 3])
    ui.chart(episode_grid(ui.image_array(episode.support_x), episode.support_y.numpy(),
                          list(episode.class_names), kind="support_grid", width_hint=420,
                          height=min(460, 110 + 34 * n_rows)),
             key="adapt_support", container=col)


def regression_inputs(ctx, episode) -> dict:
    """For a regression task, what :func:`step_view` draws beside the model: a fresh
    init's trace and the task's true curve (nothing for classification)."""
    if not episode.is_regression:
        return {}
    before = services.before_model(ctx.settings, ctx.dataset, ctx.dataset_id)
    return {"before_trace": trace_or_stop(before, episode),
            "true_curve": services.true_curve(ctx.dataset, episode)}


def batch_norm_choice(model) -> str | None:
    """The batch-norm switch of a gradient-based learner (MAML, Reptile, iMAML, ANIL:
    the query batch's statistics, as their reference code, or the support set's), or
    for any other learner a line saying it uses running statistics. The mode chosen
    (None: the learner has no switch)."""
    modes = services.test_bn_modes(model)
    if not modes:
        if model.learner.task != "regression":
            st.caption(t("adapt.bn_running"))
        return None
    lang = current_lang()  # bound now: a label must not change language outside the run
    return st.radio(t("adapt.bn"), modes, key="adapt_test_bn", horizontal=True,
                    index=modes.index(model.learner.hp["test_bn"]),
                    format_func=lambda m: t(f"adapt.bn.{m}", lang), help=t("adapt.bn_help"))


def trace_or_stop(model, episode, test_bn: str | None = None) -> list:
    try:
        with st.spinner(t("adapt.adapting")):
            trace = services.trace(model, episode, test_bn)
    except MetaRepError as exc:
        show("error", user_message(exc))
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
            shown = f"{100 * value:.0f}%"
            delta = t("adapt.points_change", change=f"{100 * (value - (first or 0)):+.0f}")
        else:
            shown, delta = f"{value:.3f}", f"{value - (first or 0):+.3f}"
        col.metric(t("adapt." + name), shown, None if first is None or i == 0 else delta,
                   delta_color="inverse" if name.endswith("loss") else "normal")


def classification_view(model, episode, step, i: int, seed: int, first_step: int,
                        test_bn: str | None = None) -> None:
    """The queries' predicted probabilities, beside the queries' (and prototypes')
    motion in embedding space up to step ``i`` (an index into the trace, whose first
    step is numbered ``first_step``), the queries misclassified at this step ringed."""
    a, b = st.columns(2)
    ui.chart(query_predictions(ui.image_array(episode.query_x), episode.query_y.numpy(),
                               step.query_probs, episode.class_names,
                               title=t("adapt.predictions")), key="adapt_predictions", container=a)
    motion = services.motion(model, episode, seed, test_bn)
    if motion is not None:
        ui.chart(embedding_motion(motion.points, motion.y, upto=i, kinds=motion.kinds,
                                  class_names=episode.class_names,
                                  wrong=motion_wrong(step, episode, len(motion.kinds)),
                                  labels={"path": t("adapt.path_since", step=first_step)}),
                 key="adapt_motion", container=b)


def motion_wrong(step, episode, n_points: int):
    """(n_points,) bool: the queries (the first points of the motion) predicted wrong at
    ``step``; prototypes never. None when the step has no query probabilities."""
    if step.query_probs is None:
        return None
    probs = np.asarray(step.query_probs, float)
    wrong = np.zeros(n_points, bool)
    n_q = min(len(probs), n_points)
    wrong[:n_q] = probs[:n_q].argmax(1) != episode.query_y.numpy()[:n_q]
    return wrong


def regression_view(traces: dict, episode, true_curve, i: int) -> None:
    """The model's curve at step ``i`` over the true curve and the support points, for
    each of ``traces`` ({title: trace}) side by side; one "how to read" under both."""
    grid_x, true_y = true_curve
    fig = None
    for j, (col, (title, trace)) in enumerate(zip(st.columns(len(traces)), traces.items())):
        step = trace[min(i, len(trace) - 1)]
        curves = {}
        if "curve_x" in step.extras and "curve_y" in step.extras:
            curves[t("adapt.model_curve", step=step.step)] = (step.extras["curve_x"],
                                                              step.extras["curve_y"])
        fig = regression_plot(
            grid_x, true_y, episode.support_x.view(-1).numpy(), episode.support_y.view(-1).numpy(),
            curves, title=title, labels={"support": t("fig.support"), "true": t("fig.true_curve")})
        col.plotly_chart(fig, key=f"adapt_regression_{j}")
    if fig is not None and how_to_read(fig):
        st.caption(how_to_read(fig))


def extras_view(step, n_query: int) -> None:
    """The step's family-specific arrays (``TraceStep.extras``), drawn by shape, each
    with its "how to read this" (titles and axes in the session's language)."""
    figs = trace_extras(step, n_query=n_query)
    if figs:
        st.subheader(t("adapt.extras"))
        cols = st.columns(min(2, len(figs)))
        for j, fig in enumerate(figs):
            ui.chart(fig, key=f"adapt_extra_{j}", container=cols[j % len(cols)])


def step_slider(steps: list[int]) -> int:
    """The slider over the trace's own step numbers (what the curves' x axis counts:
    0 before adaptation for most learners, the number of shots for metric ones); the
    step chosen."""
    first, last = steps[0], steps[-1]
    if steps == list(range(first, last + 1)):
        return st.slider(t("adapt.step"), first, last, key="adapt_step", help=t("adapt.step_help"))
    return st.select_slider(t("adapt.step"), options=steps, key="adapt_step",
                            help=t("adapt.step_help"))


def step_view(model, episode, trace: list, playing: bool, seed: int, before_trace=None,
              true_curve=None, test_bn: str | None = None) -> None:
    """One step of the trace (a fragment: while playing it advances itself)."""
    ss = st.session_state
    steps = [int(s.step) for s in trace]
    first, last = steps[0], steps[-1]
    if playing:
        following = steps.index(shown_step(ss.get("adapt_step"), steps)) + 1
        if following == len(steps):
            ss[PLAYING] = False
            st.rerun()  # a full run: the button says "play" again, the polling stops
        ss["adapt_step"] = steps[following]
    if len(trace) > 1:
        value = step_slider(steps)
    else:
        value = first
        st.info(t("adapt.single_step"))
    i = steps.index(shown_step(value, steps))
    if not playing:  # kept where the student stopped, not at every frame of a play
        persistence.keep_page("adapt", adapt_step=steps[i])
    st.markdown(f"**{t('adapt.step')} {steps[i]}/{last}** — "
                + plain(step_label(trace[i].label)))
    metrics_row(trace, i)
    ui.chart(trace_curves(trace, i), key="adapt_curves")
    if episode.is_regression:
        regression_view({t("adapt.meta_learned"): trace, t("adapt.fresh_start"): before_trace},
                        episode, true_curve, i)
    else:
        classification_view(model, episode, trace[i], i, seed, first, test_bn)
    extras_view(trace[i], n_query=len(episode.query_y))


ctx = ui.page("adapt")
model = ui.model_or_stop(ctx)
sample_col, play_col, _ = st.columns([2, 1, 5])
sample_col.button(t("adapt.sample"), key="adapt_sample", on_click=state.next_seed)
episode = ui.episode_or_stop(ctx)
persistence.restore_page("adapt", adapt_step=lambda v: type(v) is int,  # fitted to the trace below
                         adapt_test_bn=lambda v: v in services.test_bn_modes(model))
test_bn = batch_norm_choice(model)
if test_bn is not None:
    persistence.keep_page("adapt", adapt_test_bn=test_bn)
trace = trace_or_stop(model, episode, test_bn)
playing = play_button(play_col, [int(s.step) for s in trace])
support_view(episode)
st.fragment(step_view, run_every=0.8 if playing else None)(
    model, episode, trace, playing, ctx.settings.seed, test_bn=test_bn,
    **regression_inputs(ctx, episode))
