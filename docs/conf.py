"""Sphinx configuration: the API reference is generated from the docstrings of the installed package.

Built by ``nox -s docs`` (warnings are errors). Pages document the public import paths
(``eventsource.EventSourcingManager``, ``eventsource.provider.Provider``...), never the module a class
happens to live in, so moving code between modules does not break the reference.
"""

from __future__ import annotations

project = "eventsource"
author = "the eventsource contributors"
copyright = "the eventsource contributors"  # noqa: A001 - Sphinx's name

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# :param: fields are reST; napoleon only adds Google/NumPy sections, never rewrites reST fields.
napoleon_google_docstring = True
napoleon_numpy_docstring = False

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": True}

myst_heading_anchors = 3

html_theme = "alabaster"
html_title = "eventsource"
