"""Lessons: the list of lessons (files in assets/lessons, see app/lessons.py), then one
lesson step by step: its text, a button that opens its page on its episode, and its
exercise, checked against the model (app/exercises.py). Where the student is, and the
answers given, live in session state (app/lesson_state.py).

Widget keys: ``lesson_<id>`` (start a lesson), ``lesson_open``, ``lesson_back``,
``lesson_next``, ``lesson_list``, ``lesson_choice_<id>_<n>`` (a radio, step n from 1),
``lesson_value_<id>_<n>`` (a number), ``lesson_figure_<id>_<n>`` (a chart whose clicked
prototype answers), ``lesson_check``."""
from dataclasses import replace

import streamlit as st

from app import classroom, exercises, lesson_state, services, state, ui
from app.figures.episodes import class_code, short_name
from app.figures.lessons import prototype_choice
from app.i18n import current_lang, t
from app.lessons import Exercise, Lesson
from app.safe_text import show
from metarep_core.errors import MetaRepError
from metarep_core.learners import available


def lesson_list(lessons: list[Lesson], refused: list[str], lang: str) -> None:
    """A card per lesson with its start button; a refused file's message for the teacher."""
    registered = set(available())
    for message in refused:
        show("error", t("lesson.refused", message=message))
    for i, lesson in enumerate(lessons, 1):
        with st.container(border=True):
            st.subheader(f"{i}. {lesson.title[lang]}")
            st.markdown(lesson.summary[lang])
            exercises_n = sum(s.exercise is not None for s in lesson.steps)
            st.caption(t("lesson.size", steps=len(lesson.steps), exercises=exercises_n))
            st.button(t("lesson.start"), key=f"lesson_{lesson.id}", on_click=lesson_state.go_to,
                      args=(lesson.id, 0), disabled=not lesson.algorithms() <= registered)


def situation(settings: state.Settings) -> exercises.Situation:
    """The step's episode source and the session's models for ``settings``."""
    dataset, dataset_id = services.current_dataset(settings)  # a lesson may leave it to the user
    settings = settings.for_task(services.dataset_task(dataset))

    def model_for(algorithm: str) -> state.SessionModel:
        return services.session_model(replace(settings, algorithm=algorithm), dataset, dataset_id)

    def fresh_for(algorithm: str) -> state.SessionModel:
        return services.before_model(replace(settings, algorithm=algorithm), dataset, dataset_id)
    return exercises.Situation(settings, dataset, model_for, fresh_for)


def option_label(ex: Exercise, episode, lang: str):
    """The radio's format_func for the exercise's options."""
    if ex.kind == "best_learner":
        return services.label_func(None, lang)
    if ex.kind == "query_class":
        return lambda o: f"{class_code(int(o))} · {short_name(episode.class_names[int(o)], 24)}"
    return lambda o: t("lesson.option." + o, lang)


def query_and_support(episode, query: int) -> None:
    """The query to classify beside each class's support drawings (class codes A, B...)."""
    left, right = st.columns([1, 4])
    left.image(ui.image_array(episode.query_x[query:query + 1])[0], clamp=True, width=96,
               caption=t("lesson.the_query"))
    support = ui.image_array(episode.support_x)
    cols = right.columns(episode.n_way)
    for c, col in enumerate(cols):
        first = int((episode.support_y == c).nonzero()[0])
        col.image(support[first], clamp=True, width=72, caption=class_code(c))


def number(value: float, metric: str) -> str:
    """An accuracy (already in %) with its unit; a loss with three significant digits."""
    return f"{value:.1f}%" if metric.endswith("accuracy") else f"{value:.3g}"


def prototype_figure(sit, episode, query: int, key: str) -> str | None:
    """The prototypes and the query in a 2-D projection; the class of a clicked
    prototype (None before a click, or for a learner without prototypes)."""
    where = exercises.prototype_map(sit.model_for(sit.settings.algorithm), episode, query)
    if where is None:
        return None
    codes = [class_code(c) for c in range(episode.n_way)]
    event = st.plotly_chart(prototype_choice(*where, codes, title=t("lesson.figure_title"), labels={
        "prototype": t("fig.prototype"), "query": t("lesson.the_query"),
        "component_1": t("lesson.component", n=1), "component_2": t("lesson.component", n=2)}),
        key=key, on_select="rerun", selection_mode="points")
    st.caption(t("lesson.click_prototype"))
    return exercises.picked_class(event.selection.points if event else [])


def detail_text(ex: Exercise, solution: exercises.Solution, lang: str) -> str:
    """What the model computed, in words (shown once the student has answered)."""
    d = solution.detail
    if ex.kind == "best_learner":
        return t("lesson.detail.accuracies", lang, values=", ".join(
            f"{services.algorithm_label(a, lang).split(' · ')[0]} {v:.1f}%" for a, v in d.items()))
    if ex.kind == "trace_change":
        (_, va), (_, vb) = d.items()
        return t("lesson.detail.trace", lang, metric=t("adapt." + ex.params["metric"], lang),
                 first=ex.params["from_step"], then=ex.params["to_step"],
                 a=number(va, ex.params["metric"]), b=number(vb, ex.params["metric"]))
    if ex.kind == "query_class":
        return t("lesson.detail.probabilities", lang, values=", ".join(
            f"{class_code(i)} {v:.0f}%" for i, v in enumerate(d.values())))
    if ex.kind == "presentation_accuracy":
        return t("lesson.detail.presentations", lang,
                 values=", ".join(f"#{k}: {v:.0f}%" for k, v in d.items()))
    if ex.kind == "unseen_uncertainty":
        return t("lesson.detail.entropy", lang, seen=d["seen"], unseen=d["unseen"])
    return t("lesson.detail.gain", lang, before=d["before"], after=d["after"])


def choice_exercise(lesson: Lesson, n: int, ex: Exercise, sit, lang: str) -> None:
    """Predict (or read the figure), then check: the answer is recorded, then the
    model's own result is shown, with the hint when the answer was wrong."""
    episode = sit.episode()
    choice_key = f"lesson_choice_{lesson.id}_{n}"
    if ex.kind == "query_class":
        query_and_support(episode, ex.params["query"])
        picked = prototype_figure(sit, episode, ex.params["query"], f"lesson_figure_{lesson.id}_{n}")
        if picked is not None and st.session_state.get("_lesson_picked") != (choice_key, picked):
            st.session_state["_lesson_picked"] = (choice_key, picked)
            st.session_state[choice_key] = picked  # a click answers, as choosing the class does
    options = (tuple(ex.params["algorithms"]) if ex.kind == "best_learner" else
               tuple(str(i) for i in range(episode.n_way)) if ex.kind == "query_class" else
               exercises.DIRECTIONS)
    choice = st.radio(t("lesson.your_answer"), options, index=None, key=choice_key,
                      format_func=option_label(ex, episode, lang))
    if st.button(t("lesson.check"), key="lesson_check", disabled=choice is None, type="primary"):
        with st.spinner(t("lesson.computing")):
            solution = exercises.solve(ex, sit)
        lesson_state.record(exercises.Answer.now(lesson.id, n, ex.kind, choice, solution.accepted,
                                                 solution.is_correct(choice), lang))
        st.session_state["_lesson_detail"] = (lesson.id, n, detail_text(ex, solution, lang))


def target_exercise(lesson: Lesson, n: int, ex: Exercise, sit, lang: str) -> None:
    """Reach a target: the student tries a value of a hyper-parameter; the app adapts
    the session's model with it and scores the step's episode."""
    hp = next(h for h in type(sit.model_for(sit.settings.algorithm).learner).all_hyperparams()
              if h.name == ex.params["hyperparam"])
    value = st.number_input(t("lesson.try_value", name=hp.name),
                            min_value=None if hp.low is None else float(hp.low),
                            max_value=None if hp.high is None else float(hp.high),
                            value=float(hp.default if hp.low is None else hp.low), format="%g",
                            key=f"lesson_value_{lesson.id}_{n}")  # from the range's start: the
    # learner's default may already be an answer
    if st.button(t("lesson.check"), key="lesson_check", type="primary"):
        with st.spinner(t("lesson.computing")):
            ok, reached = exercises.check_target(ex, sit, value)
        goal = ex.params.get("at_least", ex.params.get("at_most"))
        lesson_state.record(exercises.Answer.now(lesson.id, n, ex.kind, value,
                                                 [f"{'>=' if 'at_least' in ex.params else '<='}{goal}"],
                                                 ok, lang))
        metric = t("adapt." + ex.params["metric"], lang)
        st.session_state["_lesson_detail"] = (lesson.id, n, t(
            "lesson.detail.target", lang, metric=metric, value=number(reached, ex.params["metric"]),
            goal=number(goal, ex.params["metric"])))


def feedback(lesson: Lesson, n: int, ex: Exercise, lang: str) -> None:
    """The latest answer's verdict, what the model computed, and the hint if wrong."""
    answer = lesson_state.last_answer(lesson.id, n)
    if answer is None:
        return
    shown = st.session_state.get("_lesson_detail")
    detail = shown[2] if shown and shown[:2] == (lesson.id, n) else ""
    (st.success if answer.correct else st.error)(
        t("lesson.correct" if answer.correct else "lesson.wrong") + (f" {detail}" if detail else ""))
    if not answer.correct:
        st.info(t("lesson.hint", hint=ex.hint[lang]))


def step_view(lesson: Lesson, i: int, lang: str) -> None:
    """Step ``i`` (0-based) of ``lesson``: text, page button, exercise, navigation."""
    step, n = lesson.steps[i], i + 1
    st.subheader(lesson.title[lang])
    st.progress(n / len(lesson.steps), text=t("lesson.step_of", step=n, steps=len(lesson.steps)))
    st.markdown(step.text[lang])
    settings = lesson_state.step_settings(lesson, i)
    if step.page and st.button(t("lesson.open", page=t("page." + step.page)), key="lesson_open",
                               on_click=lesson_state.apply_settings, args=(settings,)):
        lesson_state.open_page(step.page, settings)
    if step.exercise is not None:
        ex = step.exercise
        with st.container(border=True):
            st.markdown(f"**{ex.question[lang]}**")
            try:
                sit = situation(settings)
                (target_exercise if ex.kind == "reach_target" else choice_exercise)(
                    lesson, n, ex, sit, lang)
            except MetaRepError as exc:
                show("error", exc)
            feedback(lesson, n, ex, lang)
            classroom.revealed_view(lesson.id, n, ex, lang)
    back, forward, listing = st.columns(3)
    back.button(t("lesson.back"), key="lesson_back", disabled=i == 0,
                on_click=lesson_state.go_to, args=(lesson.id, i - 1))
    last = i == len(lesson.steps) - 1
    forward.button(t("lesson.finish" if last else "lesson.next"), key="lesson_next",
                   on_click=lesson_state.go_to, args=(None if last else lesson.id, i + 1))
    listing.button(t("lesson.all_lessons"), key="lesson_list", on_click=lesson_state.go_to,
                   args=(None,))
    st.caption(t("lesson.link", link=lesson_state.link(lesson, i, lang)))


def answers_view(lang: str) -> None:
    """This session's answers (what a run store will keep)."""
    answers = lesson_state.answers()
    if answers:
        with st.expander(t("lesson.answers", n=len(answers), right=sum(a.correct for a in answers))):
            st.dataframe([{t("lesson.col.lesson"): a.lesson, t("lesson.col.step"): a.step,
                           t("lesson.col.answer"): a.answer,
                           t("lesson.col.correct"): "✓" if a.correct else "✗",
                           t("lesson.col.time"): a.time} for a in answers], hide_index=True)


st.title(t("page.lessons"))
st.caption(t("page.lessons.intro"))
lang = current_lang()
classroom.student_panel()
for warning in lesson_state.url_warnings():
    st.warning(t("lesson.url_ignored", value=warning))
lessons, refused = lesson_state.all_lessons()
current = lesson_state.find(st.session_state.get("lesson"))
if current is None:
    lesson_list(lessons, refused, lang)
else:
    step_view(current, min(st.session_state.get("lesson_step", 0), len(current.steps) - 1), lang)
answers_view(lang)
