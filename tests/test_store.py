"""The run store (metarep_core/store), every test on SQLite and on a real PostgreSQL
server that the tests start themselves (tests/pg_harness.py). If PostgreSQL cannot
start, the PostgreSQL half fails with the reason: it is never skipped."""
from __future__ import annotations

import csv
import io
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from metarep_core import limits
from metarep_core.errors import MetaRepError
from metarep_core.store import SCHEMA_VERSION, RunStore, database_url
from metarep_core.store.schema import classes, store_info

try:  # tests/ is a rootdir on sys.path (no __init__.py) ...
    from pg_harness import PostgresServer, PostgresUnavailable
except ImportError:  # ... or a package
    from tests.pg_harness import PostgresServer, PostgresUnavailable

WORKER = Path(__file__).with_name("store_worker.py")


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL server for the session; each test gets a database of its own."""
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as err:
        pytest.fail(f"PostgreSQL could not start, so the run store is untested on it: {err}")
    print(f"\nPostgreSQL started in {server.startup_s:.2f} s on 127.0.0.1:{server.port}", file=sys.stderr)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'runs.sqlite3'}"
        return
    server = request.getfixturevalue("postgres")
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = server.create_database(name)
    yield url
    server.drop_database(name)


@pytest.fixture
def store(store_url):
    s = RunStore(store_url)
    yield s
    s.close()


# ----------------------------------------------------------------------------- runs
def test_a_run_keeps_settings_and_page_state_for_another_server(store, store_url):
    token = store.create_run()
    store.save_settings(token, {"dataset": "glyphs", "algorithm": "maml", "n_way": 5, "lang": "zh"})
    store.save_page_state(token, "adaptation", {"step": 3})
    store.save_page_state(token, "embedding", {"method": "umap", "dims": 3})
    store.save_page_state(token, "adaptation", {"step": 4})  # replaces that page's, keeps the other
    other = RunStore(store_url)  # a second server: its own engine and connections
    try:
        run = other.load_run(token)
    finally:
        other.close()
    assert run.token == token
    assert run.settings == {"dataset": "glyphs", "algorithm": "maml", "n_way": 5, "lang": "zh"}
    assert run.page_state == {"adaptation": {"step": 4}, "embedding": {"method": "umap", "dims": 3}}
    assert run.updated > run.created and run.created.tzinfo is not None
    assert run.class_code is None and run.blobs == ()


def test_tokens_are_unguessable_and_unknown_or_malformed_ones_refused(store):
    tokens = {store.create_run() for _ in range(50)}
    assert len(tokens) == 50
    assert all(len(t) == 32 and t.replace("-", "").replace("_", "").isalnum() for t in tokens)
    with pytest.raises(MetaRepError, match="there is no run"):
        store.load_run("A" * 32)
    with pytest.raises(MetaRepError, match="is not a run token"):
        store.load_run("x' OR '1'='1")
    with pytest.raises(MetaRepError, match="there is no run"):
        store.save_settings("B" * 32, {"seed": 1})


def test_settings_and_page_state_are_refused_past_their_limit_or_not_json(store, monkeypatch):
    token = store.create_run()
    monkeypatch.setattr(limits, "STORE_JSON_MAX_CHARS", 100)
    with pytest.raises(MetaRepError, match=r"at most 100 are allowed"):
        store.save_settings(token, {"x": "a" * 200})
    with pytest.raises(MetaRepError, match="cannot be stored as JSON"):
        store.save_page_state(token, "compare", {"loss": float("nan")})
    with pytest.raises(MetaRepError, match="must be a mapping"):
        store.save_settings(token, ["glyphs"])
    assert store.load_run(token).settings == {} and store.load_run(token).page_state == {}


# ----------------------------------------------------------------------------- blobs
@pytest.fixture(scope="module")
def small_learner():
    from metarep_core.learners import build_learner
    import torch
    torch.manual_seed(0)
    return build_learner("protonet", (1, 28, 28), 5)


def test_a_checkpoint_comes_back_only_through_load_checkpoint_with_expectations(store, small_learner):
    import torch
    from metarep_core.checkpoints import checkpoint_to_bytes
    token = store.create_run()
    data = checkpoint_to_bytes(small_learner, dataset="glyphs", steps=7)
    info = store.put_checkpoint(token, "protonet|glyphs|5|1x28x28", data, name="trained.safetensors")
    assert info.size == len(data) and store.load_run(token).blobs == (info,)
    learner, meta = store.get_checkpoint(token, "protonet|glyphs|5|1x28x28", algorithm="protonet", n_way=5,
                                         input_shape=(1, 28, 28), task="classification")
    assert meta["steps"] == 7
    for key, value in small_learner.state_dict().items():
        assert torch.equal(learner.state_dict()[key], value), key
    with pytest.raises(MetaRepError, match="expected 10"):
        store.get_checkpoint(token, "protonet|glyphs|5|1x28x28", algorithm="protonet", n_way=10,
                             input_shape=(1, 28, 28), task="classification")
    with pytest.raises(MetaRepError, match="is for protonet, expected maml"):
        store.get_checkpoint(token, "protonet|glyphs|5|1x28x28", algorithm="maml", n_way=5,
                             input_shape=(1, 28, 28), task="classification")
    with pytest.raises(MetaRepError, match="keeps no checkpoint in slot"):
        store.get_checkpoint(token, "other", algorithm="protonet", n_way=5, input_shape=(1, 28, 28),
                             task="classification")


def test_a_pickle_is_refused_before_it_is_stored(store, small_learner):
    import pickle
    token = store.create_run()
    with pytest.raises(MetaRepError):
        store.put_checkpoint(token, "slot", pickle.dumps({"weights": [1.0, 2.0]}), name="evil.pt")
    assert store.load_run(token).blobs == ()


def test_datasets_round_trip_and_replace_their_slot(store):
    token = store.create_run()
    zip_bytes = b"PK\x03\x04" + bytes(range(256)) * 40
    store.put_dataset(token, "upload", "letters.zip", zip_bytes)
    got = store.get_dataset(token, "upload")
    assert (got.name, got.data) == ("letters.zip", zip_bytes)
    store.put_dataset(token, "upload", "letters2.zip", b"PK\x03\x04second")
    assert store.get_dataset(token, "upload").data == b"PK\x03\x04second"
    assert [(b.slot, b.name) for b in store.load_run(token).blobs] == [("upload", "letters2.zip")]


def test_blob_limits_per_blob_and_per_run_name_the_limit(store, monkeypatch):
    token = store.create_run()
    monkeypatch.setattr(limits, "STORE_DATASET_MAX_BYTES", 2 * 2**20)
    with pytest.raises(MetaRepError, match=r"at most 2 MB per dataset"):
        store.put_dataset(token, "upload", "big.zip", b"x" * (2 * 2**20 + 1))
    monkeypatch.setattr(limits, "STORE_RUN_MAX_BYTES", 3 * 2**20)
    store.put_dataset(token, "upload", "a.zip", b"a" * (2 * 2**20))
    store.put_dataset(token, "upload", "a.zip", b"b" * (2 * 2**20))  # a replacement is not counted twice
    with pytest.raises(MetaRepError, match=r"at most 3 MB per run"):
        store.put_dataset(token, "drawing", "d.npy", b"c" * (2 * 2**20))
    monkeypatch.setattr(limits, "STORE_RUN_MAX_BLOBS", 2)
    store.put_dataset(token, "drawing", "d.npy", b"small")
    with pytest.raises(MetaRepError, match=r"at most 2 are kept per run"):
        store.put_dataset(token, "third", "e.npy", b"small")
    assert sorted(b.slot for b in store.load_run(token).blobs) == ["drawing", "upload"]
    assert store.get_dataset(token, "upload").data[:1] == b"b"


# ----------------------------------------------------------------------------- answers
def test_answers_are_numbered_per_exercise_and_checked(store, monkeypatch):
    token = store.create_run()
    assert store.record_answer(token, "inner_loop", 2, "higher", correct=False, seconds=12.5) == 1
    assert store.record_answer(token, "inner_loop", 2, "lower", correct=True, seconds=3) == 2
    assert store.record_answer(token, "families", 1, {"pick": ["maml", "anil"]}) == 1
    got = store.run_answers(token)
    assert [(a.lesson, a.step, a.attempt, a.answer, a.correct, a.seconds) for a in got] == [
        ("inner_loop", 2, 1, "higher", False, 12.5), ("inner_loop", 2, 2, "lower", True, 3.0),
        ("families", 1, 1, {"pick": ["maml", "anil"]}, None, None)]
    for bad, match in ((dict(lesson="../x"), "lesson id"), (dict(step=0), "step 0"),
                       (dict(seconds=float("inf")), "seconds"), (dict(correct="yes"), "correct"),
                       (dict(answer="z" * 2000), "at most 1,000")):
        args = dict(lesson="inner_loop", step=2, answer="higher", correct=None, seconds=None) | bad
        with pytest.raises(MetaRepError, match=match):
            store.record_answer(token, **args)
    monkeypatch.setattr(limits, "STORE_RUN_MAX_ANSWERS", 3)
    with pytest.raises(MetaRepError, match="3 answers, the most kept per run"):
        store.record_answer(token, "families", 1, "maml")
    assert len(store.run_answers(token)) == 3


# ----------------------------------------------------------------------------- classes
def test_a_teacher_sees_the_class_and_students_only_what_is_revealed(store):
    code, key = store.create_class()
    assert len(code) == 6 and code.isalnum() and code.isupper()
    ada, bob, cy = (store.join_class(code, n) for n in ("Ada", "  Bob   Lee ", "Cy"))
    assert store.load_run(bob).student == "Bob Lee" and store.load_run(bob).class_code == code
    store.record_answer(ada, "inner_loop", 2, "higher", correct=False, seconds=10)
    store.record_answer(ada, "inner_loop", 2, "lower", correct=True, seconds=4)   # her last answer counts
    store.record_answer(bob, "inner_loop", 2, "lower", correct=True, seconds=8)
    store.record_answer(cy, "inner_loop", 2, "higher", correct=False, seconds=30)
    store.record_answer(cy, "families", 1, "maml", correct=True)
    rows = store.class_answers(code.lower(), key)  # the code is not case-sensitive
    assert [(r.student, r.lesson, r.attempt, r.answer) for r in rows] == [
        ("Ada", "inner_loop", 1, "higher"), ("Ada", "inner_loop", 2, "lower"),
        ("Bob Lee", "inner_loop", 1, "lower"), ("Cy", "families", 1, "maml"), ("Cy", "inner_loop", 1, "higher")]
    assert [a.answer for a in store.run_answers(bob)] == ["lower"]  # a student's own answers only
    with pytest.raises(MetaRepError, match="not the teacher key"):
        store.class_answers(code, key[:-1] + ("A" if key[-1] != "A" else "B"))
    with pytest.raises(MetaRepError, match="not revealed yet"):
        store.answer_summary(code, "inner_loop", 2)
    teacher = store.answer_summary(code, "inner_loop", 2, teacher_key=key)
    assert (teacher.students, teacher.answered, teacher.correct) == (3, 3, 2)
    assert teacher.distribution == (("lower", 2), ("higher", 1)) and teacher.median_seconds == 8
    assert not teacher.revealed
    store.set_revealed(code, key, "inner_loop", 2)
    student_view = store.answer_summary(code, "inner_loop", 2)
    assert student_view.revealed and student_view.distribution == teacher.distribution
    with pytest.raises(MetaRepError, match="not revealed yet"):
        store.answer_summary(code, "families", 1)
    store.set_revealed(code, key, "inner_loop", 2, revealed=False)
    with pytest.raises(MetaRepError, match="not revealed yet"):
        store.answer_summary(code, "inner_loop", 2)
    with pytest.raises(MetaRepError, match="not the teacher key"):
        store.set_revealed(code, "guess", "families", 1)
    with pytest.raises(MetaRepError, match="there is no class"):
        store.join_class("ZZZZZZ" if code != "ZZZZZZ" else "YYYYYY", "Dee")


def test_a_teachers_page_gets_every_exercise_summary_with_one_key(store):
    code, key = store.create_class()
    ada, bob = store.join_class(code, "Ada"), store.join_class(code, "Bob")
    store.record_answer(ada, "families", 2, "maml", correct=False)
    store.record_answer(bob, "families", 2, "protonet", correct=True)
    store.record_answer(bob, "inner_loop", 2, "higher", correct=True, seconds=3)
    store.set_revealed(code, key, "inner_loop", 2)
    wanted = [("families", 2), ("inner_loop", 2), ("memory", 2)]
    got = store.answer_summaries(code, key, wanted)
    assert got == [store.answer_summary(code, lesson, step, teacher_key=key) for lesson, step in wanted]
    assert [(s.answered, s.correct, s.distribution, s.revealed) for s in got] == [
        (2, 1, (("maml", 1), ("protonet", 1)), False), (1, 1, (("higher", 1),), True), (0, 0, (), False)]
    with pytest.raises(MetaRepError, match="not the teacher key"):
        store.answer_summaries(code, "guess", wanted)
    with pytest.raises(MetaRepError, match="step 0 is not allowed"):
        store.answer_summaries(code, key, [("families", 0)])


def test_the_teacher_key_is_stored_only_as_a_hash(store):
    code, key = store.create_class()
    with store.engine.connect() as conn:
        stored = conn.execute(select(classes.c.key_hash).where(classes.c.code == code)).scalar()
        every_text = " ".join(str(v) for row in conn.execute(select(classes)).all() for v in row)
    assert stored.startswith("scrypt$") and key not in every_text
    assert store.class_students(code, key) == []


def test_names_are_length_limited_printable_and_unique_in_a_class(store):
    code, _ = store.create_class()
    store.join_class(code, "Ada")
    with pytest.raises(MetaRepError, match="already taken"):
        store.join_class(code, " Ada ")
    with pytest.raises(MetaRepError, match="at most 40 are allowed"):
        store.join_class(code, "n" * 41)
    with pytest.raises(MetaRepError, match="control"):
        store.join_class(code, "Eve\u202eevil")
    with pytest.raises(MetaRepError, match="is empty"):
        store.join_class(code, "   ")
    store.join_class(code, "<b>Mallory</b>")  # kept as text; the page shows it escaped


def test_csv_export_has_every_attempt_and_no_formulas(store):
    code, key = store.create_class()
    a = store.join_class(code, "=HYPERLINK(\"http://x\")")
    b = store.join_class(code, "李雷")
    store.record_answer(a, "inner_loop", 2, "+1", correct=False, seconds=2.25)
    store.record_answer(b, "inner_loop", 2, {"class": 3}, correct=True)
    rows = list(csv.reader(io.StringIO(store.export_csv(code, key))))
    assert rows[0] == ["student", "lesson", "step", "attempt", "answer", "correct", "seconds", "time"]
    assert rows[1][:7] == ["'=HYPERLINK(\"http://x\")", "inner_loop", "2", "1", "'+1", "false", "2.2"]
    assert rows[2][:7] == ["李雷", "inner_loop", "2", "1", '{"class": 3}', "true", ""]
    assert len(rows) == 3
    with pytest.raises(MetaRepError, match="not the teacher key"):
        store.export_csv(code, "")


# ----------------------------------------------------------------------------- schema
def test_the_schema_is_created_once_and_a_newer_one_refused(store_url):
    first = RunStore(store_url)
    token = first.create_run()
    assert first.found_version == 0
    second = RunStore(store_url)
    assert second.found_version == SCHEMA_VERSION and second.load_run(token).token == token
    with second.engine.begin() as conn:
        conn.execute(update(store_info).where(store_info.c.key == "schema_version").values(value="99"))
    first.close(), second.close()
    with pytest.raises(MetaRepError, match="schema version 99; this version of MetaRep reads versions up to 1"):
        RunStore(store_url)


# ----------------------------------------------------------------------------- two servers
def run_workers(store_url: str, token: str, tags, n: int, go: Path) -> None:
    """``tests/store_worker.py`` in one process per tag, released together; each must exit 0."""
    workers = [subprocess.Popen([sys.executable, str(WORKER), store_url, token, tag, str(n), str(go)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for tag in tags]
    try:
        for w in workers:  # all are ready before any is released
            assert w.stdout.readline().strip() == "ready", w.stderr.read()
        go.touch()
        outcomes = [w.communicate(timeout=300) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    assert [w.returncode for w in workers] == [0] * len(workers), [err[-2000:] for _, err in outcomes]


def test_servers_starting_together_on_a_new_store_create_it_once(store_url, tmp_path):
    run_workers(store_url, "-", ("a", "b", "c"), 5, tmp_path / "go")
    store = RunStore(store_url)
    try:
        assert store.found_version == SCHEMA_VERSION
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM runs")).scalar() == 15
            assert conn.execute(text("SELECT COUNT(*) FROM store_info")).scalar() == 1
    finally:
        store.close()


def test_two_server_processes_writing_one_run_lose_nothing(store, store_url, tmp_path):
    token = store.create_run()
    run_workers(store_url, token, ("a", "b"), 100, tmp_path / "go")
    got = store.run_answers(token)
    assert sorted(a.attempt for a in got) == list(range(1, 201))  # numbered one writer at a time
    assert {a.answer for a in got} == {f"{tag}-{i}" for tag in "ab" for i in range(100)}
    assert store.load_run(token).page_state == {"a": {"i": 99}, "b": {"i": 99}}  # no page lost
    with store.engine.connect() as conn:  # the data on disk is whole
        check = "PRAGMA integrity_check" if store.backend == "sqlite" else "SELECT 'ok'"
        assert conn.execute(text(check)).scalar() == "ok"


# ----------------------------------------------------------------------------- where it lives
def test_the_default_store_is_a_sqlite_file_in_the_cache_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("METAREP_DB_URL", raising=False)
    monkeypatch.setenv("METAREP_CACHE", str(tmp_path / "cache"))
    assert database_url() == f"sqlite:///{tmp_path / 'cache' / 'runs.sqlite3'}"
    store = RunStore()
    store.create_run()
    store.close()
    made = (tmp_path / "cache" / "runs.sqlite3").stat()
    assert made.st_size > 0 and made.st_mode & 0o077 == 0  # students' data: the app's user only
    monkeypatch.setenv("METAREP_DB_URL", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    RunStore().close()
    assert (tmp_path / "elsewhere.db").exists()


def test_other_databases_are_refused_without_showing_the_password(monkeypatch):
    monkeypatch.setenv("METAREP_DB_URL", "mysql://teacher:s3cret@db.example/metarep")
    with pytest.raises(MetaRepError, match="mysql database; allowed: postgresql or sqlite") as err:
        RunStore()
    assert "s3cret" not in str(err.value)
    with pytest.raises(MetaRepError, match="is not a file"):
        RunStore("sqlite:///:memory:")
    with pytest.raises(MetaRepError, match="not a database URL"):
        RunStore("just words")
    from metarep_core.store.engine import make_engine
    for given in ("postgres://u:p@127.0.0.1:1/x", "postgresql+psycopg2://u:p@127.0.0.1:1/x"):
        assert make_engine(given).url.drivername == "postgresql+psycopg"  # the driver this project ships


def test_the_readme_quotes_the_store_limits():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Run store", 1)[1].split("\n## ", 1)[0]
    mb = lambda n: f"{n // 2**20} MB"  # noqa: E731
    for quoted in (f"| {mb(limits.CHECKPOINT_MAX_BYTES)} / {mb(limits.STORE_DATASET_MAX_BYTES)} |",
                   f"| {mb(limits.STORE_RUN_MAX_BYTES)}, at most {limits.STORE_RUN_MAX_BLOBS} of them |",
                   f"| {limits.STORE_JSON_MAX_CHARS:,} characters |",
                   f"| {limits.STORE_ANSWER_MAX_CHARS:,} characters / {limits.STORE_RUN_MAX_ANSWERS:,} |",
                   f"| {limits.STORE_NAME_MAX_CHARS} characters,"):
        assert quoted in section, quoted
