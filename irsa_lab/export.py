"""Static HTML pages of the lessons, widgets included, that open with no network.

``python -m irsa_lab.export OUTDIR`` runs every guided notebook (``notebooks/NN-*.ipynb``)
and every lab (``labs/*.ipynb``) in a fresh kernel, keeps the widget state nbclient
saves in the notebook metadata (``application/vnd.jupyter.widget-state+json``), and
writes one HTML page per notebook plus an ``index.html``.

Why this module exists (docs/reference/teaching.md §4.4): ``jupyter nbconvert --to html`` makes
the page load the widget manager from unpkg, require.js from cdnjs and mermaid from
cdnjs, so on an air-gapped workshop network the widgets and diagrams never render.
Here every script the page loads sits next to it under ``static/``:

- ``@jupyter-widgets/html-manager`` ``dist/embed-amd.js`` (and the icon fonts its CSS
  points at): renders the saved widget state;
- ``requirejs`` ``require.js``: the AMD loader embed-amd.js needs;
- ``mermaid`` ``dist/mermaid.min.js``, only for pages with a mermaid diagram. The
  stock template imports mermaid's ES module, which Chromium refuses over ``file://``,
  so the page loads the classic build and renders with ``window.mermaid``;
- MathJax is left out: the lessons contain no TeX.

No installed PyPI package ships these files, so they come from the npm registry
through ``npm pack`` (pinned versions, checked against pinned SHA-256 sums) into a
cache folder (``$IRSA_LAB_VENDOR_DIR``, else ``$XDG_CACHE_HOME/irsa-lab/vendor``, else
``~/.cache/irsa-lab/vendor``), once per machine. After writing a page the exporter
scans it with :func:`remote_references` and refuses to leave a CDN URL behind.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ASSETS",
    "ExportError",
    "ExportedPage",
    "NpmAsset",
    "default_notebooks",
    "execute_notebook",
    "export_notebooks",
    "main",
    "notebook_html",
    "remote_references",
    "vendor_dir",
]


class ExportError(RuntimeError):
    """Raised when a page cannot be made: a cell failed, a script could not be vendored,
    or a remote URL would remain in the page."""


@dataclass(frozen=True)
class NpmAsset:
    """Files taken from one pinned npm package and served next to the pages."""

    package: str
    version: str
    sha256: str  # of the tarball `npm pack` downloads
    keep: tuple[str, ...]  # regexes on paths inside the package folder
    entry: str  # the script a page loads, relative to the package folder

    @property
    def folder(self) -> str:
        return f"{self.package.lstrip('@').replace('/', '-')}-{self.version}"


ASSETS: dict[str, NpmAsset] = {
    "html-manager": NpmAsset(
        "@jupyter-widgets/html-manager",
        "1.0.15",  # the 1.x line renders ipywidgets 8 state
        "2b9d65cb7913e1c7d671757a10008b32c9c2448d4429513371e55c07d6107638",
        (r"dist/embed-amd\.js", r"dist/[0-9a-f]{20}\.(woff2?|ttf|eot|svg)", r"LICENSE"),
        "dist/embed-amd.js",
    ),
    "requirejs": NpmAsset(
        "requirejs",
        "2.3.8",
        "777158e89275e16bd51aec3ef714fbcb5dc45789e7078659933bc814916d7dec",
        (r"require\.js", r"LICENSE"),
        "require.js",
    ),
    "mermaid": NpmAsset(
        "mermaid",
        "11.10.0",  # the version nbconvert 7.17's template asks for
        "9618dd5c3cd142b942ff7482b3df9cc3a7a155a094a3bbb12af3f9c234965ac3",
        (r"dist/mermaid\.min\.js", r"LICENSE"),
        "dist/mermaid.min.js",
    ),
}

# Hosts whose appearance anywhere in a page means it would reach out when opened.
CDN_HOSTS = (
    "unpkg.com",
    "cdnjs.cloudflare.com",
    "cdn.jsdelivr.net",
    "fonts.googleapis.com",
    "code.jquery.com",
    "ajax.googleapis.com",
)
_REMOTE_LOADS = re.compile(
    r"""<(?:script|link|img|iframe|source|embed)\b[^>]*?\b(?:src|href)\s*=\s*["']?((?:https?:)?//[^"'\s>]+)"""
    r"""|\bimport\s*\(\s*["']((?:https?:)?//[^"']+)"""
    r"""|\bimport\s+[^;'"]*?from\s*["']((?:https?:)?//[^"']+)"""
    r"""|url\(\s*["']?((?:https?:)?//[^"')\s]+)""",
    re.IGNORECASE,
)


def remote_references(page: str) -> list[str]:
    """Every URL in ``page`` that a browser would fetch from another machine: script,
    stylesheet, image and frame sources, module imports, CSS ``url()``s, and any
    mention of a known CDN host. Plain ``<a href>`` links are not loads and pass."""
    found = [next(g for g in m.groups() if g) for m in _REMOTE_LOADS.finditer(page)]
    lowered = page.lower()
    found += [host for host in CDN_HOSTS if host in lowered]
    return found


# --- vendored scripts ---------------------------------------------------------------


def vendor_dir() -> Path:
    """Where the pinned npm files are kept between runs."""
    if os.environ.get("IRSA_LAB_VENDOR_DIR"):
        return Path(os.environ["IRSA_LAB_VENDOR_DIR"])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "irsa-lab" / "vendor"


def _fetch(asset: NpmAsset, target: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise ExportError(
            f"the static export needs {asset.package}@{asset.version} from the npm registry, "
            "and npm is not installed (apt-get install -y npm), or put the package's files in "
            f"{target}"
        )
    with tempfile.TemporaryDirectory(prefix="irsa-lab-npm-") as tmp:
        proc = subprocess.run(
            [
                npm,
                "pack",
                f"{asset.package}@{asset.version}",
                "--pack-destination",
                tmp,
                "--silent",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            cwd=tmp,
        )
        tarballs = list(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or len(tarballs) != 1:
            raise ExportError(
                f"npm pack {asset.package}@{asset.version} failed: {proc.stderr.strip()[-500:]}"
            )
        data = tarballs[0].read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != asset.sha256:
            raise ExportError(
                f"{asset.package}@{asset.version}: tarball sha256 {digest} does not match "
                f"the pinned {asset.sha256}"
            )
        keep = [re.compile(k) for k in asset.keep]
        staging = Path(tmp) / "staging"
        with tarfile.open(tarballs[0]) as tar:
            for member in tar.getmembers():
                inner = member.name.split("/", 1)[-1]
                if member.isfile() and any(k.fullmatch(inner) for k in keep):
                    member.name = inner
                    tar.extract(member, staging, filter="data")
        if not (staging / asset.entry).is_file():
            raise ExportError(f"{asset.package}@{asset.version} has no {asset.entry}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(str(staging), str(target))


def vendored(name: str, *, cache: Path | None = None) -> Path:
    """The cached folder of asset ``name`` (see :data:`ASSETS`), fetched if missing."""
    asset = ASSETS[name]
    folder = (cache or vendor_dir()) / asset.folder
    if not (folder / asset.entry).is_file():
        _fetch(asset, folder)
    return folder


def _install_assets(names: Iterable[str], static: Path, cache: Path | None) -> None:
    for name in names:
        asset = ASSETS[name]
        dest = static / name
        if (dest / asset.entry).is_file():
            continue
        shutil.copytree(vendored(name, cache=cache), dest, dirs_exist_ok=True)


# --- running and rendering --------------------------------------------------------


def execute_notebook(
    path: Path, *, timeout: int = 300, allow_errors: bool = False, kernel_name: str = "python3"
) -> Any:
    """Run ``path`` in a fresh kernel started in its folder; the returned notebook holds
    the outputs and, in ``metadata.widgets``, the state of every widget it displayed."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=kernel_name,
        allow_errors=allow_errors,
        store_widget_state=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    try:
        client.execute()
    except CellExecutionError as err:
        raise ExportError(f"{path.name}: a cell failed:\n{err}") from err
    return nb


_TEMPLATE = r"""{%- extends 'lab/index.html.j2' -%}
{#- MathJax left out: the lessons contain no TeX, and its CDN script must not load. -#}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{#- embed-amd.js finds its icon fonts next to the AMD module's URL: map the module
    names to the local copy, or the fonts are looked for beside the page. -#}
{%- block html_head_js_requirejs -%}
{{ super() }}
<script>
require.config({ paths: {
  "@jupyter-widgets": "{{ resources.irsa_widgets_dist }}",
  "@jupyter-widgets/html-manager/dist": "{{ resources.irsa_widgets_dist }}"
} });
</script>
{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mermaidjs -%}
{%- if resources.irsa_mermaid_url -%}
<script src="{{ resources.irsa_mermaid_url }}"></script>
<script>
document.addEventListener("DOMContentLoaded", async () => {
  const blocks = document.querySelectorAll(".jp-Mermaid > pre.mermaid");
  if (!blocks.length || !window.mermaid) { return; }
  window.mermaid.initialize({ startOnLoad: false, maxTextSize: 100000 });
  let n = 0;
  for (const pre of blocks) {
    const parent = pre.parentNode;
    try {
      const { svg } = await window.mermaid.render("irsa-mermaid-" + n++, pre.textContent.trim());
      const img = document.createElement("img");
      img.src = "data:image/svg+xml," + encodeURIComponent(svg);
      img.alt = "sequence diagram";
      const figure = document.createElement("figure");
      figure.appendChild(img);
      parent.classList.add("jp-RenderedMermaid");
      pre.style.display = "none";  // the drawing replaces its source text
      parent.appendChild(figure);
    } catch (err) {
      parent.classList.add("jp-mod-warning");
      const warning = document.createElement("pre");
      warning.textContent = String(err);
      parent.appendChild(warning);
    }
  }
});
</script>
{%- endif -%}
{%- endblock html_head_js_mermaidjs -%}
"""


def _exporter(static_url: str) -> Any:
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        template_name="lab",
        extra_loaders=[DictLoader({"irsa_export.html.j2": _TEMPLATE})],
        template_file="irsa_export.html.j2",
        require_js_url=f"{static_url}/requirejs/{ASSETS['requirejs'].entry}",
        widget_renderer_url=f"{static_url}/html-manager/{ASSETS['html-manager'].entry}",
        jupyter_widgets_base_url=f"{static_url}/",
        mermaid_js_url=f"{static_url}/mermaid/{ASSETS['mermaid'].entry}",
        mermaid_layout_elk_js_url="",
        mathjax_url="",
        jquery_url="",
        # Markdown images (notebooks/images/...) go into the page as data: URLs, so a
        # page works alone, wherever it is copied.
        embed_images=True,
    )
    return exporter


def notebook_html(
    nb: Any, *, static_url: str = "static", folder: Path | None = None
) -> tuple[str, bool]:
    """The page for an executed notebook, its scripts loaded from ``static_url``, and
    whether it needs the mermaid asset. ``folder`` is where the notebook's relative
    image paths start."""
    dist = f"{static_url}/html-manager/dist"
    resources: dict[str, Any] = {
        "irsa_mermaid_url": "",
        "irsa_widgets_dist": dist,
        "metadata": {"path": str(folder or Path.cwd())},
    }
    page, _ = _exporter(static_url).from_notebook_node(nb, resources=resources)
    if 'class="jp-Mermaid"' not in page:
        return page, False
    resources["irsa_mermaid_url"] = f"{static_url}/mermaid/{ASSETS['mermaid'].entry}"
    page, _ = _exporter(static_url).from_notebook_node(nb, resources=resources)
    return page, True


# --- the command --------------------------------------------------------------------


@dataclass(frozen=True)
class ExportedPage:
    source: Path
    page: Path
    title: str
    widgets: int  # widget models saved in the page


def default_notebooks(root: Path) -> list[Path]:
    """The guided stages in order, then the labs (their solutions folder left out)."""
    return sorted(root.glob("notebooks/[0-9][0-9]-*.ipynb")) + sorted(root.glob("labs/*.ipynb"))


def _title(nb: Any, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip() or fallback
    return fallback


def _widget_count(nb: Any) -> int:
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    return len(state.get("state", {}))


def export_notebooks(
    notebooks: Sequence[Path],
    outdir: Path,
    *,
    root: Path | None = None,
    execute: bool = True,
    allow_errors: bool = False,
    timeout: int = 300,
    cache: Path | None = None,
) -> list[ExportedPage]:
    """Write one offline page per notebook into ``outdir`` (keeping each notebook's
    folder relative to ``root``), the shared scripts into ``outdir/static`` and an
    ``index.html`` linking the pages."""
    import nbformat

    outdir.mkdir(parents=True, exist_ok=True)
    static = outdir / "static"
    base = (root or Path.cwd()).resolve()
    _install_assets(("requirejs", "html-manager"), static, cache)
    pages: list[ExportedPage] = []
    for source in notebooks:
        source = source.resolve()
        try:
            rel = source.relative_to(base)
        except ValueError:
            rel = Path(source.name)
        target = (outdir / rel).with_suffix(".html")
        target.parent.mkdir(parents=True, exist_ok=True)
        if execute:
            nb = execute_notebook(source, timeout=timeout, allow_errors=allow_errors)
        else:
            nb = nbformat.read(source, as_version=4)
        static_url = os.path.relpath(static, target.parent).replace(os.sep, "/")
        page, needs_mermaid = notebook_html(nb, static_url=static_url, folder=source.parent)
        if needs_mermaid:
            _install_assets(("mermaid",), static, cache)
        remote = remote_references(page)
        if remote:
            raise ExportError(f"{rel}: the page would still load {sorted(set(remote))}")
        target.write_text(page, encoding="utf-8")
        pages.append(ExportedPage(source, target, _title(nb, source.stem), _widget_count(nb)))
    _write_index(outdir, pages)
    return pages


def _write_index(outdir: Path, pages: Sequence[ExportedPage]) -> None:
    items = "\n".join(
        f'<li><a href="{html.escape(p.page.relative_to(outdir).as_posix())}">'
        f"{html.escape(p.title)}</a> <small>({html.escape(p.source.name)})</small></li>"
        for p in pages
    )
    (outdir / "index.html").write_text(
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>irsa-lab</title></head>"
        f"<body><h1>irsa-lab: the lessons, readable offline</h1><ul>\n{items}\n</ul>"
        "</body></html>\n",
        encoding="utf-8",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m irsa_lab.export",
        description="Run the lessons and write static HTML pages that render offline.",
    )
    parser.add_argument("outdir", type=Path, help="folder for the pages (created)")
    parser.add_argument(
        "notebooks", nargs="*", type=Path, help="default: notebooks/NN-*.ipynb, labs/*.ipynb"
    )
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the repository checkout")
    parser.add_argument(
        "--no-execute", action="store_true", help="use the outputs stored in the notebooks"
    )
    parser.add_argument("--allow-errors", action="store_true", help="keep going past failing cells")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per cell")
    args = parser.parse_intermixed_args(argv)
    notebooks = list(args.notebooks) or default_notebooks(args.root)
    if not notebooks:
        print(f"no notebooks found under {args.root}", file=sys.stderr)
        return 2
    try:
        pages = export_notebooks(
            notebooks,
            args.outdir,
            root=args.root,
            execute=not args.no_execute,
            allow_errors=args.allow_errors,
            timeout=args.timeout,
        )
    except ExportError as err:
        print(f"export failed: {err}", file=sys.stderr)
        return 1
    for p in pages:
        print(f"{p.page} ({p.widgets} widget models)")
    print(f"open {args.outdir / 'index.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
