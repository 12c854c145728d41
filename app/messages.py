"""The core's messages (``MetaRepError`` texts and projection notes, plain English:
the core knows no languages) in the reader's language.

As with the step labels (:mod:`app.figures.step_labels`), each message form a page
can show is matched by a pattern and rebuilt from the ``msg.<form>`` template of
``app/i18n/<lang>.json``, so "n_way = 5 but the 'test' split of 'digits' has 3
classes" reads "N 类 = 5，但……" in 中文. In English a core message is shown as
written (it is already phrased for the user). A message no pattern knows is shown
in another language under a translated heading (``msg.untranslated``) rather than
as bare English; a text the app translated itself (``t(...)``) is returned as is.
"""
from __future__ import annotations

import re

from app.i18n import DEFAULT_LANG, current_lang, strings

# (pattern over the core's English text, i18n key of its template); groups fill the template
PATTERNS: tuple[tuple[re.Pattern, str], ...] = tuple((re.compile(p), key) for p, key in (
    # metarep_core/data/base.py: an episode the split cannot give
    (r"^n_way = (?P<n_way>\d+) but the '(?P<split>\w+)' split of '(?P<dataset>[^']*)' has "
     r"(?P<classes>\d+) classes; choose n_way <= (?P<most>\d+)$", "msg.n_way_too_large"),
    (r"^k_shot \+ n_query = (?P<need>\d+) but class (?P<cls>.+) has (?P<have>\d+) images "
     r"\(and (?P<enough>\d+) classes of the '(?P<split>\w+)' split have enough for "
     r"n_way = (?P<n_way>\d+)\)$", "msg.too_few_images"),
    (r"^n_way must be 1 for the regression dataset '(?P<dataset>[^']*)', got (?P<n_way>\d+)$",
     "msg.regression_n_way"),
    (r"^split must be one of (?P<allowed>.+), got (?P<value>.+)$", "msg.bad_split"),
    # metarep_core/projection.py: the notes of a clamped projection
    (r"^(?P<method>\w+) needs at least (?P<need>\d+) points for a (?P<dim>\d)-D map; "
     r"(?P<n>\d+) given, so PCA is shown instead$", "msg.projection_too_few"),
    (r"^n_neighbors lowered from (?P<old>\d+) to (?P<new>\d+): it must be below the number "
     r"of points \((?P<n>\d+)\)$", "msg.neighbors_lowered"),
    (r"^perplexity lowered from (?P<old>[\d.]+) to (?P<new>[\d.]+): it must be at most a third "
     r"of the number of points \((?P<n>\d+)\)$", "msg.perplexity_lowered"),
    # metarep_core/errors.py, learners/base.py, projection.py: one value out of range
    (r"^(?P<name>\w+) must be an integer, got (?P<value>.+)$", "msg.not_integer"),
    (r"^(?P<name>\w+) must be (a number |an integer |)between (?P<low>\S+) and (?P<high>\S+), "
     r"got (?P<value>.+)$", "msg.out_of_range"),
    (r"^(?P<name>\w+) must be >= (?P<low>\S+), got (?P<value>.+)$", "msg.too_small"),
    (r"^(?P<name>\w+) must be one of (?P<allowed>.+), got (?P<value>.+)$", "msg.not_one_of"),
    # metarep_core/data/folder.py: an upload with nothing to read
    (r"^(?P<label>.+) holds no image files \((?P<allowed>[^)]*)\); (?P<others>\d+) other files "
     r"were found$", "msg.no_images"),
    (r"^(?P<label>.+) is not a zip file \(or is corrupt\);.*$", "msg.not_a_zip"),
    # metarep_core/store/classes.py, checks.py: a class code, a teacher key, a student's name
    (r"^that is not the teacher key of class (?P<code>'[A-Z0-9 ]*')$", "msg.wrong_teacher_key"),
    (r"^there is no class (?P<code>.+); check the code on the board$", "msg.no_class"),
    (r"^(?P<value>.+) is not a class code; a code is (?P<n>\d+) letters and digits$", "msg.not_a_class_code"),
    (r"^the name (?P<name>.+) is already taken in this class; choose another$", "msg.name_taken"),
    (r"^the display name is empty; give 1 to (?P<most>\d+) characters$", "msg.name_empty"),
    # metarep_core/cluster/connect.py: a Ray head that does not answer
    (r"^the Ray cluster at (?P<address>\S+) cannot be reached \((?P<reason>[^)]*)\)\. .*$",
     "msg.cluster_unreachable"),
    # app/comparison.py keeps only what failed (the advice above is about training)
    (r"^the Ray cluster at (?P<address>\S+) cannot be reached \((?P<reason>[^)]*)\)$",
     "msg.cluster_unreachable_short"),
))
CJK = re.compile(r"[\u3000-\u30ff\u3400-\u9fff\uff00-\uffef]")


def user_message(text, lang: str | None = None) -> str:
    """``text`` (a message, or an exception whose ``str`` is one) in ``lang`` (default:
    the session's). English: unchanged. Another language: the matching ``msg.*``
    template filled from the message; a text already in that language unchanged;
    anything else under the ``msg.untranslated`` heading, the original kept (it names
    the value that was refused)."""
    text = str(text or "")
    lang = lang or current_lang()
    if lang == DEFAULT_LANG or not text:
        return text
    table = strings(lang)
    for pattern, key in PATTERNS:
        m = pattern.match(text)
        if m and table.get(key):
            fields = {k: v for k, v in m.groupdict().items() if v is not None}
            if "split" in fields:   # the split's own name in this language ("test" -> 测试类别)
                fields["split"] = table.get("split." + fields["split"], fields["split"])
            try:
                return table[key].format(**fields)
            except (KeyError, IndexError, ValueError):
                break
    if CJK.search(text):   # the app's own t(...) text: already translated
        return text
    heading = table.get("msg.untranslated")
    return heading.format(message=text) if heading else text
