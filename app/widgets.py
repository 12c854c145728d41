"""Controls built from a learner's declared :class:`HyperParam` metadata.

No algorithm is named here: an int becomes a number input, a float a slider
(log-spaced values when ``log``), a bool a toggle, a choice a select box. Keys
are ``hp_<algorithm>_<name>`` so two algorithms' ``meta_lr`` don't share state.

Words: each control is labelled ``hp.<name>.label`` and helped by
``hp.<algorithm>.<name>.help`` (where a learner gives the name its own meaning) or
``hp.<name>.help``, in the session's language (see :func:`hyperparam_text`); the raw
name is shown only as the last resort, and a test fails while one is missing.
"""
from __future__ import annotations

import math

import numpy as np
import streamlit as st

from app.i18n import DEFAULT_LANG, current_lang, strings


def _log_options(low: float, high: float, value: float) -> list[float]:
    """About 8 values per decade between ``low`` and ``high``, plus ``value``."""
    n = max(2, int(round(8 * math.log10(high / low))) + 1)
    grid = {float(f"{v:.3g}") for v in np.geomspace(low, high, n)}
    grid.add(float(value))
    return sorted(grid)


def hyperparam_text(hp, algorithm: str | None = None, lang: str | None = None) -> tuple[str, str]:
    """(label, help) of a declared hyper-parameter in ``lang``: the i18n texts (see
    the module docstring), English where ``lang`` lacks one, and the learner's own
    name and help only when neither language has it. The help ends with the name
    used in checkpoints and on the command line."""
    tables = (strings(lang or DEFAULT_LANG), strings(DEFAULT_LANG))

    def lookup(*keys):
        return next((tb[k] for tb in tables for k in keys if tb.get(k)), None)

    label = lookup(f"hp.{hp.name}.label") or hp.name
    help_text = (lookup(*([f"hp.{algorithm}.{hp.name}.help"] if algorithm else []), f"hp.{hp.name}.help")
                 or hp.help or "")
    setting = lookup("hp.setting_name")
    if setting:
        help_text = (help_text + " " + setting.format(name=hp.name)).strip()
    return label, help_text


def hyperparam_control(hp, value, key: str, lang: str | None = None, algorithm: str | None = None):
    """One widget for one declared hyper-parameter; returns the chosen value."""
    label, help_text = hyperparam_text(hp, algorithm, lang)
    help_text = help_text or None
    if hp.kind == "bool":
        return st.toggle(label, value=bool(value), key=key, help=help_text)
    if hp.kind == "choice":
        choices = list(hp.choices)
        return st.selectbox(label, choices, index=choices.index(value) if value in choices else 0,
                            key=key, help=help_text)
    bounded = hp.low is not None and hp.high is not None
    if hp.kind == "int":
        return int(st.number_input(label, min_value=None if hp.low is None else int(hp.low),
                                   max_value=None if hp.high is None else int(hp.high),
                                   value=int(value), step=1, key=key, help=help_text))
    if hp.log and bounded and hp.low > 0:
        return float(st.select_slider(label, _log_options(hp.low, hp.high, value), value=float(value),
                                      format_func=lambda v: f"{v:.3g}", key=key, help=help_text))
    if bounded:
        return float(st.slider(label, float(hp.low), float(hp.high), float(value), key=key,
                               help=help_text))
    return float(st.number_input(label, value=float(value), key=key, help=help_text, format="%.4g"))


def hyperparam_controls(learner_cls, values: dict) -> dict:
    """Widgets for every declared hyper-parameter of ``learner_cls`` (common ones
    first), starting from ``values``; returns ``{name: chosen value}``."""
    chosen = {}
    for hp in learner_cls.all_hyperparams():
        value = values.get(hp.name, hp.default)
        chosen[hp.name] = hyperparam_control(hp, value, key=f"hp_{learner_cls.name}_{hp.name}",
                                             lang=current_lang(), algorithm=learner_cls.name)
    return chosen
