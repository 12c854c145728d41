"""Compare: several learners on identical episodes (the same seeds): accuracy (or
MSE) with its 95% interval, per-episode scores side by side, the predictions of
each on the sidebar's episode; numbers exported as CSV and JSON."""
import dataclasses

import streamlit as st

from app import exports, services, ui
from app.figures.adaptation import query_predictions
from app.figures.compare import comparison_figure
from app.i18n import t
from metarep_core.errors import MetaRepError


def choices(ctx) -> tuple[list[str], int]:
    """The algorithms to compare (the sidebar's first) and the number of episodes."""
    s = ctx.settings
    options = services.algorithms_for(ctx.task)
    default = [s.algorithm] + [a for a in options if a != s.algorithm][:1]
    chosen = st.multiselect(t("compare.algorithms"), options, default=default,
                            key="compare_algorithms", format_func=services.label_func(None))
    n_episodes = st.select_slider(t("compare.episodes"), [10, 20, 50, 100, 200, 600], value=20,
                                  key="compare_episodes", help=t("compare.episodes_help"))
    return chosen, n_episodes


def models_of(ctx, names: list[str]) -> dict:
    """``{name: SessionModel}``: the session's model of each algorithm for the sidebar's
    dataset and N."""
    return {name: services.session_model(dataclasses.replace(ctx.settings, algorithm=name),
                                         ctx.dataset, ctx.dataset_id) for name in names}


def run_button(ctx, chosen: list[str], n_episodes: int, run_key: tuple) -> None:
    """The run button; a run's results are kept under "compare_result" with ``run_key``."""
    if not st.button(t("compare.run"), key="compare_run", type="primary"):
        return
    bar = st.progress(0.0, text=t("compare.running"))

    def progress(name, fraction, done, total):
        bar.progress(fraction, text=t("compare.running_one", name=name, done=done, total=total))
    try:
        results = services.compare(models_of(ctx, chosen), ctx.dataset, ctx.settings, n_episodes,
                                   on_progress=progress)
    except MetaRepError as exc:
        st.error(str(exc))
        st.stop()
    bar.empty()
    st.session_state["compare_result"] = (run_key, results)


def summary(results: dict, metric: str, n_episodes: int, chance) -> None:
    """The table and bar chart of each algorithm's mean and 95% interval."""
    rows = [{t("compare.col.algorithm"): services.algorithm_label(n),
             t("compare.col.source"): t("compare.source." + r["source"]),
             t("compare.col." + metric): round(r["summary"][metric], 3),
             t("compare.col.ci95"): round(r["summary"]["ci95"], 3),
             t("compare.col.episodes"): len(r["scores"])}
            for n, r in results.items()]
    st.dataframe(rows, hide_index=True, key="compare_summary")
    st.plotly_chart(comparison_figure({n: r["summary"] for n, r in results.items()}, metric=metric,
                                      title=t("compare.figure_title", episodes=n_episodes),
                                      chance=chance,
                                      labels={"accuracy": t("fig.accuracy"), "chance": t("fig.chance"),
                                              "algorithm": t("compare.col.algorithm")}),
                    key="compare_bars")


def exports_row(ctx, results: dict, metric: str, scale: float) -> None:
    """The per-episode table and the CSV / JSON downloads."""
    with st.expander(t("compare.per_episode")):
        st.dataframe(exports.per_episode_table(results, scale), key="compare_table")
    e1, e2 = st.columns(2)
    e1.download_button(t("compare.export_csv"), exports.comparison_csv(results, scale),
                       "comparison.csv", "text/csv", key="compare_csv")
    e2.download_button(t("compare.export_json"), exports.comparison_json(
        results, scale, metric=metric, settings=dataclasses.asdict(ctx.settings),
        dataset=ctx.dataset_id), "comparison.json", "application/json", key="compare_json")


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
run_key = (tuple(chosen), n_episodes, ctx.settings.episode_key(), ctx.dataset_id)
run_button(ctx, chosen, n_episodes, run_key)
result = st.session_state.get("compare_result")
if result is None or result[0] != run_key:
    st.info(t("compare.press_run"))
    st.stop()
results = result[1]
summary(results, metric, n_episodes, chance=None if regression else 100.0 / ctx.settings.n_way)
exports_row(ctx, results, metric, scale)
if not regression:
    same_episode(ctx, list(results))
