"""Sphinx configuration of the mts-lightning documentation (``make docs``)."""

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # the checkout's package, as the tests import it
sys.path.insert(0, str(DOCS / "_ext"))

import mts_lightning  # noqa: E402

project = "mts-lightning"
author = "mts-lightning contributors"
copyright = "mts-lightning contributors"  # noqa: A001 - Sphinx's setting name
version = release = mts_lightning.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "public_api",
]
public_api_root = "mts_lightning"

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
# The result folders' summary.md files are included into their pages, not pages of their own.
exclude_patterns = ["_build", "results/*/summary.md", "results/*/*/summary.md"]
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
# A method without its own docstring is left out rather than shown with its base class's.
autodoc_inherit_docstrings = False
autodoc_class_signature = "separated"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "alabaster"
html_title = f"mts-lightning {release}"
