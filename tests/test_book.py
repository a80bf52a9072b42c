"""The website: a strict Jupyter Book build, its links, and what a real browser shows.

The book is built once per session into a temporary folder (fresh execution cache, so the
figures come from the current `solutions`), with `-W -n --keep-going`: any Sphinx warning
fails. Then:
- only the pages in `_toc.yml` are built;
- every exercise `.ipynb` page has a Colab button derived from `_config.yml`, pointing at a
  file that exists; other pages have no launch button (Colab cannot open `.md`);
- MathJax is served locally (the build must work offline) and loaded once;
- the chapter's figures are SVG images (matplotlib, text kept as text, so its size can be read);
- headless Chromium (required: CI installs the `chromium` apt package) typesets the math,
  loads every image and the MathJax fonts, and requests nothing that is missing;
- every page, at 1280 px and on a 390 px phone: nothing is wider than the text column (code,
  outputs, equations, tables, figures, diagrams; dropdowns opened), the page does not scroll
  sideways, no JavaScript error, no request to another origin (a Content-Security-Policy of
  'self' reports any), and every diagram's and every figure's smallest text is at least 9 pt as
  shown (font size times the scale at which the browser shows the SVG), and so is every display
  equation (MathJax may shrink one to fit the column, never below 9 pt: long ones are broken);
- every glossary term is linked ({term}) from a chapter page, and on each chapter page the first
  use of a term is its link;
- the site has at least 12 diagrams, drawn at build time from `_diagrams/` and the chapter strip.
"""

from __future__ import annotations

import functools
import html
import json
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf-8"))
TOC = yaml.safe_load((REPO / "_toc.yml").read_text(encoding="utf-8"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
GENERATED_PAGES = {"genindex.html", "search.html"}  # Sphinx's own pages, always built

pytestmark = pytest.mark.slow


# ----------------------------------------------------------------------------- helpers


def toc_docnames() -> list[str]:
    """All docnames listed in _toc.yml (root, parts, chapters, sections), in order."""
    names = [TOC["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                names.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in TOC.items() if k != "root"})
    return names


def source_of(docname: str) -> Path:
    matches = [p for p in (REPO / f"{docname}{ext}" for ext in (".ipynb", ".md")) if p.exists()]
    assert len(matches) == 1, f"{docname}: expected exactly one .ipynb or .md source, got {matches}"
    return matches[0]


def expected_colab_url(docname: str) -> str:
    """The launch link, from the repository settings in _config.yml (nothing hard-coded)."""
    repo_cfg = CONFIG["repository"]
    org, name = urlsplit(repo_cfg["url"]).path.strip("/").split("/")[:2]
    book = repo_cfg.get("path_to_book", "").strip("/")
    path = f"{book}/{docname}.ipynb" if book else f"{docname}.ipynb"
    colab = CONFIG["launch_buttons"]["colab_url"].rstrip("/")
    return f"{colab}/github/{org}/{name}/blob/{repo_cfg['branch']}/{path}"


def page_html(html_dir: Path, docname: str) -> str:
    return (html_dir / f"{docname}.html").read_text(encoding="utf-8")


def script_srcs(page: str) -> list[str]:
    return [html.unescape(s) for s in re.findall(r"<script[^>]*\ssrc=\"([^\"]+)\"", page)]


def hrefs(page: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r"\shref=\"([^\"]+)\"", page)]


CHAPTER_PAGES = [d for d in toc_docnames() if source_of(d).suffix == ".md" and d.startswith("chapters/")]
NOTEBOOK_PAGES = [d for d in toc_docnames() if source_of(d).suffix == ".ipynb"]
OTHER_PAGES = [d for d in toc_docnames() if d not in NOTEBOOK_PAGES]


# ----------------------------------------------------------------------------- the build


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> Path:
    """Build the book strictly into a temporary folder; return the html folder."""
    out = tmp_path_factory.mktemp("book")
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else shutil.which("jupyter-book") or "jupyter-book"]
    cmd += ["build", str(REPO), "--path-output", str(out), "-W", "-n", "--keep-going"]
    env = dict(os.environ)
    # Execute the chapter pages against this checkout's `solutions`, installed or not.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    # Sphinx warnings look like "path:line: WARNING: message"; the kernel's own
    # "[IPKernelApp] WARNING | Kernel is running over TCP ..." is not a build warning.
    warnings = [line for line in log.splitlines() if "WARNING:" in line]
    assert proc.returncode == 0 and not warnings, (
        f"strict book build failed (rc={proc.returncode}):\n" + "\n".join(warnings) + "\n" + log[-6000:]
    )
    html_dir = out / "_build" / "html"
    assert (html_dir / "index.html").exists(), log[-3000:]
    return html_dir


def test_only_toc_pages_are_built(built_book):
    built = {p.relative_to(built_book).as_posix() for p in built_book.rglob("*.html")}
    built = {p for p in built if not p.startswith(("_static/", "_sources/", "_images/"))}
    expected = {f"{d}.html" for d in toc_docnames()} | GENERATED_PAGES | {"index.html"}
    assert built == expected, f"unexpected pages: {sorted(built - expected)}; missing: {sorted(expected - built)}"
    for stray in ("README", "tests", ".venv", "solutions", "bench", "_vendor"):
        assert not list(built_book.glob(f"{stray}*.html")) and not (built_book / stray).exists()


@pytest.mark.parametrize("docname", NOTEBOOK_PAGES)
def test_exercise_pages_have_a_working_colab_button(built_book, docname):
    url = expected_colab_url(docname)
    links = [h for h in hrefs(page_html(built_book, docname)) if "colab.research.google.com" in h]
    assert links == [url], f"{docname}: Colab links {links}, expected [{url}]"
    # The link names a notebook that exists in the repository at that path.
    path_in_repo = url.split(f"/blob/{CONFIG['repository']['branch']}/", 1)[1]
    assert (REPO / path_in_repo).is_file(), f"the Colab link points at {path_in_repo}, which does not exist"


@pytest.mark.parametrize("docname", OTHER_PAGES)
def test_non_notebook_pages_have_no_launch_button(built_book, docname):
    page = page_html(built_book, docname)
    assert "colab.research.google.com" not in page
    assert "launch-buttons" not in page, f"{docname} shows a launch button, but only .ipynb pages can be launched"


def test_mathjax_is_local_and_loaded_once(built_book):
    for docname in toc_docnames():
        srcs = script_srcs(page_html(built_book, docname))
        mathjax = [s for s in srcs if "mathjax" in s.lower()]
        if docname in CHAPTER_PAGES:
            assert len(mathjax) == 1, f"{docname}: MathJax scripts {mathjax}"
        for src in mathjax:
            assert not re.match(r"(https?:)?//", src), f"{docname} loads MathJax from the network: {src}"
            local = (built_book / Path(docname).parent / src.split("?")[0]).resolve()
            assert local.is_file(), f"{docname}: {src} is not in the build"
        remote = [s for s in srcs if re.match(r"(https?:)?//", s)]
        assert not remote, f"{docname} loads scripts from the network: {remote}"


def figure_srcs(page: str) -> list[str]:
    """The executed figures of a built page: images myst-nb wrote to _images/ (not diagrams)."""
    srcs = re.findall(r"<img[^>]*\ssrc=\"([^\"]+)\"", page)
    return [s for s in srcs if "_images/" in s and "graphviz-" not in s]


@pytest.mark.parametrize("docname", CHAPTER_PAGES)
def test_chapter_figures_are_svg_images(built_book, docname):
    page = page_html(built_book, docname)
    figures = figure_srcs(page)
    svgs = [s for s in figures if s.endswith(".svg")]
    # SVG, with text as text: the browser test reads each font size (a PNG hides it)
    assert len(svgs) >= 2 and svgs == figures, f"{docname}: expected at least two SVG figures and no others, got {figures}"
    for src in svgs:
        data = (built_book / Path(docname).parent / src).resolve().read_text(encoding="utf-8")
        assert "<svg" in data and re.search(r"font-size: [\d.]+px", data), f"{src} is not an SVG figure with text"
        # light pages: a figure is a separate file of moderate size, not inlined into the page
        assert len(data) < 400_000, f"{src} is {len(data) // 1024} KiB"
    assert len(page) < 1_500_000, f"{docname}: the page is {len(page) // 1024} KiB"
    # Every "Show solution" box shows the reference source it includes.
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    for dotted in re.findall(r":pyobject:\s*([\w.]+)", source_of(docname).read_text(encoding="utf-8")):
        name = dotted.split(".")[-1]  # Class.method shows the method
        assert re.search(rf"(def {name}\(|class {name}[(:])", text), f"{docname}: the solution box for {dotted} is empty"
    # Executed cells printed nothing to stderr (warnings, deprecations) and raised nothing.
    assert "output stderr" not in page and "output traceback" not in page, f"{docname}: a cell wrote to stderr"


# ----------------------------------------------------------------------------- real browser

# Injected by the test server right after <head> of pages requested with ?probe: records
# JavaScript errors and requests that the page's Content-Security-Policy blocked (any request
# to another origin), before any of the page's own scripts run.
HEAD_PROBE = """<head><script>
window.__courseErrors = []; window.__courseBlocked = [];
window.addEventListener("error", function (e) {
  if (e.message) window.__courseErrors.push(e.message + " (" + (e.filename || "") + ":" + (e.lineno || 0) + ")");
  else if (e.target && e.target !== window) window.__courseErrors.push("failed to load " + (e.target.src || e.target.href || e.target.tagName));
}, true);
window.addEventListener("unhandledrejection", function (e) { window.__courseErrors.push("unhandled rejection: " + e.reason); });
document.addEventListener("securitypolicyviolation", function (e) { window.__courseBlocked.push(e.blockedURI); });
</script>"""

# Everything from this server, nothing from elsewhere; inline scripts and eval stay allowed.
CSP = "default-src 'self' 'unsafe-inline' 'unsafe-eval' data: blob:"

# Injected by the test server into pages requested with ?probe: once MathJax is done and the
# page has loaded, record each image's natural width on <body>, so --dump-dom shows it.
PROBE = """<script>
window.addEventListener("load", function () {
  var done = function (status) {
    document.body.setAttribute("data-mathjax", status);
    document.body.setAttribute("data-images", JSON.stringify(
      Array.from(document.images).map(function (i) { return [i.getAttribute("src"), i.naturalWidth]; })));
  };
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    MathJax.startup.promise.then(function () { done("typeset"); }, function () { done("error"); });
  } else { done("missing"); }
});
</script></body>"""


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[tuple[str, int]] = []

    def send_response(self, code, message=None):
        self.requests.append((urlsplit(self.path).path, code))
        super().send_response(code, message)

    def log_message(self, *args):  # keep pytest's output clean
        pass

    def do_GET(self):
        parts = urlsplit(self.path)
        if parts.path == "/__layout__.html":
            self._send_html(layout_driver(parts.query).encode())
        elif parts.query == "probe" and parts.path.endswith(".html"):
            body = (Path(self.directory) / parts.path.lstrip("/")).read_bytes()
            body = re.sub(rb"<head>", HEAD_PROBE.encode(), body, count=1)
            body = body.replace(b"</body>", PROBE.encode(), 1)
            self._send_html(body, csp=True)
        else:
            super().do_GET()

    def _send_html(self, body: bytes, csp: bool = False):
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if csp:
            self.send_header("Content-Security-Policy", CSP)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="session")
def server(built_book):
    handler = functools.partial(_Handler, directory=str(built_book))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler.requests
    httpd.shutdown()
    httpd.server_close()


def chromium(*args: str) -> str:
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"headless Chromium is required for the browser tests but {CHROMIUM} was not found: "
            "install it (Debian/Ubuntu: `apt-get install chromium`) or set CHROMIUM=/path/to/chromium"
        )
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={profile}", "--virtual-time-budget=15000", *args],
            capture_output=True, text=True, timeout=120,
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.parametrize("docname", CHAPTER_PAGES)
def test_browser_typesets_math_and_loads_figures(server, docname, tmp_path):
    base, requests = server
    del requests[:]
    dom = chromium("--dump-dom", f"{base}/{docname}.html?probe")

    body = re.search(r"<body[^>]*>", dom).group(0)
    status = re.search(r'data-mathjax="([^"]*)"', body)
    assert status and status.group(1) == "typeset", f"MathJax did not finish: {body[:300]}"

    # Every math element became an mjx-container; no raw TeX is left in the text.
    n_math = len(re.findall(r'class="math notranslate nohighlight"', dom))
    n_mjx = len(re.findall(r"<mjx-container", dom))
    assert n_math >= 3 and n_mjx >= n_math, f"{n_math} math elements, {n_mjx} typeset"
    assert "<mjx-merror" not in dom and "data-mjx-error" not in dom, "MathJax reported an error"
    text = re.sub(r"<(pre|script|style|code)\b.*?</\1>", "", dom, flags=re.S)
    assert "\\(" not in text and "\\[" not in text, "raw TeX delimiters left in the page"

    # Every image was decoded by the browser (naturalWidth > 0), among them the figures.
    images = json.loads(html.unescape(re.search(r'data-images="([^"]*)"', body).group(1)))
    figures = [(src, w) for src, w in images if src.endswith(".svg") and "_images/" in src and "graphviz-" not in src]
    assert len(figures) >= 2 and all(w > 0 for _, w in figures), f"images in the browser: {images}"

    # The browser fetched the figures and MathJax's fonts from our server, and nothing 404'd.
    fetched = {path for path, code in requests if code == 200}
    assert sum(p.startswith("/_images/") and p.endswith(".svg") for p in fetched) >= 2, sorted(fetched)
    assert any(p.endswith(".woff") for p in fetched), f"MathJax fonts were not loaded: {sorted(fetched)}"
    # (browsers ask for /favicon.ico on their own; the book has none)
    missing = sorted({path for path, code in requests if code >= 400 and path != "/favicon.ico"})
    assert not missing, f"the page requested files that are not in the build: {missing}"

    assert "colab.research.google.com" not in dom, "a page that is not a notebook links to Colab"

    # A screenshot for humans: pytest's temp folder, or $BOOK_SCREENSHOT_DIR if set.
    shot_dir = Path(os.environ.get("BOOK_SCREENSHOT_DIR") or tmp_path)
    shot_dir.mkdir(parents=True, exist_ok=True)
    shot = shot_dir / (docname.replace("/", "_") + ".png")
    chromium(f"--screenshot={shot}", "--window-size=1280,2400", f"{base}/{docname}.html")
    assert shot.read_bytes().startswith(b"\x89PNG"), "no screenshot"
    print(f"screenshot: {shot}")


@pytest.mark.parametrize("docname", NOTEBOOK_PAGES)
def test_browser_sees_the_colab_link(server, docname):
    base, _ = server
    dom = chromium("--dump-dom", f"{base}/{docname}.html")
    assert expected_colab_url(docname) in html.unescape(dom)


# ----------------------------------------------------------------------------- layout at two widths

WIDTHS = {"laptop": 1280, "phone": 390}
ALL_PAGES = toc_docnames()
MIN_DIAGRAM_PT = 9.0   # diagrams, figures and display equations, as shown (CSS pt = 4/3 px)

# The driver page loads every page in an iframe of the given width, one after the other, opens
# every dropdown and hidden cell, lets course.js fit the equations again, and records what sticks
# out of the text column. One Chromium run per width keeps the test fast.
LAYOUT_DRIVER = """<!doctype html><html><head><meta charset="utf-8"></head><body><script>
const PAGES = %(pages)s, WIDTH = %(width)d;
const SELECTOR = 'pre, mjx-container[display="true"], img, object, table, .cell_output, .attention-view, figure, .admonition, details';
function measure(w) {
  const d = w.document;
  d.querySelectorAll("details").forEach(function (x) { x.open = true; });
  if (w.courseFitEquations) w.courseFitEquations();
  const article = d.querySelector("article.bd-article") || d.querySelector("main") || d.body;
  const box = article.getBoundingClientRect(), style = w.getComputedStyle(article);
  const col = {left: box.left + parseFloat(style.paddingLeft), right: box.right - parseFloat(style.paddingRight)};
  col.width = col.right - col.left;
  const over = [];
  article.querySelectorAll(SELECTOR).forEach(function (el) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) return;          // not rendered
    const hidden = el.scrollWidth - el.clientWidth;        // content cut off inside the element
    if (r.right > col.right + 1 || r.left < col.left - 1 || (el.tagName !== "IMG" && hidden > 1)) {
      over.push({tag: el.tagName.toLowerCase(), cls: String(el.className || "").slice(0, 60),
                 right: Math.round(r.right - col.right), hidden: hidden,
                 text: (el.textContent || el.getAttribute("src") || el.getAttribute("data") || "").trim().slice(0, 80)});
    }
  });
  const diagrams = Array.from(article.querySelectorAll("object.graphviz")).map(function (o) {
    return [o.getAttribute("data"), o.getBoundingClientRect().width]; });
  const figures = Array.from(article.querySelectorAll(".cell_output img")).map(function (i) {
    return [i.getAttribute("src"), i.naturalWidth, i.getBoundingClientRect().width]; });
  // every display equation's font size as shown (px), with the start of its TeX
  const tex = new Map();
  try {
    for (const item of w.MathJax.startup.document.math) tex.set(item.typesetRoot, item.math);
  } catch (err) { /* no MathJax on this page */ }
  const equations = Array.from(article.querySelectorAll('mjx-container[display="true"]')).filter(function (box) {
    return box.getBoundingClientRect().width > 0; }).map(function (box) {
    return [(tex.get(box) || box.textContent || "").trim().slice(0, 90), parseFloat(w.getComputedStyle(box).fontSize)]; });
  // tick labels of interactive plots that run into their neighbours
  let tickOverlaps = 0;
  article.querySelectorAll(".js-plotly-plot").forEach(function (plot) {
    ["xtick", "ytick"].forEach(function (cls) {
      const boxes = Array.from(plot.querySelectorAll("g." + cls + " text")).map(function (t) {
        return t.getBoundingClientRect(); }).filter(function (r) { return r.width > 0; });
      const along = cls === "xtick" ? ["left", "right"] : ["top", "bottom"];
      boxes.sort(function (a, b) { return a[along[0]] - b[along[0]]; });
      for (let i = 1; i < boxes.length; i++) {
        if (boxes[i][along[0]] < boxes[i - 1][along[1]] - 1) tickOverlaps++;
      }
    });
  });
  const pageScroll = d.documentElement.scrollWidth - w.innerWidth;
  if (pageScroll > 1) {   // name the innermost elements that stick out of the window
    d.body.querySelectorAll("*").forEach(function (el) {
      if (el.closest(".bd-sidebar-primary, .bd-sidebar-secondary")) return;   // drawers, off screen on purpose
      const r = el.getBoundingClientRect();
      if (r.right > w.innerWidth + 1 && !Array.from(el.children).some(function (c) {
            return c.getBoundingClientRect().right > w.innerWidth + 1; })) {
        over.push({tag: el.tagName.toLowerCase(), cls: String(el.className || "").slice(0, 60),
                   right: Math.round(r.right - w.innerWidth), hidden: 0, text: (el.textContent || "").trim().slice(0, 80)});
      }
    });
  }
  return {pageScroll: pageScroll, columnWidth: col.width, over: over, tickOverlaps: tickOverlaps,
          diagrams: diagrams, figures: figures, equations: equations, errors: w.__courseErrors || ["probe missing"],
          blocked: w.__courseBlocked || [], shrunk: d.body.getAttribute("data-equations-shrunk")};
}
async function run() {
  const results = {};
  for (const page of PAGES) {
    const frame = document.createElement("iframe");
    frame.style.width = WIDTH + "px"; frame.style.height = "900px";
    const loaded = new Promise(function (resolve) { frame.onload = resolve; });
    frame.src = "/" + page + ".html?probe";
    document.body.appendChild(frame);
    await loaded;
    const w = frame.contentWindow;
    try {
      if (w.courseLayout) await w.courseLayout;
      results[page] = measure(w);
    } catch (err) { results[page] = {driverError: String(err)}; }
    frame.remove();
  }
  document.body.setAttribute("data-results", JSON.stringify(results));
}
run();
</script></body></html>"""


def layout_driver(query: str) -> str:
    width = int(dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("width", "1280"))
    return LAYOUT_DRIVER % {"pages": json.dumps(ALL_PAGES), "width": width}


@pytest.fixture(scope="session")
def layouts(server):
    """{width name: {docname: measurements}}, one Chromium run per width."""
    base, _ = server
    out = {}
    for name, width in WIDTHS.items():
        dom = chromium("--dump-dom", f"--window-size={max(width, 400)},1000", "--virtual-time-budget=240000",
                       f"{base}/__layout__.html?width={width}")
        found = re.search(r'data-results="([^"]*)"', dom)
        assert found, f"the layout driver did not finish at {width} px: {dom[-2000:]}"
        out[name] = json.loads(html.unescape(found.group(1)))
    return out


def svg_text_scale(svg: Path) -> tuple[float, float]:
    """(natural width in CSS px, smallest font size in pt) of an SVG drawn by Graphviz or by
    matplotlib (both draw in pt: width="...pt", and a font size in user units is in pt)."""
    text = svg.read_text(encoding="utf-8")
    width_pt = float(re.search(r'<svg[^>]*\swidth="([\d.]+)pt"', text).group(1))
    sizes = [float(s) for s in re.findall(r'font-size(?:="|: ?)([\d.]+)', text)]
    assert sizes, f"{svg.name}: no text"
    return width_pt * 4 / 3, min(sizes)


@pytest.mark.parametrize("width", list(WIDTHS))
@pytest.mark.parametrize("docname", ALL_PAGES)
def test_nothing_is_cut_off_and_nothing_fails(layouts, built_book, docname, width):
    page = layouts[width].get(docname)
    assert page is not None, f"{docname} was not measured at {width}"
    assert "driverError" not in page, page
    assert page["errors"] == [], f"{docname} at {WIDTHS[width]} px: JavaScript errors {page['errors']}"
    assert page["blocked"] == [], f"{docname}: requests to other origins {page['blocked']}"
    assert page["pageScroll"] <= 1, f"{docname} at {WIDTHS[width]} px scrolls sideways by {page['pageScroll']} px"
    assert page["tickOverlaps"] == 0, f"{docname} at {WIDTHS[width]} px: {page['tickOverlaps']} plot tick labels overlap"
    assert page["over"] == [], (
        f"{docname} at {WIDTHS[width]} px (column {page['columnWidth']:.0f} px): wider than the column: "
        + json.dumps(page["over"], ensure_ascii=False, indent=1)[:3000])
    for data, shown in page["diagrams"]:
        natural, smallest = svg_text_scale((built_book / Path(docname).parent / data).resolve())
        shown_pt = smallest * min(1.0, shown / natural)
        assert shown_pt >= MIN_DIAGRAM_PT - 0.05, (
            f"{docname} at {WIDTHS[width]} px: diagram {data} shows its smallest text at {shown_pt:.1f} pt "
            f"(drawn {natural:.0f} px wide, shown {shown:.0f} px)")
    for src, natural, shown in page["figures"]:
        assert src.endswith(".svg"), f"{docname}: figure {src} is not SVG, so the size of its text cannot be measured"
        natural_svg, smallest = svg_text_scale((built_book / Path(docname).parent / src).resolve())
        shown_pt = smallest * min(1.0, shown / natural_svg)
        assert shown_pt >= MIN_DIAGRAM_PT - 0.05, (
            f"{docname} at {WIDTHS[width]} px: figure {src} shows its smallest text at {shown_pt:.1f} pt "
            f"(set in {smallest:g} pt, drawn {natural_svg:.0f} px wide, shown {shown:.0f} px)")
        if width == "laptop":
            # never shrunk on a laptop: the text shows at the size it was set in
            assert natural <= shown + 2, f"{docname}: figure {src} is {natural} px wide, shrunk to {shown:.0f} px"
    for tex, font_px in page["equations"]:
        assert font_px * 0.75 >= MIN_DIAGRAM_PT - 0.05, (
            f"{docname} at {WIDTHS[width]} px: a display equation is shown at {font_px * 0.75:.1f} pt; "
            f"break it over lines (aligned) instead: {tex}")


def test_the_site_has_its_diagrams(built_book):
    svgs = {p.name for p in (built_book / "_images").glob("graphviz-*.svg")}
    sources = sorted((REPO / "_diagrams").glob("*.dot"))
    used = [p for p in sources if any(f"_diagrams/{p.name}" in source_of(d).read_text(encoding="utf-8") for d in ALL_PAGES)]
    assert len(used) == len(sources), f"diagrams no page uses: {sorted(set(sources) - set(used))}"
    # >= 12 distinct diagrams: the sources plus one chapter strip per chapter
    assert len(svgs) >= 12, f"only {len(svgs)} diagrams were drawn"
    for docname in CHAPTER_PAGES:
        page = page_html(built_book, docname)
        assert 'class="graphviz youarehere"' in page, f"{docname} has no chapter strip"


def test_figure_text_is_set_large_enough():
    """Matplotlib text on the pages is never set below 11 pt, the course style's size
    (_vendor/course/figures.mplstyle: 11 pt on a 4.1 in figure stays >= 9 pt on a phone)."""
    for docname in CHAPTER_PAGES:
        source = source_of(docname).read_text(encoding="utf-8")
        small = re.findall(r"\b(?:fontsize|size)\s*=\s*(\d+(?:\.\d+)?)\b", source)
        assert all(float(s) >= 11 for s in small), f"{docname}: text set below 11 pt: {small}"
        assert 'plt.style.use("../../_vendor/course/figures.mplstyle")' in source, f"{docname}: not in the course style"
        assert not re.search(r"fontsize\s*=\s*[\"'](?:x+-)?small", source), f"{docname}: a 'small' font size"


# ----------------------------------------------------------------------------- glossary links

GLOSSARY_DOC = "glossary"


def glossary_terms() -> dict[str, list[str]]:
    """{term as the glossary writes it: the spellings that count as a use of it in the prose}.

    "byte-pair encoding (BPE)" is used as either name, "top-k, top-p" as either filter.
    """
    text = source_of(GLOSSARY_DOC).read_text(encoding="utf-8")
    block = re.search(r"```\{glossary\}\n(.*?)\n```", text, flags=re.S).group(1)
    terms = {}
    for term in re.findall(r"^(\S[^\n]*)$", block, flags=re.M):
        if m := re.fullmatch(r"(.+) \((.+)\)", term):
            terms[term] = [m.group(1), m.group(2)]
        else:
            terms[term] = [t.strip() for t in term.split(",")]
    return terms


def prose_mask(text: str) -> str:
    """The page's source with everything that is not running prose blanked out (same length):
    front matter, fenced blocks (code cells, math, diagrams, includes), colon-fence lines,
    headings, targets, math, inline code, roles ({cite}, {numref}, {term}, ...) and links."""
    def blank(m):
        return re.sub(r"[^\n]", " ", m.group(0))

    patterns = [
        r"\A---\n.*?\n---\n",                   # front matter
        r"^(`{3,}|~{3,}).*?^\1[ \t]*$",          # fenced blocks
        r"^:{3,}[^\n]*$", r"^:[\w-]+:[^\n]*$",   # colon fences and their options
        r"^#+ [^\n]*$", r"^\([^\n]*\)=$", r"<!--.*?-->",  # headings, targets, comments
        r"\$\$.*?\$\$", r"(?<!\\)\$[^$\n]+?\$",   # math
        r"\{[\w:-]+\}`[^`]*`", r"`[^`\n]*`",     # roles, inline code
        r"\[[^\]\n]*\]\([^)\n]*\)",              # links
    ]
    for pattern in patterns:
        text = re.sub(pattern, blank, text, flags=re.S | re.M)
    return text


def term_pattern(spelling: str) -> re.Pattern:
    """A use of a spelling: a whole word (not part of multi-head or gelu_tanh), plural allowed;
    abbreviations and names (MLP, RoPE, AdamW) by case, other terms in any case."""
    flags = 0 if any(c.isupper() for c in spelling) else re.I
    return re.compile(rf"(?<![\w-]){re.escape(spelling)}(?:s|es)?(?![\w-])", flags)


def term_roles(text: str) -> list[tuple[int, str]]:
    """(position, target term) of every {term} role in a page's source."""
    out = []
    for m in re.finditer(r"\{term\}`([^`]*)`", text):
        inner = m.group(1)
        target = re.search(r"<([^<>]+)>\s*$", inner)
        out.append((m.start(), (target.group(1) if target else inner).strip()))
    return out


def test_every_glossary_term_is_linked_from_a_chapter(built_book):
    """Each glossary entry is the target of a {term} link on some chapter page, and the link
    resolves in the built site (an unknown term is a warning, which fails the strict build)."""
    terms = glossary_terms()
    assert len(terms) >= 20, f"the glossary has only {len(terms)} terms"
    linked = {target for docname in CHAPTER_PAGES
              for _, target in term_roles(source_of(docname).read_text(encoding="utf-8"))}
    assert set(terms) <= linked, f"glossary terms no chapter page links: {sorted(set(terms) - linked)}"
    assert linked <= set(terms), f"links to terms that are not in the glossary: {sorted(linked - set(terms))}"
    anchors = set(re.findall(r'<dt id="(term-[^"]+)"', page_html(built_book, GLOSSARY_DOC)))
    assert len(anchors) == len(terms), f"glossary anchors {sorted(anchors)}"
    used = set()
    for docname in CHAPTER_PAGES:
        used |= {html.unescape(h).split("#", 1)[1] for h in hrefs(page_html(built_book, docname))
                 if re.match(r"(\.\./)*glossary\.html#term-", h)}
    assert used == anchors, f"glossary entries no built chapter page links to: {sorted(anchors - used)}"


@pytest.mark.parametrize("docname", CHAPTER_PAGES)
def test_first_use_of_a_glossary_term_links_to_it(docname):
    """On each chapter page, the first use of a glossary term in the prose is its {term} link."""
    text = source_of(docname).read_text(encoding="utf-8")
    masked = prose_mask(text)   # {term} roles are blanked: what is left are plain uses
    first_link = {}
    for position, target in term_roles(text):
        first_link.setdefault(target, position)
    late = []
    for term, spellings in glossary_terms().items():
        uses = [m.start() for s in spellings for m in term_pattern(s).finditer(masked)]
        if uses and (term not in first_link or first_link[term] > min(uses)):
            line = text.count("\n", 0, min(uses)) + 1
            late.append(f"{term!r} first used on line {line} without a link")
    assert not late, f"{docname}: " + "; ".join(late)
