"""The book pipeline: results store, parameter checking, papermill execution,
failure reporting and site rendering, on a small temporary book.

Tests that start a Jupyter kernel or run Jupyter Book are marked ``slow``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml
from helpers import REPO, run_cli

import alignbook as B
from alignbook import results as R
from alignbook.scorecard import save_claims

# --------------------------------------------------------------------------
# a small book
# --------------------------------------------------------------------------

MINI_CODE = '''\
import os, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from alignbook.results import ResultStore
from alignbook.glue import glue_figure, glue_number, glue_text

store = ResultStore("mini", profile, dict(n=n, scale=scale, label=label))
table = store.cached("squares", lambda: pd.DataFrame({"k": range(n), "square": [scale * k * k for k in range(n)]}))
fig, ax = plt.subplots(figsize=(3, 2))
ax.plot(table.k, table.square, "o-")
glue_figure(store, "squares", fig)
glue_number("total", float(table.square.sum()), ".1f")
glue_number("n_rows", len(table))
glue_text("profile_name", profile)
print("KERNEL_PYTHON", os.path.realpath(sys.executable), sys.prefix)
print("RESULTS_PATH", store.path)
'''

MINI_MARKDOWN = '''\
The table has {glue:text}`n_rows` rows summing to {glue:text}`total`.

:::{glue:figure} squares
:name: fig-mini-squares
:alt: Squares against k

Squares. {glue:md}`squares_note`
:::

See {numref}`fig-mini-squares`. Built with the {glue:text}`profile_name` profile.
'''


def make_notebook(path: Path, title: str, parameters: str, cells: list[tuple[str, str]]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.language_info = {"name": "python"}
    param_cell = nbformat.v4.new_code_cell(parameters)
    param_cell.metadata.tags = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\nA chapter made by the tests."), param_cell]
    for kind, source in cells:
        make = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
        nb.cells.append(make(source))
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def make_book(root: Path, chapters: dict[str, list[tuple[str, str]]] | None = None,
              profiles: dict | None = None) -> Path:
    """A book with the real _config.yml and bibliography, an intro page that cites,
    a references page, and notebook chapters (default: one chapter ``mini``)."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "_config.yml", root / "_config.yml")
    (root / "book").mkdir(exist_ok=True)
    shutil.copy(REPO / "book" / "references.bib", root / "book" / "references.bib")
    (root / "book" / "intro.md").write_text("# Mini book\n\nWide networks are lazy {cite}`jacot2018ntk`.\n")
    (root / "book" / "references.md").write_text("# References\n\n```{bibliography}\n```\n")
    if chapters is None:
        chapters = {"mini": [("code", MINI_CODE), ("markdown", MINI_MARKDOWN)]}
    params = 'profile = "cpu"\nn = 3\nscale: float = 1\nlabel = "squares"\nflag = False\nwidths = [8, 16]'
    for name, cells in chapters.items():
        make_notebook(root / "book" / f"{name}.ipynb", name.capitalize(), params, cells)
    toc = {"format": "jb-book", "root": "book/intro",
           "parts": [{"caption": "Chapters", "chapters": [{"file": f"book/{c}"} for c in chapters]},
                     {"caption": "Appendix", "chapters": [{"file": "book/references"}]}]}
    (root / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    if profiles is None:
        profiles = {"profiles": {"tiny": {"description": "tests", "chapters": {"mini": {"n": 4}}},
                                 "cpu": {"chapters": {}}}}
        profiles["profiles"]["tiny"]["chapters"] = {
            c: {"n": 4} for c in chapters if c == "mini"}
    (root / "book" / "profiles.yml").write_text(yaml.safe_dump(profiles, sort_keys=False))
    return root


@pytest.fixture
def results_root(tmp_path, monkeypatch):
    root = tmp_path / "results"
    monkeypatch.setenv(R.RESULTS_ENV, str(root))
    monkeypatch.delenv(R.RECOMPUTE_ENV, raising=False)
    return root


@pytest.fixture
def mini(tmp_path, results_root):
    return make_book(tmp_path / "bookroot")


# --------------------------------------------------------------------------
# results store
# --------------------------------------------------------------------------


def table(n=3):
    return pd.DataFrame({"width": [8 * 2**i for i in range(n)], "score": [0.5 + 0.1 * i for i in range(n)]})


def test_store_folder_is_chapter_profile_hash(results_root):
    store = R.ResultStore("alignment", "cpu", {"widths": [8, 16], "lr": 0.5})
    assert store.path == results_root / "alignment" / "cpu" / store.hash
    assert len(store.hash) == 12 and store.path.is_dir()
    # key order and numpy types do not change the hash; values do
    import numpy as np

    same = R.ResultStore("alignment", "cpu", {"lr": np.float64(0.5), "widths": np.array([8, 16])})
    assert same.hash == store.hash
    assert R.ResultStore("alignment", "cpu", {"widths": [8, 16], "lr": 1.0}).hash != store.hash
    # an integral float and the integer are the same number
    assert R.params_hash({"lr": 5.0}) == R.params_hash({"lr": 5}) != R.params_hash({"lr": 5.5})
    assert R.params_hash({"flag": True}) != R.params_hash({"flag": 1})
    assert R.ResultStore("alignment", "gpu", {"widths": [8, 16], "lr": 0.5}).path.parent.name == "gpu"
    assert store.hash == R.params_hash({"widths": [8, 16], "lr": 0.5})


def test_store_root_argument_and_env(tmp_path, results_root):
    assert R.ResultStore("c", "cpu", {}).root == results_root
    explicit = tmp_path / "elsewhere"
    assert R.ResultStore("c", "cpu", {}, root=explicit).path.is_relative_to(explicit)


def test_store_rejects_bad_names_and_values(results_root):
    with pytest.raises(ValueError, match="chapter"):
        R.ResultStore("../x", "cpu", {})
    with pytest.raises(TypeError, match="canonical"):
        R.ResultStore("c", "cpu", {"f": object()})
    with pytest.raises(ValueError, match="finite"):
        R.ResultStore("c", "cpu", {"x": float("nan")})


def test_save_and_load_table_round_trip(results_root):
    store = R.ResultStore("c", "cpu", {"a": 1})
    df = table()
    path = store.save_table(df, "scores")
    assert path == store.path / "scores.csv"
    pd.testing.assert_frame_equal(store.load_table("scores"), df)
    # a meaningful index is kept as a column
    store.save_table(df.set_index("width"), "indexed")
    assert list(store.load_table("indexed").columns) == ["width", "score"]


def test_cached_reuses_a_finished_table(results_root):
    calls = []

    def compute():
        calls.append(1)
        return table()

    first = R.ResultStore("c", "cpu", {"a": 1}).cached("scores", compute)
    again = R.ResultStore("c", "cpu", {"a": 1}).cached("scores", compute)  # a new run
    assert len(calls) == 1
    pd.testing.assert_frame_equal(first, again)
    R.ResultStore("c", "cpu", {"a": 2}).cached("scores", compute)  # other parameters
    assert len(calls) == 2


def test_recompute_env_forces_recomputation(results_root, monkeypatch):
    calls = []
    store = R.ResultStore("c", "cpu", {})
    store.cached("t", lambda: calls.append(1) or table())
    monkeypatch.setenv(R.RECOMPUTE_ENV, "1")
    store.cached("t", lambda: calls.append(1) or table())
    assert len(calls) == 2


def test_crash_between_temp_write_and_replace_leaves_nothing_trusted(results_root, monkeypatch):
    store = R.ResultStore("c", "cpu", {})

    def crash(src, dst):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(R.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        store.save_table(table(), "scores")
    monkeypatch.undo()
    assert not (store.path / "scores.csv").exists()
    assert not [p for p in store.path.iterdir() if p.name.startswith(".tmp-")]  # cleaned up
    assert not store.has_table("scores")
    calls = []
    store.cached("scores", lambda: calls.append(1) or table())
    assert calls == [1]


def test_file_written_but_not_recorded_is_not_trusted(results_root, monkeypatch):
    store = R.ResultStore("c", "cpu", {})

    def crash(*files):
        raise KeyboardInterrupt("killed before recording")

    monkeypatch.setattr(store, "_record", crash)
    with pytest.raises(KeyboardInterrupt):
        store.save_table(table(), "scores")
    monkeypatch.undo()
    assert (store.path / "scores.csv").exists()  # the file is complete but unrecorded
    with pytest.raises(R.IncompleteResultError, match="not recorded"):
        store.load_table("scores")
    calls = []
    store.cached("scores", lambda: calls.append(1) or table())
    assert calls == [1] and store.has_table("scores")


def test_edited_or_truncated_file_is_not_trusted(results_root):
    store = R.ResultStore("c", "cpu", {})
    store.save_table(table(), "scores")
    path = store.path / "scores.csv"
    path.write_text(path.read_text()[:10])
    assert not store.has_table("scores")
    with pytest.raises(R.IncompleteResultError):
        store.load_table("scores")


def test_process_killed_midway_leaves_no_trusted_file(results_root):
    """A real SIGKILL after the temporary file is written, before it is moved."""
    script = textwrap.dedent("""
        import os, signal
        import pandas as pd
        from alignbook import results as R
        store = R.ResultStore("c", "cpu", {"k": 1})
        def killed(src, dst):
            os.kill(os.getpid(), signal.SIGKILL)
        R.os.replace = killed
        store.save_table(pd.DataFrame({"x": list(range(100000))}), "big")
    """)
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ}, capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    store = R.ResultStore("c", "cpu", {"k": 1})
    leftovers = [p.name for p in store.path.iterdir() if p.name.startswith(".tmp-")]
    assert leftovers, "the killed writer should have left its temporary file"
    assert not (store.path / "big.csv").exists()
    assert store.files() == []
    calls = []
    store.cached("big", lambda: calls.append(1) or pd.DataFrame({"x": [1]}))
    assert calls == [1]


def test_provenance_has_the_keys(results_root):
    store = R.ResultStore("alignment", "cpu", {"widths": [8], "lr": 5.0})
    prov = store.provenance()
    on_disk = json.loads((store.path / "provenance.json").read_text())
    assert on_disk == prov
    for key in ("chapter", "profile", "params", "params_hash", "packages", "device", "git",
                "python", "timestamp", "files"):
        assert key in prov, key
    assert set(prov["packages"]) == {"jax", "jaxlib", "equinox", "optax", "numpy", "alignlib"}
    assert prov["packages"]["numpy"] and prov["packages"]["alignlib"]
    assert {"device_kind", "backend"} <= set(prov["device"])
    assert {"revision", "dirty"} == set(prov["git"])
    assert prov["params"] == {"widths": [8], "lr": 5.0}
    assert prov["python"] == ".".join(map(str, sys.version_info[:3]))


def test_save_figure_png_pdf_with_provenance(results_root):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    store = R.ResultStore("alignment", "cpu", {"widths": [8]})
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    paths = store.save_figure(fig, "curve")
    plt.close(fig)
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths["pdf"].read_bytes()[:5] == b"%PDF-"
    with Image.open(paths["png"]) as img:
        assert img.size == (300, 300)  # 2 inches at 150 dpi
        meta = json.loads(img.text["alignbook:provenance"])
    assert meta["params"] == {"widths": [8]} and meta["chapter"] == "alignment"
    assert set(store.files()) == {"curve.png", "curve.pdf"}


# --------------------------------------------------------------------------
# parameters and profiles
# --------------------------------------------------------------------------


def test_notebook_parameters_and_types(mini):
    params = B.Book(mini).parameters("mini")
    assert list(params) == ["profile", "n", "scale", "label", "flag", "widths"]
    assert {k: p.type for k, p in params.items()} == {
        "profile": "str", "n": "int", "scale": "float", "label": "str", "flag": "bool", "widths": "list"}
    assert params["widths"].default == [8, 16]


def test_resolve_parameters_layers_profile_and_cli(mini):
    book = B.Book(mini)
    assert B.resolve_parameters(book, "mini", "tiny") == {"profile": "tiny", "n": 4}
    got = B.resolve_parameters(book, "mini", "tiny", cli=[
        ("n", "5"), ("scale", "2"), ("label", "123"), ("flag", "true"), ("widths", "[64, 256]")])
    assert got == {"profile": "tiny", "n": 5, "scale": 2.0, "label": "123", "flag": True, "widths": [64, 256]}
    assert isinstance(got["scale"], float)
    # PyYAML reads 1e-3 as a string; a float parameter still accepts it
    assert B.resolve_parameters(book, "mini", "cpu", cli=[("scale", "1e-3")])["scale"] == 1e-3


@pytest.mark.parametrize("name, raw, expected", [
    ("n", "2.5", "expects an int"),
    ("n", "true", "expects an int"),
    ("scale", "fast", "expects a float"),
    ("flag", "1", "expects a bool"),
    ("widths", "8", "expects a list"),
    ("widths", "[8, wide]", "list of int"),
])
def test_wrong_type_is_rejected(mini, name, raw, expected):
    with pytest.raises(B.ParameterError, match=expected):
        B.resolve_parameters(B.Book(mini), "mini", "cpu", cli=[(name, raw)])


def test_unknown_parameter_lists_valid_names(mini):
    with pytest.raises(B.ParameterError) as err:
        B.resolve_parameters(B.Book(mini), "mini", "cpu", cli=[("m", "5")])
    msg = str(err.value)
    assert "'m'" in msg
    for name in ("profile", "n", "scale", "label", "flag", "widths"):
        assert f"- {name} (" in msg
    with pytest.raises(B.ParameterError, match="--profile"):
        B.resolve_parameters(B.Book(mini), "mini", "cpu", cli=[("profile", "gpu")])


def test_cli_rejects_bad_parameters_before_execution(mini, capfd, no_execution):
    rc, out, err = run_cli(capfd, "--root", str(mini), "run", "mini", "-p", "m", "5")
    assert rc == 2
    assert "no parameter 'm'" in err and "- n (int, default 3)" in err and "- widths (list" in err
    rc, out, err = run_cli(capfd, "--root", str(mini), "run", "mini", "-p", "n", "five")
    assert rc == 2 and "parameter 'n'" in err and "expects an int" in err
    rc, out, err = run_cli(capfd, "--root", str(mini), "run", "nosuch")
    assert rc == 2 and "unknown chapter 'nosuch'" in err and "mini" in err
    assert not (mini / "_build" / "runs").exists()


@pytest.mark.parametrize("chapters, expected", [
    ({"nosuch": {"n": 1}}, "unknown chapter 'nosuch'"),
    ({"mini": {"m": 1}}, "has no parameter 'm'"),
    ({"mini": {"n": "many"}}, "expects an int"),
    ({"mini": {"profile": "gpu"}}, "sets 'profile'"),
])
def test_profiles_file_is_checked(tmp_path, results_root, chapters, expected, capfd, no_execution):
    root = make_book(tmp_path / "b", profiles={"profiles": {"tiny": {"chapters": chapters}}})
    rc, out, err = run_cli(capfd, "--root", str(root), "build", "--profile", "tiny")
    assert rc == 2 and expected in err


def test_profiles_file_structure(tmp_path, results_root):
    for bad, expected in [({"tiny": {}}, "single top-level key 'profiles'"),
                          ({"profiles": {"html": {}}}, "not a usable profile name"),
                          ({"profiles": {"tiny": {"chapter": {}}}}, "may only have the keys")]:
        root = make_book(tmp_path / "b", profiles=bad)
        with pytest.raises(B.BookError, match=expected):
            B.load_profiles(B.Book(root))
    root = make_book(tmp_path / "b")
    with pytest.raises(B.BookError, match="unknown profile 'gpu'"):
        B.resolve_parameters(B.Book(root), "mini", "gpu")


def test_missing_toc_file_and_missing_parameters_cell(tmp_path, results_root, capfd):
    root = make_book(tmp_path / "b")
    (root / "book" / "mini.ipynb").unlink()
    rc, out, err = run_cli(capfd, "--root", str(root), "build", "--profile", "tiny")
    assert rc == 2 and "book/mini" in err and "neither" in err
    root = make_book(tmp_path / "c")
    nb = nbformat.read(root / "book" / "mini.ipynb", as_version=4)
    nb.cells[1].metadata.tags = []
    nbformat.write(nb, root / "book" / "mini.ipynb")
    with pytest.raises(B.BookError, match="exactly one cell tagged 'parameters'"):
        B.Book(root).parameters("mini")


def test_chapter_must_declare_profile(tmp_path, results_root):
    root = make_book(tmp_path / "b")
    make_notebook(root / "book" / "mini.ipynb", "Mini", "n = 3", [])
    with pytest.raises(B.ParameterError, match='profile = "cpu"'):
        B.resolve_parameters(B.Book(root), "mini", "tiny", profiles={"tiny": {}})


def test_reproduce_command_round_trips(mini):
    params = {"profile": "gpu", "widths": [64, 256], "lr": 0.001, "label": "123", "flag": True,
              "name": "digits", "note": "two words"}
    cmd = B.reproduce_command("mini", "gpu", params)
    assert cmd.startswith("alignbook run mini --profile gpu -p flag true -p label")
    import shlex

    words = shlex.split(cmd)
    parsed = {words[i + 1]: yaml.safe_load(words[i + 2]) for i, w in enumerate(words) if w == "-p"}
    assert parsed == {k: v for k, v in params.items() if k != "profile"}


def test_filter_toc_drops_entries_and_empty_parts():
    toc = {"format": "jb-book", "root": "book/intro",
           "parts": [{"caption": "A", "chapters": [{"file": "book/x"}]},
                     {"caption": "B", "chapters": [{"file": "book/y"}, {"file": "book/z.ipynb"}]}]}
    assert B.site._filter_toc(toc, {"book/x", "book/z"}) == {
        "format": "jb-book", "root": "book/intro", "parts": [{"caption": "B", "chapters": [{"file": "book/y"}]}]}


def test_real_book_config_is_consistent():
    """The repository's own _toc.yml, _config.yml and profiles.yml parse and agree."""
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "off"
    assert config["only_build_toc_files"] is True
    assert {"dollarmath", "amsmath", "colon_fence"} <= set(config["parse"]["myst_enable_extensions"])
    assert config["bibtex_bibfiles"] == ["book/references.bib"]
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    assert toc["root"] == "book/intro"
    profiles = yaml.safe_load((REPO / "book" / "profiles.yml").read_text())["profiles"]
    assert {"tiny", "cpu", "gpu"} <= set(profiles)
    book = B.Book(REPO)
    missing = [d for d in book.documents() if not any((REPO / f"{d}{s}").is_file() for s in (".md", ".ipynb"))]
    if not missing:  # all chapters present: the profiles must check out too
        loaded = B.load_profiles(book)
        for profile, chapters in loaded.items():
            for chapter in book.chapters():
                B.resolve_parameters(book, chapter, profile, loaded)
    # bibliography keys cited in the markdown pages exist
    import re

    bib = (REPO / "book" / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    for page in (REPO / "book").glob("*.md"):
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", page.read_text()):
            for key in group.split(","):
                assert key.strip() in keys, (page.name, key)


# --------------------------------------------------------------------------
# execution (slow: starts Jupyter kernels, runs Jupyter Book)
# --------------------------------------------------------------------------


def outputs_text(nb_path: Path) -> str:
    nb = nbformat.read(nb_path, as_version=4)
    chunks = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            chunks.append(out.get("text", ""))
            chunks.append(json.dumps(out.get("data", {})))
    return "\n".join(chunks)


@pytest.mark.ci
@pytest.mark.slow
def test_run_executes_one_chapter_with_overrides(mini, results_root, capfd):
    rc, out, err = run_cli(capfd, "--root", str(mini), "run", "mini", "--profile", "tiny", "-p", "n", "5")
    assert rc == 0, err
    expected_store = R.ResultStore("mini", "tiny", {"n": 5, "scale": 1.0, "label": "squares"})
    assert f"results: {expected_store.path}/" in out
    runs = list((mini / "_build" / "runs" / "tiny").glob("mini-*.ipynb"))
    assert len(runs) == 1 and str(runs[0]) in out
    text = outputs_text(runs[0])
    # the kernel was this interpreter, parameters were injected, numbers were glued
    assert f"KERNEL_PYTHON {os.path.realpath(sys.executable)} {sys.prefix}" in text
    assert "application/papermill.record/text/plain" in text
    assert expected_store.load_table("squares")["k"].tolist() == [0, 1, 2, 3, 4]
    assert {"squares.csv", "squares.png", "squares.pdf"} <= set(expected_store.files())
    nb = nbformat.read(runs[0], as_version=4)
    assert nb.metadata.papermill.parameters == {"profile": "tiny", "n": 5}


@pytest.mark.ci
@pytest.mark.slow
def test_failing_chapter_fails_the_build_naming_chapter_and_cell(tmp_path, results_root, capfd):
    root = make_book(tmp_path / "b", chapters={
        "mini": [("code", MINI_CODE), ("markdown", MINI_MARKDOWN)],
        "broken": [("code", "x = 1"), ("code", "ratio = n / 0")],
    })
    rc, out, err = run_cli(capfd, "--root", str(root), "build", "--profile", "tiny", "--jobs", "2")
    assert rc == 1
    # [4]: title (markdown), parameters [1], papermill's injected parameters [2], x = 1 [3]
    assert "chapter 'broken' failed in cell [4] (cell index 4 of the executed notebook)" in err
    assert "ZeroDivisionError" in err and "ratio = n / 0" in err
    assert "mini" in out and "FAILED" in out
    executed = root / "_build" / "executed" / "tiny" / "book"
    assert (executed / "mini.ipynb").is_file()
    assert (executed / "broken.failed.ipynb").is_file() and not (executed / "broken.ipynb").exists()
    assert not (root / "_build" / "tiny" / "html").exists()
    timings = json.loads((root / "_build" / "executed" / "tiny" / "timings.json").read_text())
    assert timings["broken"]["ok"] is False and timings["mini"]["ok"] is True

    # a partial build renders what has run and leaves the failed chapter out
    rc, out, err = run_cli(capfd, "--root", str(root), "build", "--profile", "tiny", "--chapters", "mini")
    assert rc == 0, err
    assert "left out of the site: book/broken" in out
    html = root / "_build" / "tiny" / "html"
    assert (html / "book" / "mini.html").is_file() and not (html / "book" / "broken.html").exists()


def test_new_writes_a_template_chapter(mini, capfd, no_execution):
    rc, out, err = run_cli(capfd, "--root", str(mini), "new", "width_demo", "--title", "Width demo")
    assert rc == 0, err
    path = mini / "book" / "width_demo.ipynb"
    assert f"Wrote {path}" in out and "- file: book/width_demo" in out
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].source.startswith("# Width demo")
    assert [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])] == [nb.cells[1]]
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    params = B.notebook_parameters(path)
    assert params["profile"].type == "str" and params["widths"].type == "list"
    assert ":name: fig-width_demo-width-sweep" in nb.cells[5].source
    assert '"width_demo"' in nb.cells[2].source
    rc, out, err = run_cli(capfd, "--root", str(mini), "new", "width_demo")
    assert rc == 2 and "not overwriting" in err


def add_template_chapter(root: Path, name: str) -> None:
    B.new_chapter_notebook(root / "book" / f"{name}.ipynb", name, name.capitalize())
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    toc["parts"][0]["chapters"].append({"file": f"book/{name}"})
    (root / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))


@pytest.mark.ci
@pytest.mark.slow
def test_build_renders_the_site_without_warnings(mini, results_root, capfd):
    add_template_chapter(mini, "template")  # the chapter template must build cleanly too
    rc, out, err = run_cli(capfd, "--root", str(mini), "build", "--profile", "tiny")
    assert rc == 0, err
    assert "mini" in out and " s" in out and "site" in out  # per-chapter and site timings
    html = mini / "_build" / "tiny" / "html"
    assert (mini / "_build" / "html").resolve() == html.resolve()  # latest build
    page = (html / "book" / "mini.html").read_text()
    from bs4 import BeautifulSoup

    article = BeautifulSoup(page, "html.parser").find("article")
    text = " ".join(article.get_text(" ", strip=True).split())
    assert "The table has 4 rows summing to 14.0 ." in text  # n = 4 from the tiny profile
    assert "Built with the tiny profile." in text
    assert "Reproduce this figure: alignbook run mini --profile tiny -p label squares -p n 4 -p scale 1 ." in text
    figure = article.find("figure", id="fig-mini-squares")
    img = figure.find("img")
    assert img["alt"] == "Squares against k" and "width: 300px" in img["style"]  # 3 in x 100 px
    assert (html / "book" / img["src"]).resolve().read_bytes()[:4] == b"\x89PNG"
    template = BeautifulSoup((html / "book" / "template.html").read_text(), "html.parser")
    assert template.find("figure", id="fig-template-width-sweep").find("img")
    log = (mini / "_build" / "tiny" / "jupyter-book.log").read_text()
    assert "WARNING" not in log
    intro = (html / "book" / "intro.html").read_text()
    assert "Neural tangent kernel" in (html / "book" / "references.html").read_text()
    assert 'href="references.html#' in intro and "Jacot <em>et al.</em>, 2018" in intro  # author-year


def test_glued_text_survives_myst_nb_literal_eval():
    """{glue:text} runs ast.literal_eval on text/plain: formatted numbers must come back
    exactly as formatted (no tuple from a thousands separator, no lost sign)."""
    from myst_nb.core.variables import format_plain_text

    for text in ["1,500", "+0.43", "0.530", "-1.2e-05", "cpu", "[64, 256]"]:
        assert format_plain_text(repr(B.glue._Formatted(None, text)), "") == text
    assert B.reproduce_command("x", "cpu", {"a": ""}).endswith("-p a ''")


def test_build_folder_can_be_moved_so_tests_never_touch_the_readers_build(tmp_path, monkeypatch):
    repo = Path(__file__).resolve().parents[1]
    assert B.Book(repo).build_dir == (repo / "_build").resolve() or os.environ.get(B.BUILD_ENV)
    monkeypatch.setenv(B.BUILD_ENV, str(tmp_path / "elsewhere"))
    book = B.Book(repo)
    assert book.build_dir == (tmp_path / "elsewhere").resolve()
    assert book.html_dir("cpu") == (tmp_path / "elsewhere" / "cpu" / "html").resolve()
    assert book.executed_path("cpu", "rules").is_relative_to(tmp_path / "elsewhere")


CLAIM_CODE = '''\
from alignbook.scorecard import save_claims
from alignlib import claims as C
save_claims(store, [C.Claim("mini", "squares-grow", "Squares grow", "total", float(table.square.sum()),
                              None, None, f"{table.square.sum():.1f}", "positive",
                              C.verdict_of_checks([table.square.sum() > 0]), profile, "fig-mini-squares")])
'''


@pytest.mark.ci
def test_scorecard_page_lists_the_claims_of_the_rendered_chapters(tmp_path, results_root, capfd):
    from bs4 import BeautifulSoup

    from alignlib import claims as C

    root = make_book(tmp_path / "bookroot", chapters={
        "mini": [("code", MINI_CODE + CLAIM_CODE), ("markdown", MINI_MARKDOWN)]})
    (root / "book" / "scorecard.md").write_text(
        f"# Scorecard\n\n{B.scorecard.VERDICTS_MARK}\n\n{B.scorecard.SCORECARD_MARK}\n")
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    toc["parts"].insert(0, {"caption": "Results", "chapters": [{"file": "book/scorecard"}]})
    (root / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    rc, out, err = run_cli(capfd, "--root", str(root), "build", "--profile", "tiny")
    assert rc == 0, err
    page = BeautifulSoup((root / "_build" / "tiny" / "html" / "book" / "scorecard.html").read_text(),
                         "html.parser").find("article")
    text = " ".join(page.get_text(" ", strip=True).split())
    assert "Squares grow" in text and "total: 14.0" in text and C.HOLDS in text
    assert all(v in text for v in C.VERDICTS)  # the vocabulary, from its one definition
    link = [a for a in page.find_all("a") if "fig-mini-squares" in a.get("href", "")]
    assert link and link[0]["href"].startswith("mini.html#")
    assert "scorecard:" not in text  # no marker left
    rc, out, err = run_cli(capfd, "--root", str(root), "claims", "--profile", "tiny")
    assert rc == 0 and "mini/squares-grow" in out and C.HOLDS in out
    # a later one-off run with other parameters does not replace the built book's record
    other = R.ResultStore("mini", "tiny", {"n": 99})
    save_claims(other, [C.Claim("mini", "other-run", "s", "q", 1.0, None, None, "1", "e",
                                  C.DOES_NOT_HOLD, "tiny")])
    rc, out, err = run_cli(capfd, "--root", str(root), "claims", "--profile", "tiny")
    assert rc == 0 and "mini/squares-grow" in out and "other-run" not in out


@pytest.mark.ci
@pytest.mark.slow
def test_chapters_that_time_themselves_run_alone_after_the_others(tmp_path, results_root, capfd):
    """With --jobs 2, a chapter whose metadata says run_alone starts only after every other
    chapter has finished, so nothing shares the cores while it measures times."""
    stamp = ('import time, pathlib\n'
             'pathlib.Path(os.environ["STAMPS"], "{name}").write_text(f"{{time.time()}} ")\n'
             'time.sleep(2)\n'
             'with open(pathlib.Path(os.environ["STAMPS"], "{name}"), "a") as f: f.write(str(time.time()))')
    chapters = {name: [("code", "import os\n" + stamp.format(name=name))] for name in ("a", "b", "timed")}
    root = make_book(tmp_path / "b", chapters=chapters)
    nb_path = root / "book" / "timed.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.metadata["alignbook"] = {"run_alone": True}
    nbformat.write(nb, nb_path)
    assert B.Book(root).runs_alone("timed") and not B.Book(root).runs_alone("a")
    stamps = tmp_path / "stamps"
    stamps.mkdir()
    os.environ["STAMPS"] = str(stamps)
    try:
        rc, out, err = run_cli(capfd, "--root", str(root), "build", "--profile", "tiny", "--jobs", "2",
                               "--no-site")
    finally:
        del os.environ["STAMPS"]
    assert rc == 0, err
    span = {n: [float(v) for v in (stamps / n).read_text().split()] for n in ("a", "b", "timed")}
    assert span["a"][0] < span["b"][1] and span["b"][0] < span["a"][1]  # a and b overlapped
    assert span["timed"][0] >= max(span["a"][1], span["b"][1])  # timed ran after both
    assert "timed" in out and "running alone" in out
