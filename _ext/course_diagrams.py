"""The website's own Sphinx pieces: diagrams, page assets and a clean script list.

- Loads ``sphinx.ext.graphviz`` (diagram sources live in ``_diagrams/``; ``dot`` draws them to
  SVG at build time) and adds the ``youarehere`` directive: a small diagram of the six chapters
  with the current one highlighted, placed at the top of every chapter page::

      ```{youarehere} 3
      ```

- Adds the course's stylesheet and script (``_vendor/course/``): code and outputs wrap to the
  column, wide display equations shrink to fit it, diagrams scale to it.
- Serves plotly.js from the installed `plotly` Python package (pinned in requirements.txt; its
  `package_data/plotly.min.js`, MIT) as ``_static/plotly/plotly.min.js``, loaded only by pages
  whose executed cells made a Plotly figure (chapter 3's interactive attention view), before
  the page's own scripts run. Nothing is fetched from the network.
- Drops scripts that another extension registered twice. ``sphinx-thebe`` registers its
  configuration in ``env-before-read-docs``, which Jupyter Book fires twice, so every page
  declared ``const THEBE_JS_URL`` twice and the browser reported "Identifier 'THEBE_JS_URL'
  has already been declared" on every load.
"""

from __future__ import annotations

import os
import shutil

from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.ext.graphviz import figure_wrapper, graphviz
from sphinx.util.docutils import SphinxDirective

# The chapters, in course order: (short label, what the chapter builds).
CHAPTERS = [
    ("Tokenization", "text → ids"),
    ("Embeddings", "ids → vectors"),
    ("Attention", "positions read\neach other"),
    ("MLP", "each position\nalone"),
    ("Blocks", "the whole GPT"),
    ("Training", "loss, AdamW,\nsampling"),
]


def you_are_here_dot(current: int) -> str:
    """Graphviz source of the chapter strip, chapter ``current`` (1-based) highlighted.

    Two rows of three, so that the strip stays narrow enough for a phone at a readable size.
    Raises ValueError for a chapter number outside 1..len(CHAPTERS).
    """
    if not 1 <= current <= len(CHAPTERS):
        raise ValueError(f"youarehere: chapter must be 1..{len(CHAPTERS)}, got {current}")
    lines = [
        "digraph youarehere {",
        '  node [shape=box, style="rounded,filled", fillcolor="#f4f4f4", color="#999999", fontcolor="#555555"];',
        '  edge [color="#999999"]; nodesep=0.15; ranksep=0.25;',
    ]
    for i, (name, what) in enumerate(CHAPTERS, start=1):
        label = f"{i} {name}\\n{what}".replace("\n", "\\n")
        if i == current:
            lines.append(
                f'  c{i} [label="{label}", fillcolor="#fdf1dc", color="#c0392b", fontcolor="#000000", penwidth=2];'
            )
        else:
            lines.append(f'  c{i} [label="{label}"];')
    lines.append("  {rank=same; c1 -> c2 -> c3}")
    lines.append("  {rank=same; c4 -> c5 -> c6}")
    lines.append("  c3 -> c4 [constraint=false];")
    lines.append("  c1 -> c4 [style=invis];")
    lines.append("}")
    return "\n".join(lines)


class YouAreHere(SphinxDirective):
    """``{youarehere} N``: the chapter strip with chapter N highlighted (a graphviz node)."""

    required_arguments = 1
    has_content = False
    option_spec = {"caption": directives.unchanged}

    def run(self):
        try:
            current = int(self.arguments[0])
            code = you_are_here_dot(current)
        except ValueError as err:
            raise self.error(str(err)) from err
        node = graphviz()
        node["code"] = code
        node["options"] = {"docname": self.env.docname}
        node["alt"] = (
            f"The six chapters in order: "
            + ", ".join(f"{i} {name}" for i, (name, _) in enumerate(CHAPTERS, start=1))
            + f". You are in chapter {current}, {CHAPTERS[current - 1][0]}."
        )
        node["classes"] = ["youarehere"]
        if "caption" in self.options:
            return [figure_wrapper(self, node, self.options["caption"])]
        return [node]


PLOTLY_JS = "plotly/plotly.min.js"  # under _static/


def add_plotly_static(app):
    """Copy plotly.min.js from the installed plotly package into a static folder of the build."""
    import plotly  # a hard requirement: the chapter 3 page imports it too

    source = os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js")
    if not os.path.isfile(source):
        raise FileNotFoundError(f"plotly.min.js is missing from the plotly package ({source}); reinstall plotly")
    folder = os.path.join(app.doctreedir, "course_static")
    os.makedirs(os.path.join(folder, "plotly"), exist_ok=True)
    shutil.copyfile(source, os.path.join(folder, PLOTLY_JS))
    app.config.html_static_path.append(folder)


def drop_duplicate_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for js in scripts:
        attributes = getattr(js, "attributes", {}) or {}
        # A body-only script is registered with filename None by one extension and "" by another.
        key = (str(getattr(js, "filename", js) or ""), tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            kept.append(js)
    if "Plotly.newPlot" in context.get("body", ""):
        # Before the page's inline plotting scripts run; not deferred.
        from sphinx.builders.html._assets import _JavaScript

        kept.insert(0, _JavaScript(f"_static/{PLOTLY_JS}", priority=200))
    # In place: later handlers (MathJax, ...) append to this same list, and the builder restores
    # its own list before every page, so nothing leaks into the next page.
    scripts[:] = kept


def setup(app: Sphinx):
    app.setup_extension("sphinx.ext.graphviz")
    app.add_directive("youarehere", YouAreHere)
    app.connect("builder-inited", add_plotly_static)
    app.add_css_file("course/course.css")
    app.add_js_file("course/course.js", defer="defer")
    # Early: html-page-context stops at the first handler that returns a template name.
    app.connect("html-page-context", drop_duplicate_scripts, priority=1)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
