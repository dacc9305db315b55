"""The static HTML export, opened in Chromium with the network off.

The lessons are exported once per session (``irsa_lab.export``: each notebook run in
a fresh kernel, widget state saved). Each page is then opened from ``file://`` in a
browser context that is offline and whose router aborts, and counts, every request
that is not ``file:``, ``data:`` or ``blob:``. The widgets must come out of the saved
state as real DOM, the images and diagrams must load, and no request may leave.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from browser_support import REPO

from irsa_lab.export import (
    ASSETS,
    ExportedPage,
    default_notebooks,
    export_notebooks,
    remote_references,
    vendor_dir,
)

pytestmark = pytest.mark.browser

RENDER_TIMEOUT_MS = 60_000
LOCAL_SCHEMES = ("file", "data", "blob")

# What each exported stage must show, rendered from saved state alone (no kernel).
EXPORT_SHOWS: dict[str, list[tuple[str, str]]] = {
    "01": [
        ("the side-by-side diff", ".irsa-diff table"),
        ("the mutation explorer's checkbox", ".widget-checkbox input"),
    ],
    "02": [
        ("the token decoder's JWT box", ".widget-textarea:has(.widget-label:text-is('JWT'))"),
        ("the timeline slider", ".widget-slider"),
        ("the timeline figure", ".widget-image"),
    ],
    "03": [
        (
            "the playground's trust policy",
            ".widget-textarea:has(.widget-label:text-is('trust policy'))",
        ),
        (
            "the playground's verdict",
            ".widget-html:has-text('ALLOWED'), .widget-html:has-text('DENIED')",
        ),
    ],
    "04": [
        ("the sequence diagram image", ".jp-OutputArea-output img"),
        ("the mermaid diagram", ".jp-RenderedMermaid img"),
    ],
    "05": [("the IMDS figure", ".jp-OutputArea-output img")],
    "06": [("the Pod Identity sequence diagram", ".jp-OutputArea-output img")],
}


@pytest.fixture(scope="session")
def exported(
    lab_copy: Path, tmp_path_factory: pytest.TempPathFactory, browser_available: None
) -> list[ExportedPage]:
    cached = all((vendor_dir() / a.folder / a.entry).is_file() for a in ASSETS.values())
    if not cached and shutil.which("npm") is None:
        pytest.skip(
            "the export vendors the widget manager from the npm registry: needs npm "
            "(apt-get install -y npm)"
        )
    notebooks = default_notebooks(lab_copy)
    if not notebooks:
        pytest.fail(f"no notebooks under {REPO}/notebooks or {REPO}/labs to export")
    out = tmp_path_factory.mktemp("export")
    return export_notebooks(notebooks, out, root=lab_copy)


@dataclass
class OfflinePage:
    page: Any
    left: list[str] = field(default_factory=list)  # requests that tried to leave
    errors: list[str] = field(default_factory=list)  # uncaught page errors
    missing: list[str] = field(default_factory=list)  # local files the page asked for in vain


@pytest.fixture
def offline(browser: Any) -> Iterator[OfflinePage]:
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    context.set_offline(True)
    page = context.new_page()
    seen = OfflinePage(page)

    def route(r: Any) -> None:
        if r.request.url.split(":", 1)[0] in LOCAL_SCHEMES:
            r.continue_()
        else:
            seen.left.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page.on("pageerror", lambda err: seen.errors.append(str(err)))
    page.on(
        "requestfailed",
        lambda req: seen.missing.append(req.url) if req.url.startswith("file:") else None,
    )
    page.set_default_timeout(RENDER_TIMEOUT_MS)
    try:
        yield seen
    finally:
        context.close()


def stage(page: ExportedPage) -> str | None:
    m = re.match(r"(\d\d)-", page.source.name)
    return m.group(1) if m and page.source.parent.name == "notebooks" else None


def load(offline: OfflinePage, exported_page: ExportedPage) -> None:
    """Open a page and wait until its saved widgets are drawn and its images loaded."""
    page = offline.page
    page.goto(exported_page.page.as_uri())
    views = page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count()
    if views:
        # The html manager draws each view into a .widget-subarea beside its script.
        page.wait_for_function(
            """() => Array.from(document.querySelectorAll(
                  'script[type="application/vnd.jupyter.widget-view+json"]'))
                .every(s => s.parentElement.querySelector('.widget-subarea .jupyter-widgets'))""",
            timeout=RENDER_TIMEOUT_MS,
        )
    page.wait_for_function(
        "() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)",
        timeout=RENDER_TIMEOUT_MS,
    )


def test_the_export_leaves_no_cdn_url_in_any_page(exported: list[ExportedPage]) -> None:
    for p in exported:
        html = p.page.read_text(encoding="utf-8")
        assert remote_references(html) == [], p.page
        for src in re.findall(r"<script[^>]*\bsrc=\"([^\"]+)\"", html):
            assert (p.page.parent / src).resolve().is_file(), f"{p.page}: {src} is missing"


def test_the_stages_with_widgets_saved_their_widget_state(exported: list[ExportedPage]) -> None:
    with_widgets = {stage(p): p.widgets for p in exported if stage(p) in ("01", "02", "03")}
    assert with_widgets, "no stage 01-03 page was exported"
    assert all(n > 0 for n in with_widgets.values()), with_widgets


def test_every_exported_page_renders_offline_and_nothing_leaves_the_machine(
    exported: list[ExportedPage], offline: OfflinePage
) -> None:
    for p in exported:
        load(offline, p)
        broken = offline.page.get_by_text("Error displaying widget")
        assert broken.count() == 0, f"{p.page.name}: 'Error displaying widget'"
        for what, selector in EXPORT_SHOWS.get(stage(p) or "", []):
            found = offline.page.locator(selector).first
            try:
                found.wait_for(state="visible")
            except Exception as err:  # playwright's TimeoutError: say what is missing
                raise AssertionError(
                    f"{p.page.name}: the offline page should show {what} ({selector!r})"
                ) from err
    assert offline.left == [], f"requests tried to leave the machine: {offline.left}"
    assert offline.errors == [], f"page errors: {offline.errors}"
    # e.g. the widget manager's icon fonts, looked for beside the page
    assert offline.missing == [], f"local files not found: {offline.missing}"


def test_the_offline_playground_shows_its_verdict_and_the_timeline_its_slider(
    exported: list[ExportedPage], offline: OfflinePage, screenshots: Path
) -> None:
    pages = {stage(p): p for p in exported}
    assert "02" in pages and "03" in pages, sorted(k for k in pages if k)
    load(offline, pages["03"])
    page = offline.page
    verdict = page.locator(".widget-html", has_text=re.compile("ALLOWED|DENIED")).first
    assert re.search(r"(ALLOWED|DENIED)", verdict.inner_text())
    namespace = page.locator(".widget-text:has(.widget-label:text-is('namespace')) input").first
    assert namespace.input_value() != ""
    playground = page.locator(".widget-vbox").filter(has=verdict).last
    playground.screenshot(path=str(screenshots / "export-03-playground-offline.png"))

    load(offline, pages["02"])
    slider = page.locator(".widget-slider").first
    assert slider.locator(".widget-readout").inner_text().strip() != ""
    image = page.locator(".widget-image").first
    assert image.evaluate("img => img.naturalWidth") > 0
    assert offline.left == []
