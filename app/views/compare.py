"""Compare: several learners on identical episodes (the same seeds): accuracy (or
MSE) with its 95% interval, per-episode scores side by side, the predictions of
each on the sidebar's episode; numbers exported as CSV and JSON."""
import dataclasses
import streamlit as st

from app import exports, services, ui
from app.figures.adaptation import query_predictions
from app.figures.compare import comparison_figure
from app.i18n import t
from app.safe_text import show
from metarep_core.errors import MetaRepError
from metarep_core.evaluation import episode_scores, summarize

ctx = ui.page("compare")
s = ctx.settings
ss = st.session_state
options = services.algorithms_for(ctx.task)
default = [s.algorithm] + [a for a in options if a != s.algorithm][:1]
chosen = st.multiselect(t("compare.algorithms"), options, default=default, key="compare_algorithms",
                        format_func=services.label_func(None))
n_episodes = st.select_slider(t("compare.episodes"), [10, 20, 50, 100, 200, 600], value=20,
                              key="compare_episodes", help=t("compare.episodes_help"))
regression = ctx.task == "regression"
metric = "mse" if regression else "accuracy"
run_key = (tuple(chosen), n_episodes, s.episode_key(), ctx.dataset_id)


def run_comparison() -> dict:
    """Per algorithm: the per-episode scores, their summary and the model's source."""
    out, bar = {}, st.progress(0.0, text=t("compare.running"))
    for j, name in enumerate(chosen):
        entry = services.session_model(dataclasses.replace(s, algorithm=name), ctx.dataset,
                                       ctx.dataset_id)
        learner = entry["learner"].eval()

        def tick(done, total, j=j):
            bar.progress((j + done / total) / len(chosen),
                         text=t("compare.running_one", name=name, done=done, total=total))
        scores = episode_scores(learner, ctx.dataset, s.split, n_way=s.n_way, k_shot=s.k_shot,
                                n_query=s.n_query, episodes=n_episodes, seed=s.seed, callback=tick)
        out[name] = {"scores": scores, "summary": summarize(scores, regression=regression),
                     "source": entry["source"]}
    bar.empty()
    return out


if len(chosen) < 1:
    st.info(t("compare.pick"))
    st.stop()
if st.button(t("compare.run"), key="compare_run", type="primary"):
    try:
        ss["compare_result"] = (run_key, run_comparison())
    except MetaRepError as exc:
        show("error", exc)
        st.stop()

result = ss.get("compare_result")
if result is None or result[0] != run_key:
    st.info(t("compare.press_run"))
    st.stop()
results = result[1]
scale = 1.0 if regression else 100.0
rows = [{t("compare.col.algorithm"): services.algorithm_label(n),
         t("compare.col.source"): t("compare.source." + r["source"]),
         t("compare.col." + metric): round(r["summary"][metric], 3),
         t("compare.col.ci95"): round(r["summary"]["ci95"], 3),
         t("compare.col.episodes"): len(r["scores"])}
        for n, r in results.items()]
st.dataframe(rows, hide_index=True, key="compare_summary")
st.plotly_chart(comparison_figure({n: r["summary"] for n, r in results.items()}, metric=metric,
                                  title=t("compare.figure_title", episodes=n_episodes),
                                  chance=None if regression else 100.0 / s.n_way,
                                  labels={"accuracy": t("fig.accuracy"), "chance": t("fig.chance"),
                                          "algorithm": t("compare.col.algorithm")}),
                key="compare_bars")

with st.expander(t("compare.per_episode")):
    st.dataframe(exports.per_episode_table(results, scale), key="compare_table")
e1, e2 = st.columns(2)
e1.download_button(t("compare.export_csv"), exports.comparison_csv(results, scale), "comparison.csv",
                   "text/csv", key="compare_csv")
e2.download_button(t("compare.export_json"), exports.comparison_json(
    results, scale, metric=metric, settings=dataclasses.asdict(s), dataset=ctx.dataset_id),
    "comparison.json", "application/json", key="compare_json")

if not regression:
    st.subheader(t("compare.same_episode"))
    episode = ui.episode_or_stop(ctx)
    cols = st.columns(min(3, len(results)))
    for j, name in enumerate(results):
        learner = services.session_model(dataclasses.replace(s, algorithm=name), ctx.dataset,
                                         ctx.dataset_id)["learner"]
        probs = services.adapt(learner, episode, record=False).predict(episode.query_x)
        acc = float((probs.argmax(1) == episode.query_y).float().mean()) * 100
        cols[j % len(cols)].plotly_chart(
            query_predictions(ui.image_array(episode.query_x), episode.query_y.numpy(),
                              probs.cpu().numpy(), episode.class_names,
                              title=f"{services.algorithm_label(name)} — {acc:.0f}%"),
            key=f"compare_pred_{name}")
