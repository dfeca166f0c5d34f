"""alignbook: the tooling that turns the library's experiments into the executable book.

The three layers of this repository, each importing only the ones above it:

1. :mod:`alignlib` - the science: layers, models, learning rules, training, the
   alignment score, infinite-width kernels, data, statistics, the claim vocabulary.
2. :mod:`alignlib.experiments` - one module per chapter: the experiment as functions
   that return tidy tables, figures and scorecard records.
3. :mod:`alignbook` - this package: the results store (:mod:`~alignbook.results`), the
   sweep runner (:mod:`~alignbook.sweep`), the build pipeline
   (:mod:`~alignbook.pipeline`), the chapters' glue helpers (:mod:`~alignbook.glue`),
   the scorecard files (:mod:`~alignbook.scorecard`), site rendering
   (:mod:`~alignbook.site`, :mod:`~alignbook.sphinx_ext`) and the ``alignbook``
   command (:mod:`~alignbook.cli`).

The library never imports this package (a test checks it).
"""

from alignbook.glue import (
                            figure_note,
                            format_value,
                            glue_claim,
                            glue_figure,
                            glue_number,
                            glue_text,
                            reproduce_command,
)
from alignbook.parameters import (
                            BookError,
                            Parameter,
                            ParameterError,
                            expected_seconds,
                            load_profiles,
                            notebook_parameters,
                            parse_cli_value,
                            resolve_parameters,
)
from alignbook.pipeline import (
                            BUILD_ENV,
                            Book,
                            ChapterFailed,
                            ChapterRun,
                            SiteFailed,
                            build,
                            results_folder,
                            run_chapter,
)
from alignbook.results import ResultStore
from alignbook.scorecard import collect_claims, profile_claims, save_claims
from alignbook.site import render_site
from alignbook.template import new_chapter_notebook

__all__ = [
    "figure_note", "format_value", "glue_claim", "glue_figure", "glue_number", "glue_text",
    "reproduce_command", "BUILD_ENV", "Book", "BookError", "ChapterFailed", "ChapterRun",
    "Parameter", "ParameterError", "SiteFailed", "build", "expected_seconds", "load_profiles",
    "notebook_parameters", "parse_cli_value", "resolve_parameters", "results_folder",
    "run_chapter", "ResultStore", "collect_claims", "profile_claims", "save_claims",
    "render_site", "new_chapter_notebook",
]
