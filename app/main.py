"""MetaRep Explorer — entry point (`python -m app.serve run app/main.py`: `streamlit run`
with the heavy imports done before the server listens; a bare `streamlit run` works too).

Pages (st.navigation over the list in app/pages.py; URL path -> script). The default
page is served at the root:
    /           views/episodes.py   support & query grids, "new episode"   (url_path "episodes";
                                    Streamlit serves a default page at "/" only)
    /train      views/train.py      meta-training in the background pool, checkpoints
    /adapt      views/adapt.py      watch adaptation: scrub the trace step by step
    /embedding  views/embedding.py  UMAP / t-SNE / PCA of the embedding space
    /compare    views/compare.py    several learners on identical episodes (and "You")
    /human      views/human.py      you vs the model: label the queries, timed
    /draw       views/draw.py       draw your own characters: an episode, a zip
    /lessons    views/lessons.py    lessons (assets/lessons/*.json) step by step, with checked
                                    exercises; ?lesson=<id>&step=<n>&hide=sidebar opens a step
    /teacher    views/teacher.py    a class: create or open (code + key), each exercise's answers,
                                    reveal, CSV; students join on /lessons?class=<code>
    /theory     views/theory.py     the four families and each algorithm (LaTeX)

Settings live in the URL: ?lang=en|zh&dataset=glyphs&algorithm=protonet&n_way=5&k_shot=1
&n_query=5&seed=0&split=test (read once when a session starts, written back on every run).
Once the session has kept something, ?run=<token> names its run in the run store
(app/persistence.py): a reload or the link in another browser restores the settings, the
pages' state, the trained models, the upload and the answers.

Stable widget keys for browser tests (in the browser, a widget with key K carries the CSS
class "st-key-K", e.g. `.st-key-train_start button`):
    sidebar    lang, dataset, upload_file, algorithm, n_way, k_shot, n_query, seed, split
    episodes   new_episode
    train      hp_<algorithm>_<name>, train_steps, train_fresh, train_keep, train_start, train_stop,
               download_checkpoint, upload_checkpoint
    adapt      adapt_sample, adapt_play, adapt_step (slider over the trace's own step numbers:
               a metric learner's start at 1 shot)
    embedding  emb_method (umap/tsne/pca; computed on change, no button), emb_dim,
               emb_samples, emb_neighbors, emb_perplexity, emb_color; the charts emb_before,
               emb_after (a click selects a point) and emb_before_point, emb_after_point
               (the clicked point's image and description)
    compare    compare_algorithms, compare_episodes, compare_run, compare_csv, compare_json,
               compare_pair_ref, compare_paired, compare_paired_csv
    human      human_start, human_answer_<episode>_<query>, human_submit, human_reset
    draw       draw_n_way, draw_k_shot, draw_n_query, draw_canvas_<role>_<class>_<i>
               (role support/query), draw_zip, draw_use, draw_algorithms, draw_pred_<algorithm>
    lessons    lesson_<id>, lesson_open, lesson_back, lesson_next, lesson_list,
               lesson_choice_<id>_<n>, lesson_value_<id>_<n>, lesson_figure_<id>_<n>, lesson_check;
               a class: class_code, class_name, class_join, class_leave
    teacher    teacher_create, teacher_code, teacher_key, teacher_open, teacher_kept, teacher_close,
               teacher_csv, teacher_reveal_<lesson>_<n>, projector_toggle (?projector=1)
A page is done when [data-test-script-state='notRunning'] shows and no
[data-testid='stException'] does. Training runs in a background pool and the Train page
polls it every second (a fragment), so the script state flips while a run is going.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` puts app/ on the path, not the root
    sys.path.insert(0, str(ROOT))
# Importing the projection module first points numba's on-disk cache (UMAP's compiled
# code) at $METAREP_CACHE/numba before anything imports umap or numba.
import metarep_core.projection  # noqa: E402,F401
# pandas is imported lazily by Streamlit and plotly; importing it for the first time in
# two threads at once (a page and a training worker) fails half-initialised. Do it now.
import pandas  # noqa: E402,F401
import streamlit as st  # noqa: E402
import torch  # noqa: E402

# One intra-op thread per page run and per training worker: a server's parallelism
# comes from its many sessions, and on a small machine extra torch threads only
# spin against each other (and against other users).
torch.set_num_threads(int(os.environ.get("METAREP_TORCH_THREADS", "1")))

from app import classroom, lesson_state, memory, pages, persistence, projector, services, sidebar, state  # noqa: E402
from app.i18n import t  # noqa: E402

# The icon is a file served by this server: as ":material/psychology:" the browser would
# fetch it from fonts.gstatic.com (scripts/make_page_icon.py draws it).
st.set_page_config(page_title="MetaRep Explorer", page_icon=str(ROOT / "app" / "page_icon.png"),
                   layout="wide")
memory.start_trimmer()  # once per process: a dropped session's memory goes back to the system
state.init_from_url()
persistence.restore()  # ?run=: the stored settings, pages, upload, answers (the URL's settings win)
lesson_state.init_from_url()  # ?lesson=&step=&hide=: a step's settings reach the sidebar first
classroom.init_from_url()  # ?student= (a joined student's reload), ?class= (the join form)
projector.init_from_url()  # ?projector=1
services.warm_up_projection()

services.adopt_finished_job()  # before the sidebar and page read the session's model
st.session_state["_ctx"] = sidebar.render()
persistence.keep_settings(state.current())
persistence.write_url()
with st.sidebar:
    persistence.notice()
lesson_state.write_url()
lesson_state.hide_controls()
classroom.write_url()
projector.apply()
navigation = st.navigation([
    st.Page(page.script, title=t(f"page.{page.name}"), icon=page.icon, url_path=page.name,
            default=(page.name == pages.DEFAULT))
    for page in pages.PAGES
])
lesson_state.banner(navigation.url_path)
navigation.run()
