"""What a user sends is shown as text (issue 12, items 6 and 8): markdown in a shared
link's value, an uploaded file's name or a checkpoint's metadata never becomes a live
link or an image in the app's own messages; out-of-range link values are clamped with
a notice that names the parameter, the value given and the allowed range."""
from __future__ import annotations

import json
import re
import struct

from app_harness import class_folder_zip, goto, new_app, problems, set_and_run, strings

from app.safe_text import WORD_JOINER, plain

EN = strings("en")
HOST = "127.0.0.1:9"
PAYLOAD = f"![x](http://{HOST}/x.png)[Click here](http://{HOST}/)"
KINDS = ("title", "header", "subheader", "caption", "markdown", "info", "warning", "error",
         "success")


def _unescaped(markdown: str) -> str:
    return markdown.replace("\\", "").replace(WORD_JOINER, "")


def _messages_naming_the_host(at) -> list[str]:
    """The markdown source of every text element that mentions HOST (escaped or not)."""
    found = []
    for kind in KINDS:
        for element in getattr(at, kind):
            value = str(element.value)
            if HOST in _unescaped(value):
                found.append(value)
    return found


def _assert_shown_as_text(at, payload: str = PAYLOAD) -> list[str]:
    """Each message naming the host carries the payload escaped, and nothing of it raw."""
    found = _messages_naming_the_host(at)
    assert found, "no message shows the value at all"
    for value in found:
        assert plain(payload) in value, value
        rest = value.replace(plain(payload), "")
        assert HOST not in _unescaped(rest), f"an unescaped part names the host: {value!r}"
    return found


def test_plain_escapes_every_markdown_construct_and_keeps_the_text():
    tricky = PAYLOAD + " <img src=x> :red[hi] $x$ www.example.org a@b.org *b* `c` _e_ ~~s~~\n# h"
    escaped = plain(tricky)
    # every character that opens a construct comes escaped ...
    for char in "[]<>$*`~#":
        assert not re.search(r"(?<!\\)" + re.escape(char), escaped), (char, escaped)
    assert not re.search(r"(?<![\\\w])_|(?<!\\)_(?!\w)", escaped), escaped  # "_" at a word edge
    # ... autolink patterns (found after unescaping) are broken by invisible joiners ...
    assert not re.search(r"https?://|www\.|@\w", escaped.replace("\\", "")), escaped
    # ... and undoing the escapes gives the text back (line breaks become spaces).
    unescaped = re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", escaped.replace(WORD_JOINER, ""))
    assert unescaped == tricky.replace("\n", " ")
    assert plain("- item") == "\\- item" and plain("3. item") == "3\\. item"
    assert plain("n_way=3 for 'a_b'") == "n_way=3 for 'a_b'"  # plain text stays as typed


def test_markdown_in_a_link_value_is_shown_as_text():
    at = new_app(lang=PAYLOAD)
    assert problems(at) == []
    warnings = _assert_shown_as_text(at)
    assert any(w.startswith(EN["sidebar.url_ignored"].split("{")[0]) for w in warnings)


def test_markdown_in_an_uploaded_file_name_is_shown_as_text():
    at = new_app()
    set_and_run(at, dataset="upload")
    name = f"[Click here](http://{HOST}/).zip"
    at.file_uploader(key="upload_file").upload(name, class_folder_zip(n_classes=6)).run()
    assert problems(at) == [] and not at.error, [e.value for e in at.error]
    _assert_shown_as_text(at, name)


def _with_metadata(data: bytes, **changes) -> bytes:
    """A safetensors checkpoint with fields of its metarep metadata replaced."""
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    key = next(k for k, v in header["__metadata__"].items() if v.startswith("{"))
    meta = json.loads(header["__metadata__"][key])
    meta.update(changes)
    header["__metadata__"][key] = json.dumps(meta)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data[8 + n:]


def test_markdown_in_checkpoint_names_and_metadata_is_shown_as_text():
    from metarep_core.checkpoints import checkpoint_to_bytes
    from metarep_core.learners import build_learner
    at = new_app()
    goto(at, "train")
    set_and_run(at, algorithm="protonet", n_way=5)
    good = checkpoint_to_bytes(build_learner("protonet", (1, 28, 28), 5))
    name = f"[Click here](http://{HOST}/).safetensors"
    at.file_uploader(key="upload_checkpoint").upload(name, good).run()
    assert problems(at) == [] and not at.error, [e.value for e in at.error]
    _assert_shown_as_text(at, name)  # the "loaded" message and the model caption
    lying = _with_metadata(good, algorithm=PAYLOAD)
    at.file_uploader(key="upload_checkpoint").upload("other.safetensors", lying).run()
    assert problems(at) == [] and at.error
    errors = [e.value for e in at.error if HOST in _unescaped(e.value)]
    assert errors, f"the refusal does not quote the metadata: {[e.value for e in at.error]}"
    for value in errors:
        assert plain(PAYLOAD) in value and HOST not in _unescaped(value.replace(plain(PAYLOAD), "")), value


def test_out_of_range_link_values_are_clamped_with_a_notice():
    at = new_app(n_way=999, k_shot=-3)
    assert problems(at) == []
    assert (at.session_state["n_way"], at.session_state["k_shot"]) == (50, 1)
    warnings = [w.value for w in at.warning]
    for name, given, lo, hi, used in (("n_way", 999, 1, 50, 50), ("k_shot", -3, 1, 50, 1)):
        expected = EN["sidebar.url_clamped"].format(name=name, value=plain(given), lo=lo,
                                                    hi=hi, used=used)
        assert expected in warnings, (expected, warnings)
    # The notice goes once the user picks another value.
    set_and_run(at, n_way=5)
    assert not any("n_way=999" in w.value for w in at.warning)
    assert any("k_shot=\\-3" in w.value for w in at.warning)
