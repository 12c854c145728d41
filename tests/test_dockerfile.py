"""The Dockerfile cannot be built here (no Docker engine), so check what it promises:
the same pinned requirements.txt and the same entry point as `make run` (the README's
command), CPU-only torch at the pinned version, a non-root user, port 8501 and a health
check on Streamlit's /_stcore/health; and a .dockerignore that keeps .venv & co out of
the build context without dropping what the app needs."""
from __future__ import annotations

import fnmatch
import json
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """[(INSTRUCTION, arguments)] with comments dropped and `\\` continuations joined."""
    instructions, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        current = ""
    assert not current, f"Dockerfile ends inside a line continuation: {current!r}"
    return instructions


def command_words(args: str) -> list[str]:
    """Words of a CMD/RUN/HEALTHCHECK CMD, in exec (JSON) or shell form."""
    return json.loads(args) if args.startswith("[") else shlex.split(args)


def shell_commands(run: str) -> list[list[str]]:
    """The simple commands of a shell-form RUN, split at && ; || | (quotes respected)."""
    lexer = shlex.shlex(run, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands, words = [], []
    for token in lexer:
        if token in ("&&", ";", "||", "|"):
            commands.append(words)
            words = []
        else:
            words.append(token)
    return [c for c in commands + [words] if c]


def pinned_requirements() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"requirements.txt line {line!r} is not pinned with =="
            pins[name.strip().lower()] = version.strip()
    return pins


def makefile_run_command() -> str:
    text = (ROOT / "Makefile").read_text()
    match = re.search(r"^run:.*\n((?:\t.*\n?)+)", text, re.MULTILINE)
    assert match, "Makefile has no `run` target"
    return match.group(1)


@pytest.fixture(scope="module")
def instructions():
    assert DOCKERFILE.is_file(), "Dockerfile is missing"
    return parse_dockerfile(DOCKERFILE.read_text())


def _all(instructions, keyword):
    return [args for kw, args in instructions if kw == keyword]


def test_parser_joins_continuations_and_drops_comments():
    parsed = parse_dockerfile("# c\nFROM a\nRUN x \\\n  && y\n")
    assert parsed == [("FROM", "a"), ("RUN", "x  && y")]


def test_shell_commands_split():
    assert shell_commands('a -c "x; y" && b 1;c') == [["a", "-c", "x; y"], ["b", "1"], ["c"]]


def test_slim_python_311_base(instructions):
    (base,) = _all(instructions, "FROM")
    assert re.fullmatch(r"python:3\.11[\w.-]*-slim[\w.-]*", base), base


def test_installs_the_same_pinned_requirements_as_the_makefile(instructions):
    copies = [i for i, (kw, args) in enumerate(instructions)
              if kw == "COPY" and "requirements.txt" in args.split()[:-1]]
    installs = [i for i, (kw, args) in enumerate(instructions)
                if kw == "RUN" and re.search(r"pip install (.* )?-r requirements\.txt", args)]
    assert copies and installs, "Dockerfile must COPY requirements.txt and `pip install -r requirements.txt`"
    assert copies[0] < installs[0], "requirements.txt is installed before it is copied in"
    assert "-r requirements.txt" in (ROOT / "Makefile").read_text()


def test_torch_is_the_cpu_build_of_the_pinned_version(instructions):
    pins = pinned_requirements()
    runs = " && ".join(_all(instructions, "RUN"))
    torch_specs = re.findall(r"\btorch==([\w.+]+)", runs)
    assert torch_specs, "Dockerfile does not install torch==<pin> explicitly"
    assert set(torch_specs) == {pins["torch"]}, (torch_specs, pins["torch"])
    assert "--index-url https://download.pytorch.org/whl/cpu" in runs


def test_every_package_installed_is_pinned_in_requirements(instructions):
    """No extra or unpinned package sneaks into the image beside requirements.txt."""
    pins = pinned_requirements()
    for run in _all(instructions, "RUN"):
        for words in shell_commands(run):
            if words[:2] != ["pip", "install"] and words[1:4] != ["-m", "pip", "install"]:
                continue
            args = words[words.index("install") + 1:]
            skip_next = False
            for word in args:
                if skip_next:
                    skip_next = False
                    continue
                if word in ("-r", "--index-url", "--extra-index-url", "-c"):
                    skip_next = True
                    continue
                if word.startswith("-"):
                    continue
                name, sep, version = word.partition("==")
                assert sep and pins.get(name.lower()) == version, (
                    f"Dockerfile installs {word!r}; requirements.txt pins {pins.get(name.lower())!r}")


def test_same_entry_point_as_make_run(instructions):
    make_run = makefile_run_command()
    entry = re.search(r"-m app\.serve run (\S+)", make_run)
    assert entry, f"`make run` does not call `python -m app.serve run`: {make_run!r}"
    (cmd,) = _all(instructions, "CMD")
    words = command_words(cmd)
    assert "app.serve" in words and words[words.index("app.serve") + 1:][:2] == ["run", entry.group(1)], words
    assert (ROOT / entry.group(1)).is_file(), f"entry point {entry.group(1)} does not exist"
    options = dict(zip(words[::1], words[1::1]))
    assert options.get("--server.address") == "0.0.0.0", words
    assert options.get("--server.port") == "8501", words


def test_readme_quick_start_uses_make_run():
    """The README's start command is the Makefile target checked above."""
    readme_path = ROOT / "README.md"
    assert readme_path.is_file(), "README.md is missing: its Quick start must be `make run` / `make test`"
    readme = readme_path.read_text()
    assert "make run" in readme and "make test" in readme


def test_exposes_8501_and_checks_health(instructions):
    assert "8501" in " ".join(_all(instructions, "EXPOSE")).split()
    (health,) = _all(instructions, "HEALTHCHECK")
    assert "CMD" in health.split()
    assert "http://localhost:8501/_stcore/health" in health


def test_runs_as_non_root(instructions):
    keywords = [kw for kw, _ in instructions]
    users = [args for kw, args in instructions if kw == "USER"]
    assert users, "Dockerfile never switches away from root"
    assert users[-1].split(":")[0] not in ("root", "0"), users[-1]
    assert keywords.index("USER") < keywords.index("CMD")


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore matching, enough for plain and `**/` patterns: a pattern
    that matches a directory excludes what is below it; the last matching line wins."""
    parts = path.split("/")
    ignored = False
    for line in patterns:
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        if pattern.startswith("**/"):  # at any depth
            pattern = pattern[3:]
            subpaths = ["/".join(parts[i:j]) for i in range(len(parts)) for j in range(i + 1, len(parts) + 1)]
        else:  # from the context root
            subpaths = ["/".join(parts[:j]) for j in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatchcase(sub, pattern) for sub in subpaths):
            ignored = not negate
    return ignored


def test_dockerignore_matcher():
    assert _ignored("a/b/__pycache__/x.pyc", ["**/__pycache__"])
    assert _ignored(".venv/bin/python", [".venv"])
    assert not _ignored("app/main.py", [".venv", "**/__pycache__"])
    assert not _ignored("tests/keep.py", ["tests", "!tests/keep.py"])


def test_dockerignore_keeps_venv_out_and_the_app_in():
    assert DOCKERIGNORE.is_file(), ".dockerignore is missing"
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.strip().startswith("#")]
    for path in (".venv/bin/python", ".git/HEAD", "test-artifacts/screenshots/train.png",
                 "app/__pycache__/main.cpython-311.pyc", ".pytest_cache/v/x"):
        assert _ignored(path, patterns), f"{path} would be sent to the Docker build"
    for path in ("app/main.py", "metarep_core/__init__.py", "requirements.txt",
                 "assets/checkpoints/protonet_glyphs_5w1s.safetensors",
                 "assets/data/omniglot_background_28.npz", "assets/data/LICENSE-omniglot.txt"):
        assert not _ignored(path, patterns), f".dockerignore drops {path}, which the image needs"


def test_build_time_warm_up_calls_what_the_core_defines(instructions):
    """The image warms its caches with `python -c ...`; a renamed core function would
    only break `docker build`, which cannot run here, so check the names statically."""
    import ast

    snippets = [m.group(1) for run in _all(instructions, "RUN")
                for m in re.finditer(r'python -c "([^"]+)"', run)]
    assert snippets, "no build-time warm-up step"
    for snippet in snippets:
        tree = ast.parse(snippet)
        imported = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    imported[alias.asname or alias.name] = (node.module, alias.name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id in imported:
                    module, name = imported[func.id]
                    source = _module_source(module)
                elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
                        and func.value.id in imported:
                    module, sub = imported[func.value.id]
                    module, name = f"{module}.{sub}", func.attr
                    source = _module_source(module)
                else:
                    continue
                assert re.search(rf"^def {name}\(", source, re.MULTILINE) or \
                    re.search(rf"^from .* import .*\b{name}\b", source, re.MULTILINE), f"{module} defines no {name}()"


def _module_source(module: str) -> str:
    path = ROOT / Path(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate.read_text()
    raise AssertionError(f"the Dockerfile's warm-up imports {module}, which does not exist")
