"""Compare: several learners on identical episodes (the same seeds): accuracy (or
MSE) with its 95% interval, the paired difference between them, per-episode scores
side by side, the predictions of each on the sidebar's episode; numbers exported as
CSV and JSON. The student's own answers (views/human.py) appear as a "You" row."""
import dataclasses

import streamlit as st

from app import comparison, exports, human, persistence, services, ui
from app.figures.adaptation import query_predictions
from app.figures.compare import comparison_figure
from app.figures import how_to_read
from app.figures.paired import paired_difference_figure
from app.i18n import t
from app.messages import user_message
from app.safe_text import plain, show
from metarep_core.cluster import ray_address
from metarep_core.errors import MetaRepError
from metarep_core.learners import get_learner_class

EPISODES = [10, 20, 50, 100, 200, 600]


def choices(ctx) -> tuple[list[str], int]:
    """The algorithms to compare (the sidebar's first) and the number of episodes."""
    s = ctx.settings
    options = services.algorithms_for(ctx.task)
    default = [s.algorithm] + [a for a in options if a != s.algorithm][:1]
    persistence.restore_page("compare", compare_episodes=lambda v: v in EPISODES,
                             compare_algorithms=lambda v: isinstance(v, list) and 0 < len(v)
                             and set(v) <= set(options))
    chosen = st.multiselect(t("compare.algorithms"), options, default=default,
                            key="compare_algorithms", format_func=services.label_func(None))
    n_episodes = st.select_slider(t("compare.episodes"), EPISODES, value=20,
                                  key="compare_episodes", help=t("compare.episodes_help"))
    persistence.keep_page("compare", compare_algorithms=list(chosen), compare_episodes=n_episodes)
    return chosen, n_episodes


def models_of(ctx, names: list[str]) -> dict:
    """``{name: SessionModel}``: the session's model of each algorithm for the sidebar's
    dataset and N."""
    return {name: services.session_model(dataclasses.replace(ctx.settings, algorithm=name),
                                         ctx.dataset, ctx.dataset_id) for name in names}


def run_button(ctx, models: dict, n_episodes: int, run_key: tuple) -> None:
    """The run button; a run's results are kept under "compare_result" as ``(run_key,
    results, where)``, and in the session's run (the store) for a reload or another server."""
    if not st.button(t("compare.run"), key="compare_run", type="primary"):
        return
    bar = st.progress(0.0, text=t("compare.running_cluster" if ray_address() else "compare.running"))

    so_far = {"fraction": 0.0}

    def progress(name, fraction, done, total):
        so_far["fraction"] = fraction
        bar.progress(fraction, text=t("compare.running_one", name=name, done=done, total=total))

    def waiting(now: bool):  # every evaluation slot of the server is held by other Compares
        bar.progress(so_far["fraction"], text=t("compare.waiting" if now else "compare.running"))
    try:
        results, where, why_not = comparison.run_comparison(models, ctx.dataset, ctx.settings, n_episodes,
                                                            on_progress=progress, on_wait=waiting)
    except MetaRepError as exc:
        show("error", exc)
        st.stop()
    bar.empty()
    if why_not:  # a named cluster that could not be used: said, and the run was made here
        st.warning(t("compare.cluster_fallback", error=plain(user_message(why_not))))
    st.session_state["compare_result"] = (run_key, results, where)
    persistence.keep_comparison(comparison.to_record(results, ctx.settings, ctx.dataset_id, ctx.task, where))


def kept_result(run_key: tuple):
    """This session's last comparison, else the one its run keeps in the store (a
    reload, the link in another browser or through another server): ``(key, results,
    where)`` or None. The caller shows it only when ``key`` is the page's ``run_key``."""
    result = st.session_state.get("compare_result")
    if result is None:
        record = persistence.stored_comparison()
        if record is not None:
            key, results = comparison.from_record(record)
            result = st.session_state["compare_result"] = (key, results, record["where"])
    return result


def row_label(name: str) -> str:
    """An algorithm's label, or "You" for the student's row."""
    return t("compare.you") if name == comparison.YOU else services.algorithm_label(name)


def short_label(name: str) -> str:
    """The algorithm's title alone ("Prototypical Networks"), or "You": figure labels."""
    if name == comparison.YOU:
        return t("compare.you")
    cls = get_learner_class(name)
    return cls.title or cls.name


def summary(results: dict, metric: str, n_episodes: int, chance) -> None:
    """The table and bar chart of each algorithm's mean and 95% interval."""
    rows = [{t("compare.col.algorithm"): row_label(n),
             t("compare.col.source"): t("compare.source." + r["source"]),
             t("compare.col." + metric): round(r["summary"][metric], 3),
             t("compare.col.ci95"): round(r["summary"]["ci95"], 3),
             t("compare.col.episodes"): len(r["scores"]),
             t("compare.col.seconds_per_query"): round(r.get("seconds_per_query", float("nan")), 4)}
            for n, r in results.items()]
    st.dataframe(rows, hide_index=True, key="compare_summary")
    if comparison.YOU in results:
        st.caption(t("compare.you_note", episodes=len(results[comparison.YOU]["scores"])))
    bars = {(row_label(n) if n == comparison.YOU else n): r["summary"] for n, r in results.items()}
    st.plotly_chart(comparison_figure(bars, metric=metric,
                                      title=t("compare.figure_title", episodes=n_episodes),
                                      chance=chance,
                                      labels={"accuracy": t("fig.accuracy"), "chance": t("fig.chance"),
                                              "algorithm": t("compare.col.algorithm")}),
                    key="compare_bars")


def paired(results: dict, regression: bool) -> list[dict]:
    """The paired differences against a reference (the best learner, or one chosen): a
    table and a figure; returns the rows (for the exports)."""
    st.subheader(t("compare.paired_title"))
    st.caption(t("compare.paired_help"))
    best = comparison.best_learner(results, regression)
    options = ["best"] + list(results)
    choice = st.selectbox(t("compare.pair_ref"), options, key="compare_pair_ref",
                          format_func=lambda n: (t("compare.pair_best", name=row_label(best))
                                                 if n == "best" else row_label(n)))
    reference = best if choice == "best" or choice not in results else choice
    rows = comparison.paired_differences(results, reference, regression)
    if not rows:
        return rows
    unit = t("compare.paired_unit_mse") if regression else t("compare.paired_unit_points")
    st.dataframe([{t("compare.col.pair"): f"{short_label(r['learner'])} − {short_label(r['reference'])}",
                   t("compare.col.mean_diff", unit=unit): round(r["mean"], 3),
                   t("compare.col.paired_ci"): ("—" if r["ci95"] != r["ci95"]
                                                else f"[{r['low']:.2f}, {r['high']:.2f}]"),
                   t("compare.col.wtl"): f"{r['wins']} / {r['ties']} / {r['losses']}",
                   t("compare.col.episodes"): r["episodes"]} for r in rows],
                 hide_index=True, key="compare_paired_table")
    names = {n: short_label(n) for n in results}
    fig = paired_difference_figure(rows, names, higher_is_better=not regression,
                                   title=t("compare.paired_figure_title", reference=names[reference]))
    st.plotly_chart(fig, key="compare_paired")
    st.caption(how_to_read(fig))
    return rows


def exports_row(ctx, results: dict, metric: str, scale: float, pairs: list[dict]) -> None:
    """The per-episode table and the CSV / JSON downloads."""
    with st.expander(t("compare.per_episode")):
        st.dataframe(exports.per_episode_table(results, scale), key="compare_table")
    e1, e2, e3 = st.columns(3)
    e1.download_button(t("compare.export_csv"), exports.comparison_csv(results, scale),
                       "comparison.csv", "text/csv", key="compare_csv")
    e2.download_button(t("compare.export_json"), exports.comparison_json(
        results, scale, metric=metric, settings=dataclasses.asdict(ctx.settings),
        dataset=ctx.dataset_id, paired=pairs), "comparison.json", "application/json",
        key="compare_json")
    e3.download_button(t("compare.export_paired_csv"), exports.paired_csv(pairs),
                       "paired_differences.csv", "text/csv", key="compare_paired_csv")


def same_episode(ctx, names: list[str]) -> None:
    """Each algorithm's predictions on the sidebar's episode, side by side."""
    st.subheader(t("compare.same_episode"))
    episode = ui.episode_or_stop(ctx)
    cols = st.columns(min(3, len(names)))
    for j, (name, model) in enumerate(models_of(ctx, names).items()):
        probs, accuracy = services.predictions(model, episode)
        cols[j % len(cols)].plotly_chart(
            query_predictions(ui.image_array(episode.query_x), episode.query_y.numpy(), probs,
                              episode.class_names,
                              title=f"{services.algorithm_label(name)} — {accuracy:.0f}%",
                              width_hint=380),
            key=f"compare_pred_{name}")


ctx = ui.page("compare")
chosen, n_episodes = choices(ctx)
regression = ctx.task == "regression"
metric, scale = ("mse", 1.0) if regression else ("accuracy", 100.0)
if len(chosen) < 1:
    st.info(t("compare.pick"))
    st.stop()
models = models_of(ctx, chosen)
run_key = comparison.current_key(models, n_episodes, ctx.settings, ctx.dataset_id)
run_button(ctx, models, n_episodes, run_key)
result = kept_result(run_key)
if result is None or result[0] != run_key:  # never a result of other choices as if of these
    st.info(t("compare.press_run") if result is None else t("compare.other_choices"))
    st.stop()
results = result[1]
st.caption(t("compare.where." + result[2]))
shown = comparison.with_human(results, st.session_state.get(human.STATE_KEY), ctx.settings,
                            ctx.dataset_id)
summary(shown, metric, n_episodes, chance=None if regression else 100.0 / ctx.settings.n_way)
pairs = paired(shown, regression) if len(shown) > 1 else []
exports_row(ctx, shown, metric, scale, pairs)
if not regression:
    same_episode(ctx, list(results))
