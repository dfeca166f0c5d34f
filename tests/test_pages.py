"""What a reader sees of a chapter: the cells that define an experiment, no plumbing, no
stray outputs, and figures that can be cited.

- The chapters' sources: the ``parameters`` cell is hidden (folded, not removed), imports
  and plotting code are hidden, and every chapter still shows at least one cell of its
  own.
- The executed chapters of the session's tiny build (``conftest.tiny_book``): no code
  cell shows an ``execute_result``, ``stream`` or ``display_data`` output that is not a
  figure, a table meant for the reader (a cell tagged ``reader-table``), or a glued value
  (glue outputs carry ``metadata.scrapbook``). Raw numbers, quoted strings, DataFrame
  dumps and warnings fail.
- The glued figure notes: links into the site, never a path of the machine that built it.
- The "How to cite" sources: ``CITATION.cff``, ``.zenodo.json`` and the BibTeX generated
  from them agree.
"""

from __future__ import annotations

import json
import re

import nbformat
import pytest
import yaml
from helpers import READER_TABLE, REPO, cell_tags, stray_outputs

import alignbook as B

CHAPTERS = sorted(B.Book(REPO).chapters())

#: Tags with which Jupyter Book does not show a cell's code unfolded.
INPUT_HIDDEN = {"hide-input", "remove-input", "remove-cell", "hide-cell"}


# ------------------------------------------------------------------ the checker itself


def _notebook(*cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    return nb


def _code(source, outputs, tags=()):
    cell = nbformat.v4.new_code_cell(source)
    cell.outputs = [nbformat.from_dict(o) for o in outputs]
    cell.metadata["tags"] = list(tags)
    return cell


def test_stray_outputs_are_found():
    nb = _notebook(
        _code("x", [{"output_type": "execute_result", "execution_count": 1, "metadata": {},
                     "data": {"text/plain": "0.123"}}]),
        _code("print(1)", [{"output_type": "stream", "name": "stdout", "text": "1\n"}]),
        _code("df", [{"output_type": "execute_result", "execution_count": 2, "metadata": {},
                      "data": {"text/plain": "   a\n0  1", "text/html": "<table></table>"}}]),
        _code("warn()", [{"output_type": "stream", "name": "stderr", "text": "UserWarning"}],
              tags=[READER_TABLE]),
    )
    assert len(stray_outputs(nb)) == 4


def test_figures_glue_reader_tables_and_removed_cells_are_not_stray():
    glue = {"output_type": "display_data", "metadata": {"scrapbook": {"name": "x"}},
            "data": {"application/papermill.record/text/plain": "1"}}
    figure = {"output_type": "display_data", "metadata": {},
              "data": {"image/png": "iVBOR", "text/plain": "<Figure>"}}
    table = {"output_type": "execute_result", "execution_count": 1, "metadata": {},
             "data": {"text/plain": "t", "text/html": "<table></table>"}}
    nb = _notebook(_code("glue()", [glue]), _code("fig", [figure]),
                   _code("table", [table], tags=[READER_TABLE]),
                   _code("x", [{"output_type": "stream", "name": "stdout", "text": "1"}],
                         tags=["remove-cell"]),
                   _code("y", [{"output_type": "stream", "name": "stdout", "text": "1"}],
                         tags=["remove-output"]))
    assert stray_outputs(nb) == []


# ------------------------------------------------------------------ chapter sources


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_parameters_cell_is_hidden_not_removed(chapter):
    nb = nbformat.read(B.Book(REPO).notebook(chapter), as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in cell_tags(c)]
    assert "hide-input" in cell_tags(cell), f"{chapter}: tag the parameters cell hide-input"
    assert not cell_tags(cell) & {"remove-cell", "remove-input"}, chapter


PLUMBING = re.compile(r"^\s*(import |from \S+ import )|plt\.subplots|glue_figure\(|\.legend\(",
                      re.MULTILINE)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_imports_and_plotting_code_are_hidden(chapter):
    nb = nbformat.read(B.Book(REPO).notebook(chapter), as_version=4)
    shown = [c for c in nb.cells if c.cell_type == "code" and not cell_tags(c) & INPUT_HIDDEN
             and "parameters" not in cell_tags(c)]
    plumbing = [c.source.splitlines()[0] for c in shown if PLUMBING.search(c.source)]
    assert plumbing == [], f"{chapter}: cells with imports or plotting code shown: {plumbing}"
    assert shown, f"{chapter}: no cell shows the reader how an experiment is run"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_reader_tables_are_tagged_as_such(chapter):
    """A cell tagged reader-table ends in an expression that displays a formatted table."""
    nb = nbformat.read(B.Book(REPO).notebook(chapter), as_version=4)
    for cell in nb.cells:
        if READER_TABLE in cell_tags(cell):
            last = cell.source.rstrip().splitlines()[-1]
            assert not last.rstrip().endswith(";"), (chapter, last)


# ------------------------------------------------------------------ executed chapters


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_executed_chapter_has_no_stray_outputs(chapter, tiny_book):
    nb = nbformat.read(tiny_book.chapter(chapter).notebook, as_version=4)
    stray = stray_outputs(nb)
    assert stray == [], (f"{chapter}: outputs a reader should not see (end the line with `;`, "
                         f"assign to `_`, or tag a reader's table `{READER_TABLE}`):\n"
                         + "\n".join(stray))


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_figure_notes_link_into_the_site(chapter, tiny_book):
    """Each glued figure note links to the figure's PNG, PDF, CSV and provenance by paths
    of the site, and names no folder of the machine that ran the chapter."""
    from alignbook.glue import FIGURE_RECORD, SITE_FIGURES

    executed = tiny_book.chapter(chapter)
    nb = nbformat.read(executed.notebook, as_version=4)
    notes = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
             if FIGURE_RECORD in (o.get("metadata", {}).get("text/markdown") or {})]
    assert notes, f"{chapter} glued no figure note"
    for out in notes:
        record = out["metadata"]["text/markdown"][FIGURE_RECORD]
        text = "".join(out["data"]["application/papermill.record/text/markdown"])
        kinds = {path.rsplit(".", 1)[1] for path in record["files"]}
        assert {"png", "pdf", "csv", "json"} <= kinds, record
        for site_path, source in record["files"].items():
            assert site_path.startswith(f"{SITE_FIGURES}/{chapter}/"), site_path
            assert f"](/{site_path})" in text, (site_path, text)
            assert (executed.results / source).is_file(), source
        for folder in (str(executed.results), str(REPO), "/tmp/", "results/"):
            assert folder not in text, (folder, text)


# ------------------------------------------------------------------ citation metadata


def _citation() -> dict:
    return yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))


def test_zenodo_metadata_agrees_with_citation_cff():
    cff = _citation()
    zenodo = json.loads((REPO / ".zenodo.json").read_text(encoding="utf-8"))
    assert zenodo["title"] == cff["title"]
    assert zenodo["version"] == str(cff["version"])
    license_id = zenodo["license"]["id"] if isinstance(zenodo["license"], dict) else zenodo["license"]
    assert license_id.lower() == str(cff["license"]).lower()
    names = [a.get("name") or f"{a['family-names']}, {a['given-names']}" for a in cff["authors"]]
    assert [c["name"] for c in zenodo["creators"]] == names
    assert zenodo["upload_type"] == "software"
    assert any("2106.08453" in r["identifier"] for r in zenodo.get("related_identifiers", []))


def test_citation_version_is_the_package_version():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert str(_citation()["version"]) == project["version"]


def test_book_bibtex_is_generated_from_citation_cff():
    from alignbook.sphinx_ext import book_bibtex, cff_text, read_citation

    cff = read_citation(REPO)
    entry = book_bibtex(cff)
    assert entry.startswith("@software{alignbook,")
    assert f"version = {{{cff['version']}}}" in re.sub(r"\s+", " ", entry)
    assert cff["title"] in entry and cff["repository-code"] in entry
    assert entry.count("{") == entry.count("}")
    assert cff_text(cff["authors"]) == "alignbook contributors"
    assert cff_text([{"family-names": "Boopathy", "given-names": "Akhilan"},
                     {"family-names": "Fiete", "given-names": "Ila"}]) == "Akhilan Boopathy and Ila Fiete"


def test_the_paper_bibtex_is_the_bibliography_entry():
    from alignbook.sphinx_ext import bib_entry

    text = (REPO / "book" / "references.bib").read_text(encoding="utf-8")
    entry = bib_entry(text, "boopathy2022icml")
    assert entry.startswith("@inproceedings{boopathy2022icml,") and entry.endswith("}")
    assert "Input-Weight Alignment Perspective" in entry and "2022" in entry
    assert "2106.08453" in bib_entry(text, "boopathy2021arxiv")
    with pytest.raises(KeyError):
        bib_entry(text, "nosuchkey")


def test_the_cite_page_is_in_the_book_and_uses_the_generated_entries():
    assert "book/cite" in B.Book(REPO).documents()
    page = (REPO / "book" / "cite.md").read_text(encoding="utf-8")
    for needed in ("```{bibtex-entry} book", "```{bibtex-entry} boopathy2022icml", "{cff}`version`"):
        assert needed in page, needed
    version = str(_citation()["version"])
    assert version not in page, "the version is read from CITATION.cff, not written by hand"


# ------------------------------------------------------------------ figure files


def _store_with_figure(tmp_path, name="squares"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from alignbook.results import ResultStore

    store = ResultStore("demo", "tiny", {"n": 3}, root=tmp_path / "results")
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([1, 2, 3], [1, 4, 9])
    store.save_table(pd.DataFrame({"x": [1, 2, 3], "y": [1, 4, 9]}), f"{name}_data")
    store.save_figure(fig, name)
    plt.close(fig)
    return store


def test_figure_note_links_into_the_site_not_the_results_folder(tmp_path):
    from alignbook.glue import SITE_FIGURES, figure_files, figure_note

    store = _store_with_figure(tmp_path)
    files = figure_files(store, "squares", ["squares_data.csv"])
    site = f"{SITE_FIGURES}/demo/{store.hash}"
    assert list(files) == [f"{site}/squares.png", f"{site}/squares.pdf",
                           f"{site}/squares_data.csv", f"{site}/provenance.json"]
    assert all(src == f"demo/tiny/{store.hash}/{p.rsplit('/', 1)[1]}" for p, src in files.items())
    note = figure_note(store, "squares", ["squares_data.csv"])
    assert note.startswith("Reproduce this figure: `alignbook run demo --profile tiny -p n 3`.")
    for text, path in (("PNG", "squares.png"), ("PDF", "squares.pdf"), ("data (CSV)", "squares_data.csv"),
                       ("provenance (JSON)", "provenance.json")):
        assert f"[{text}](/{site}/{path})" in note, (text, note)
    assert str(tmp_path) not in note and "results/" not in note


def test_glued_note_carries_the_record_of_its_files(tmp_path):
    from IPython.core.formatters import format_display_data

    from alignbook.glue import FIGURE_RECORD, _figure_tables, _FigureNote, figure_files, figure_note

    store = _store_with_figure(tmp_path)
    tables = _figure_tables(store, "squares", "squares_data")
    assert tables == ["squares_data.csv"]
    with pytest.raises(ValueError, match="no finished table"):
        _figure_tables(store, "squares", ["nosuchtable"])
    assert _figure_tables(store, "squares", None) == ["squares_data.csv"]  # every table
    record = {"figure": "squares", "files": figure_files(store, "squares", tables)}
    data, metadata = format_display_data(_FigureNote(figure_note(store, "squares", tables), record))
    assert data["text/markdown"].startswith("Reproduce this figure")
    assert data["text/plain"] == data["text/markdown"]
    assert metadata["text/markdown"][FIGURE_RECORD] == record


def test_site_staging_copies_figure_files_and_hides_injected_parameters(tmp_path):
    from alignbook import site
    from alignbook.glue import FIGURE_RECORD, figure_files

    store = _store_with_figure(tmp_path)
    record = {"figure": "squares", "files": figure_files(store, "squares", ["squares_data.csv"])}
    note = nbformat.from_dict({"output_type": "display_data", "data": {
        "application/papermill.record/text/markdown": "note"},
        "metadata": {"scrapbook": {"name": "squares_note"}, "text/markdown": {FIGURE_RECORD: record}}})
    nb = _notebook(_code('profile = "cpu"', [], tags=["parameters"]),
                   _code('# Parameters\nprofile = "tiny"\n', [], tags=["injected-parameters"]),
                   _code("glue_figure(...)", [note]))
    nb.metadata["papermill"] = {"input_path": str(tmp_path / "in.ipynb"),
                                "output_path": str(tmp_path / "out.ipynb"), "parameters": {}}
    executed, staged = tmp_path / "executed.ipynb", tmp_path / "staging" / "book" / "demo.ipynb"
    staged.parent.mkdir(parents=True)
    nbformat.write(nb, executed)
    records = site._stage_notebook(executed, staged)
    assert records == [record]
    out = nbformat.read(staged, as_version=4)
    assert "hide-input" in out.cells[1].metadata["tags"]
    assert str(tmp_path) not in staged.read_text(encoding="utf-8")
    missing = site._stage_figures(tmp_path / "staging", store.root, "demo", records)
    assert missing == []
    for path in record["files"]:
        assert (tmp_path / "staging" / path).is_file(), path
    (store.path / "squares.pdf").unlink()
    bad = {"figure": "x", "files": {"../outside.png": "demo/tiny/x.png",
                                    f"figures/demo/{store.hash}/squares.pdf": f"demo/tiny/{store.hash}/squares.pdf"}}
    missing = site._stage_figures(tmp_path / "staging2", store.root, "demo", [bad])
    assert len(missing) == 2 and "not a path inside the site" in missing[0]


def test_figure_style_is_legible_and_opaque():
    import matplotlib as mpl

    from alignlib.experiments.plotting import FONT_SIZES, set_style

    set_style()
    for key, size in FONT_SIZES.items():
        assert mpl.rcParams[key] == size, key
    assert min(mpl.rcParams[k] for k in ("xtick.labelsize", "ytick.labelsize", "legend.fontsize")) >= 12
    assert mpl.rcParams["savefig.transparent"] is False
    for key in ("figure.facecolor", "savefig.facecolor", "axes.facecolor"):
        assert mpl.colors.to_rgba(mpl.rcParams[key]) == (1.0, 1.0, 1.0, 1.0), key
