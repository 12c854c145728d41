"""The learners' step labels (``TraceStep.label``, English, written by the core) in the
reader's language.

The core keeps its labels plain English (it knows no languages); here each label
form a registered learner writes is matched by a pattern and rebuilt from the
``step.<form>`` template of ``app/i18n/<lang>.json``, so "inner step 3" reads "内循环第
3 步". A label no pattern knows is shown as written (a test fails when a registered
learner writes one).
"""
from __future__ import annotations

import re

from app.i18n import strings

from . import resolve_lang

# (pattern over the English label, i18n key of its template); groups fill {k}, {n}, {cls}, {prev}
PATTERNS: tuple[tuple[re.Pattern, str], ...] = tuple((re.compile(p), key) for p, key in (
    (r"^before adaptation$", "step.before"),
    (r"^prior \(before adaptation\)$", "step.prior"),
    (r"^step (?P<k>\d+)$", "step.gradient"),
    (r"^inner step (?P<k>\d+)$", "step.inner"),
    (r"^proximal step (?P<k>\d+)$", "step.proximal"),
    (r"^head step (?P<k>\d+)$", "step.head"),
    (r"^(?P<k>\d+) shots?( per class)?$", "step.shots"),
    (r"^no shot yet: uniform predictive$", "step.no_shot"),
    (r"^before any support example \(empty memory\)$", "step.empty_memory"),
    (r"^shown support (?P<k>\d+)/(?P<n>\d+) \(class (?P<cls>.+)\) with the previous label \((?P<prev>.+)\)$",
     "step.shown_support"),
    (r"^label step: last label \((?P<cls>.+)\) shown, nothing new$", "step.label_step"),
    (r"^before any support example \(slow weights only\)$", "step.slow_weights"),
    (r"^stored fast weights of support (?P<k>\d+)/(?P<n>\d+) \(class (?P<cls>.+)\)$", "step.fast_weights"),
))


def step_label(label: str, lang: str | None = None) -> str:
    """``label`` (a TraceStep's) in ``lang``; unchanged when no pattern matches or the
    language has no template for it."""
    label = str(label or "")
    table = strings(resolve_lang(lang))
    for pattern, key in PATTERNS:
        m = pattern.match(label)
        if m and table.get(key):
            fields = m.groupdict()
            if fields.get("prev") == "none":   # the first support has no previous label
                fields["prev"] = table.get("step.none", "none")
            try:
                return table[key].format(**fields)
            except (KeyError, IndexError, ValueError):
                return label
    return label
