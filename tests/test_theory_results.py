"""Each learner's theory page: what it keeps from its paper and what it changes (both
languages), and its measured Omniglot accuracy beside the paper's (app/results.py,
shown by app/views/theory.py). The results are fixture files in tmp_path, never the
real assets/results/omniglot.json."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from app import results
from app_harness import ROOT, strings
from metarep_core.learners import available

EN, ZH = strings("en"), strings("zh")
THEORY = ROOT / "assets" / "theory"
PAGE = ROOT / "app" / "views" / "theory.py"

FIXTURE = {
    "protocol": {"en": "fixture protocol: 6 test alphabets", "zh": "测试协议：6 个测试字母表"},
    "learners": {
        "maml": {"5w1s": [91.1, 0.58], "5w5s": [97.29, 0.25], "20w1s": None, "steps": 4000,
                 "best_step": 3500, "train_s": 740.4, "paper": "98.7 / 99.9",
                 "note": {"en": "fixture note for MAML", "zh": "MAML 的测试说明"}},
        "mann": {"5w1s": [76.8, 0.93], "5w5s": None, "20w1s": [50.25, 1.5], "steps": 500,
                 "train_s": 42.0, "paper": None, "note": None,
                 "presentations": {"1": "31.43 ± 1.38", "2": "74.03 ± 1.54", "5": None, "10": "72.63 ± 1.34"}},
    },
}


def write(tmp_path: Path, doc, name="omniglot.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


# ------------------------------------------------------------------ the theory texts
def sections(text: str) -> dict[str, str]:
    """Markdown heading text -> the body under it (up to the next heading)."""
    out, current = {}, None
    for line in text.splitlines():
        m = re.match(r"^#{2,6}\s+(.*?)\s*$", line)
        if m:
            current = m.group(1).strip("* ")
            out[current] = ""
        elif current is not None:
            out[current] += line + "\n"
    return out


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_learner_page_says_what_it_keeps_and_what_it_changes(lang):
    table = strings(lang)
    for name in available():
        path = THEORY / lang / f"{name}.md"
        assert path.is_file(), f"{name} has no theory page in {lang}"
        text = path.read_text(encoding="utf-8")
        parts = sections(text)
        for key in ("theory.kept", "theory.changed"):
            heading = table[key]
            assert heading in parts, f"{path.relative_to(ROOT)} has no heading {heading!r}"
            body = parts[heading]
            # a heading over nothing would pass a bare 'in' check: each part says
            # several concrete things (a list, at least two items)
            assert len(re.findall(r"^\s*[-*] ", body, re.M)) >= 2, f"{name} ({lang}): {heading!r} lists < 2 items"
        order = list(parts)
        assert order.index(table["theory.kept"]) < order.index(table["theory.changed"]), name
        if lang == "zh":
            cjk = len(re.findall(r"[\u4e00-\u9fff]", parts[table["theory.changed"]]))
            assert cjk > 40, f"zh/{name}.md: the changes are not written in Chinese"


# ------------------------------------------------------------------ reading the file
def test_reads_the_documented_shape(tmp_path):
    got = results.load_results(write(tmp_path, FIXTURE))
    assert got.protocol["zh"] == "测试协议：6 个测试字母表"
    maml = got.learners["maml"]
    assert maml.accuracy == {"5w1s": (91.1, 0.58), "5w5s": (97.29, 0.25), "20w1s": None}
    assert (maml.steps, maml.best_step, maml.train_s) == (4000, 3500, 740.4)
    assert maml.paper == {"en": "98.7 / 99.9"} and maml.note["zh"] == "MAML 的测试说明"
    assert got.learners["mann"].presentations["5"] is None


def test_no_file_means_nothing_measured(tmp_path, monkeypatch):
    assert results.load_results(tmp_path / "absent.json") is None
    monkeypatch.setenv(results.ENV_PATH, str(tmp_path / "absent.json"))
    assert results.results_path() == tmp_path / "absent.json" and results.load_results() is None


BAD = [
    ("[1, 2]", "\"learners\" object"),
    ("{\"learners\": ", "not JSON"),
    ({"learners": []}, "\"learners\" object"),
    ({"learners": {"maml": {"5w1s": [120, 1], "steps": 1, "train_s": 1}}}, "learners.maml.5w1s[0] (accuracy) is 120"),
    ({"learners": {"maml": {"5w1s": [90, "wide"], "steps": 1, "train_s": 1}}}, "learners.maml.5w1s[1] (ci95) is 'wide'"),
    ({"learners": {"maml": {"5w1s": 91.0, "steps": 1, "train_s": 1}}}, "learners.maml.5w1s is 91.0"),
    ({"learners": {"maml": {"5w1s": [90, 1], "steps": True, "train_s": 1}}}, "learners.maml.steps is True"),
    ({"learners": {"maml": {"5w1s": [90, 1], "steps": 10}}}, "has no 'train_s'"),
    ({"learners": {"maml": {"steps": 10, "train_s": float("nan")}}}, "learners.maml.train_s is nan"),
    ({"learners": {"maml": {"steps": 10, "train_s": 1, "note": {"zh": "只有中文"}}}}, "learners.maml.note"),
    ({"learners": {"maml": {"steps": 10, "train_s": 1, "paper": 98.7}}}, "learners.maml.paper is 98.7"),
    ({"learners": {"mann": {"steps": 10, "train_s": 1, "presentations": [1, 2]}}}, "learners.mann.presentations"),
    ({"protocol": 3, "learners": {}}, "protocol is 3"),
]


@pytest.mark.parametrize("doc,expected", BAD)
def test_a_malformed_file_is_refused_naming_the_field_and_the_value(tmp_path, doc, expected):
    path = write(tmp_path, doc if isinstance(doc, str) else json.dumps(doc))
    with pytest.raises(results.ResultsError) as err:
        results.load_results(path)
    assert expected in str(err.value) and "omniglot.json" in str(err.value)


def test_an_oversized_file_is_refused_before_it_is_parsed(tmp_path):
    path = write(tmp_path, " " * (results.MAX_BYTES + 1) + "{}")
    with pytest.raises(results.ResultsError, match="at most 1,000,000"):
        results.load_results(path)


# ------------------------------------------------------------------ formatting
def test_rows_in_both_languages(tmp_path):
    got = results.load_results(write(tmp_path, FIXTURE))
    en = dict(results.result_rows(got.learners["maml"], "en"))
    assert en[EN["results.setting.5w1s"]] == "91.10 ± 0.58"
    assert en[EN["results.setting.5w5s"]] == "97.29 ± 0.25"
    assert en[EN["results.setting.20w1s"]] == EN["results.not_measured_cell"]
    assert en[EN["results.steps"]] == "4,000 (weights kept from step 3,500, the best on validation)"
    assert en[EN["results.train_time"]] == "740 s (12.3 min)"
    assert en[EN["results.paper"]] == "98.7 / 99.9"
    zh = dict(results.result_rows(got.learners["mann"], "zh"))
    assert zh[ZH["results.setting.5w5s"]] == "未测量" and zh[ZH["results.setting.20w1s"]] == "50.25 ± 1.50"
    assert zh[ZH["results.presentations"]] == "31.43 ± 1.38 / 74.03 ± 1.54 / 未测量 / 72.63 ± 1.34"
    assert zh[ZH["results.steps"]] == "500" and zh[ZH["results.train_time"]] == "42 秒"
    assert zh[ZH["results.paper"]] == ZH["results.no_paper"]
    assert results.note_text(got.learners["maml"], "zh") == "MAML 的测试说明"
    assert results.note_text(got.learners["mann"], "en") is None


def test_values_from_the_file_are_shown_as_text(tmp_path):
    doc = json.loads(json.dumps(FIXTURE))
    doc["learners"]["maml"]["paper"] = "[click](http://evil.example) | 99"
    table = results.table_markdown(results.load_results(write(tmp_path, doc)).learners["maml"], "en")
    assert "\\[click\\]" in table and "\\| 99" in table
    assert not re.search(r"(?<!\\)\]\(", table), "a link survived the escaping"
    assert table.count("\n") == len(results.result_rows(results.load_results(write(tmp_path, doc))
                                                        .learners["maml"], "en")) + 1


# ------------------------------------------------------------------ the page
def theory_page(monkeypatch, path: Path | None, lang: str = "en"):
    from streamlit.testing.v1 import AppTest
    if path is not None:
        monkeypatch.setenv(results.ENV_PATH, str(path))
    at = AppTest.from_file(str(PAGE), default_timeout=60)
    at.session_state["lang"] = lang
    return at.run()


def expander_text(at, name_start: str) -> str:
    exp = next(e for e in at.expander if e.label.startswith(name_start))
    text = "\n".join(str(m.value) for kind in ("markdown", "caption") for m in getattr(exp, kind))
    # the markdown source as it reads on screen: escapes and word joiners (plain()) dropped
    return re.sub(r"\\(?=[^\w\s])", "", text).replace("\u2060", "")


def test_the_page_shows_the_table_for_a_measured_learner_and_not_measured_otherwise(tmp_path, monkeypatch):
    at = theory_page(monkeypatch, write(tmp_path, FIXTURE))
    assert not at.exception and not at.warning
    maml = expander_text(at, "MAML —")
    assert "91.10 ± 0.58" in maml and "740 s (12.3 min)" in maml and "98.7 / 99.9" in maml
    assert "fixture protocol" in maml and "fixture note for MAML" in maml
    assert EN["results.not_measured"] not in maml
    proto = expander_text(at, "Prototypical")
    assert EN["results.not_measured"] in proto and "± " not in proto.split(EN["results.heading"])[1]
    zh = theory_page(monkeypatch, write(tmp_path, FIXTURE), "zh")
    maml_zh = expander_text(zh, "MAML —")
    assert "未测量" in maml_zh and "MAML 的测试说明" in maml_zh and "测试协议" in maml_zh


def test_the_page_survives_a_missing_or_broken_file(tmp_path, monkeypatch):
    at = theory_page(monkeypatch, tmp_path / "absent.json")
    assert not at.exception and not at.warning
    assert all(EN["results.not_measured"] in expander_text(at, e.label[:12]) for e in at.expander)
    bad = theory_page(monkeypatch, write(tmp_path, {"learners": {"maml": {"steps": "x", "train_s": 1}}}))
    assert not bad.exception and len(bad.warning) == 1
    assert "learners.maml.steps is 'x'" in bad.warning[0].value
    assert EN["results.not_measured"] in expander_text(bad, "MAML —")
