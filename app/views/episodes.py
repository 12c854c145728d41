"""Episodes: the support set (a row per class) and the query set of the sidebar's
episode; "new episode" moves to the next seed (the URL follows)."""
import streamlit as st

from app import services, state, ui
from app.figures.episodes import episode_grid, regression_plot
from app.i18n import t

ctx = ui.page("episodes")
st.button(t("episodes.new"), key="new_episode", on_click=state.next_seed, type="primary")
episode = ui.episode_or_stop(ctx)
s = ctx.settings
st.caption(t("episodes.summary", n_way=s.n_way, k_shot=s.k_shot, n_query=s.n_query,
             seed=s.seed, split=t("split." + s.split)))
labels = {"support": t("fig.support"), "query": t("fig.query"), "x": "x", "y": "y",
          "true": t("fig.true_curve")}

if episode.is_regression:
    grid_x, true_y = services.true_curve(ctx.dataset, episode)
    ui.chart(regression_plot(
        grid_x, true_y, episode.support_x.view(-1).numpy(),
        episode.support_y.view(-1).numpy(), {}, query_x=episode.query_x.view(-1).numpy(),
        query_y=episode.query_y.view(-1).numpy(), title=t("episodes.task_title", params=", ".join(
            f"{k} = {v:.2f}" for k, v in episode.info.items() if isinstance(v, float))),
        labels=labels), key="episode_regression")
    st.info(t("episodes.regression_note"))
else:
    names = list(episode.class_names)
    heads = names
    if episode.info.get("groups"):  # alphabet / character, as Omniglot names them
        heads = [f"{g} / {c}" if g and g not in c else c
                 for g, c in zip(episode.info["groups"], names)]
    # the figures' titles name the sets ("Support set: ..."): no subheader repeats them
    ui.chart(episode_grid(ui.image_array(episode.support_x), episode.support_y.numpy(),
                          names, row_labels=heads, labels=labels, kind="support_grid"),
             key="episode_support")
    ui.chart(episode_grid(ui.image_array(episode.query_x), episode.query_y.numpy(),
                          names, row_labels=heads, labels=labels, kind="query_grid"),
             key="episode_query")
    st.info(t("episodes.explain", n_way=s.n_way, k_shot=s.k_shot))
