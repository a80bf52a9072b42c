"""Show launch buttons (Colab) only on pages whose source file is an ``.ipynb``.

Why: sphinx-book-theme adds the launch buttons to every page that has a kernel, including
MyST ``.md`` chapter pages with executed ``{code-cell}``s. Their Colab link would point at
the ``.md`` file, which Colab cannot open (it 404s or shows an error). Exercise notebooks
are ``.ipynb`` and keep their button.

How: the theme builds the buttons in an ``html-page-context`` handler with priority 501
(``add_launch_buttons``, a group labelled ``launch-buttons`` in ``context["header_buttons"]``).
This handler runs later (priority 900) and drops that group when the page's source suffix
is not ``.ipynb``. Nothing else in the page changes.
"""

import os

from sphinx.application import Sphinx

LAUNCH_GROUP_LABEL = "launch-buttons"  # sphinx_book_theme/header_buttons/launch.py


def drop_launch_buttons(app, pagename, templatename, context, doctree):
    if pagename not in app.env.all_docs:
        return  # genindex, search, ...: generated pages have no source
    if os.path.splitext(str(app.env.doc2path(pagename)))[1] == ".ipynb":
        return
    buttons = context.get("header_buttons")
    if buttons:
        buttons[:] = [b for b in buttons if b.get("label") != LAUNCH_GROUP_LABEL]


def setup(app: Sphinx):
    app.connect("html-page-context", drop_launch_buttons, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
