"""The sidebar shared by every page: language, dataset (or upload), algorithm,
N-way, K-shot, queries, seed and split. Every choice is a widget keyed by its
settings name, mirrored in the URL by :mod:`app.state`.
"""
from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from app import persistence, services, state, uploads
from app.i18n import LANGUAGES, t
from app.jobs import TrainingJob, session_job
from app.safe_text import plain, show
from app.messages import user_message
from metarep_core.errors import MetaRepError
from metarep_core.learners import get_learner_class


@dataclass
class Context:
    """What a page needs from the sidebar. ``settings`` are the effective ones (N = 1
    for a regression task); ``task`` is the dataset's own. ``dataset`` is None when it
    could not be loaded (``error`` says why)."""

    settings: state.Settings
    dataset: object = None
    dataset_id: str = ""
    task: str = "classification"
    error: str | None = None


def _upload_box() -> None:
    """The zip uploader; a good archive becomes this session's "upload" dataset."""
    file = st.file_uploader(t("upload.label"), type=["zip"], key="upload_file",
                            help=t("upload.help"))
    if file is None:
        return
    # A new upload (even a corrected file with the same name and size) is read again;
    # a rerun with the same upload, or the same bytes sent twice, is not. The file id
    # spares hashing the bytes on every rerun.
    seen = st.session_state.get("_upload_seen") or (None, None)
    if file.file_id == seen[0]:
        return
    data = file.getvalue()
    digest = uploads.content_id(data)
    st.session_state["_upload_seen"] = (file.file_id, digest)
    if digest == seen[1]:
        return
    try:
        with st.spinner(t("upload.reading")):
            uploads.accept_dataset_upload(file.name, data)
    except MetaRepError as exc:
        st.session_state["_upload_error"] = str(exc)
    else:
        st.session_state.pop("_upload_error", None)
        persistence.keep_upload(file.name, data)  # a reload or the run's link reads it again
        # A new set of classes is most often a test set for a trained model: use all of
        # its classes (the split box is drawn after this, so it may still be changed).
        st.session_state["split"] = "all"


def _job_status() -> None:
    """A line while this session's training job runs (main.py adopts it when done)."""
    job: TrainingJob | None = session_job()  # also keeps ?job= in the URL on every page
    if job is not None and job.active:
        st.caption(t("sidebar.job_running", step=job.step, steps=job.steps))


# Widgets whose option labels are translated (format_func). The browser keeps showing a
# choice's old label after the language changes unless the value is sent again.
TRANSLATED_CHOICES = ("dataset", "algorithm", "split", "emb_method", "emb_color",
                      "compare_algorithms", "compare_pair_ref", "draw_algorithms")


def _resend_translated_choices() -> None:
    """After a language switch, re-assign the translated widgets' values (before they
    are drawn in this run), so Streamlit sends them with their new labels."""
    ss = st.session_state
    lang = ss.get("lang")
    if ss.get("_lang_shown") not in (None, lang):
        for key in TRANSLATED_CHOICES:
            if key in ss:
                ss[key] = ss[key]
    ss["_lang_shown"] = lang


def _fit_n_way(dataset, dataset_id: str) -> None:
    """A split with fewer usable classes than the chosen N (digits' test split has 3):
    N becomes that number, with a note, instead of an error on every page. Runs before
    the N box is drawn (its key may still be written)."""
    ss = st.session_state
    split = ss.get("split", state.DEFAULTS.split)
    need = int(ss.get("k_shot", state.DEFAULTS.k_shot)) + int(ss.get("n_query", state.DEFAULTS.n_query))
    try:
        classes = dataset.split_indices(split)
    except MetaRepError:
        return
    usable = sum(1 for c in classes if dataset.images[c].shape[0] >= need)
    asked = int(ss.get("n_way", state.DEFAULTS.n_way))
    if 1 <= usable < asked:  # none usable: K + queries is the problem, the core says so
        ss["n_way"] = usable
        ss["_n_way_note"] = (dataset_id, split, asked, usable)


def _n_way_note(ctx: Context) -> None:
    """The note of :func:`_fit_n_way`, while the dataset, split and N it was about stay."""
    note = st.session_state.get("_n_way_note")
    if note is None:
        return
    dataset_id, split, asked, usable = note
    if (dataset_id, split, usable) == (ctx.dataset_id, st.session_state.get("split"),
                                      st.session_state.get("n_way")):
        st.info(t("sidebar.n_way_adjusted", asked=asked, n=usable, split=t("split." + split)))
    else:
        st.session_state.pop("_n_way_note", None)


def render() -> Context:
    """Draw the sidebar and return this run's :class:`Context`."""
    ss = st.session_state
    _resend_translated_choices()
    with st.sidebar:
        st.selectbox(t("sidebar.language"), list(LANGUAGES), key="lang",
                     format_func=LANGUAGES.get)
        choices = state.dataset_choices()
        if ss.get("dataset") not in choices:
            ss["dataset"] = state.DEFAULTS.dataset
        st.selectbox(t("sidebar.dataset"), choices, key="dataset",
                     format_func=services.label_func("dataset."))
        if ss["dataset"] == state.UPLOAD:
            _upload_box()
            if ss.get("_upload_error"):
                show("error", user_message(ss["_upload_error"]))  # the core's English, translated
            elif ss.get("upload"):
                up = ss["upload"]
                ds = up["dataset"]
                st.caption(t("upload.summary", name=plain(up["name"]), classes=ds.n_classes,
                             images=sum(int(x.shape[0]) for x in ds.images)))
                if ds.params.get("skipped_files"):
                    st.warning(t("upload.skipped", n=ds.params["skipped_files"]))

        ctx = Context(settings=state.current())
        try:
            with st.spinner(t("sidebar.loading_dataset")):
                ctx.dataset, ctx.dataset_id = services.current_dataset(ctx.settings)
            ctx.task = services.dataset_task(ctx.dataset)
        except MetaRepError as exc:
            ctx.error = str(exc)

        options = services.algorithms_for(ctx.task)
        if ss.get("algorithm") not in options:
            ss["algorithm"] = state.DEFAULTS.algorithm if state.DEFAULTS.algorithm in options \
                else options[0]
        st.selectbox(t("sidebar.algorithm"), options, key="algorithm",
                     format_func=services.label_func(None))
        cls = get_learner_class(ss["algorithm"])
        st.caption(f"{t('family.' + cls.family)} — {cls.paper}")

        if ctx.task == "classification" and ctx.dataset is not None:
            _fit_n_way(ctx.dataset, ctx.dataset_id)
        c1, c2 = st.columns(2)
        if ctx.task == "regression":
            # One output: show N = 1. The chosen N stays under "n_way" for when the user
            # switches back (persist_state keeps a widget's value while it is hidden).
            c1.number_input(t("sidebar.n_way"), value=ctx.settings.for_task(ctx.task).n_way,
                            disabled=True, key="n_way_fixed", help=t("sidebar.n_way_regression"))
        else:
            c1.number_input(t("sidebar.n_way"), *state.LIMITS["n_way"], key="n_way", step=1,
                            help=t("sidebar.n_way_help"), persist_state="session")
        c2.number_input(t("sidebar.k_shot"), *state.LIMITS["k_shot"], key="k_shot", step=1,
                        help=t("sidebar.k_shot_help"))
        c3, c4 = st.columns(2)
        c3.number_input(t("sidebar.n_query"), *state.LIMITS["n_query"], key="n_query", step=1,
                        help=t("sidebar.n_query_help"))
        c4.number_input(t("sidebar.seed"), *state.LIMITS["seed"], key="seed", step=1,
                        help=t("sidebar.seed_help"))
        st.selectbox(t("sidebar.split"), state.SPLITS, key="split",
                     format_func=services.label_func("split."))
        if ctx.task == "classification":
            _n_way_note(ctx)
        if ss.get("_url_warnings"):
            st.warning(t("sidebar.url_ignored", values=plain(", ".join(ss["_url_warnings"]))))
        for name, given, lo, hi, used in ss.get("_url_clamped", ()):
            if ss.get(name) != used:  # the user has chosen another value since
                continue
            st.warning(t("sidebar.url_clamped", name=name, value=plain(given), lo=lo, hi=hi,
                         used=used))
        _job_status()

    chosen = state.current()
    state.write_url(chosen)
    ctx.settings = chosen.for_task(ctx.task)
    return ctx


def context() -> Context:
    """The context main.py computed for this run (pages call this)."""
    return st.session_state["_ctx"]
