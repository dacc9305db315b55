"""The lessons as a learner sees them: JupyterLab in a real (headless) Chromium.

Each notebook and lab is opened in JupyterLab, its stored outputs cleared, and run
with the menu (Run → Run All Cells); then no cell may show a traceback, no widget
may fail to display, and each stage's widgets must be on screen. The interactive
tests then use the widgets as a learner would (type in a box, move a slider, tick an
annotation) and check that what the page shows follows. The key views are saved to
docs/screenshots/.

Every wait is on a concrete condition (a selector, the kernel's state, a text that
changed), with generous time limits: nothing here sleeps to synchronise.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browser_support import REPO, shutdown_kernels

pytestmark = pytest.mark.browser

LOAD_TIMEOUT_MS = 90_000  # JupyterLab's first load and a kernel start
RUN_TIMEOUT_MS = 300_000  # every cell of one notebook
UI_TIMEOUT_MS = 30_000  # one widget reacting to one change


@dataclass(frozen=True)
class Expect:
    """One thing a stage must show after Run All: what it is, and how to find it."""

    what: str
    selector: str


# The one table of what each stage must show (notebooks/NN-*.ipynb, by NN).
# Widget DOM is ipywidgets 8's: a control's description is its `.widget-label`.
_IMG_OUTPUT = ".jp-OutputArea-output img"
_EXPLORER = ".widget-vbox:has(> .widget-button:has-text('Recreate the probe pod'))"
STAGE_WIDGETS: dict[str, list[Expect]] = {
    "00": [],  # the welcome stage only has to run clean
    "01": [
        Expect(
            "the mutation explorer's 'Recreate the probe pod' button",
            ".widget-button:has-text('Recreate the probe pod')",
        ),
        Expect(
            "the mutation explorer's annotation controls",
            f"{_EXPLORER} .widget-checkbox input",
        ),
        Expect("the side-by-side diff of the pod", ".irsa-diff table"),
    ],
    "02": [
        Expect("the token decoder's JWT box", ".widget-textarea:has(.widget-label:text-is('JWT'))"),
        Expect("the token decoder's verification table", ".widget-html:has-text('Verification')"),
        Expect("the timeline's 'now' slider", ".widget-slider"),
        Expect("the timeline figure", ".widget-image"),
    ],
    "03": [
        Expect(
            "the playground's trust policy editor",
            ".widget-textarea:has(.widget-label:text-is('trust policy'))",
        ),
        Expect(
            "the playground's namespace box",
            ".widget-text:has(.widget-label:text-is('namespace')) input",
        ),
        Expect(
            "the playground's verdict",
            ".widget-html:has-text('ALLOWED'), .widget-html:has-text('DENIED')",
        ),
    ],
    "04": [Expect("the sequence diagram image", _IMG_OUTPUT)],
    "05": [Expect("the IMDS figure", _IMG_OUTPUT)],
    "06": [Expect("the Pod Identity sequence diagram image", _IMG_OUTPUT)],
}


def stage_of(notebook: Path) -> str | None:
    m = re.match(r"(\d\d)-", notebook.name)
    return m.group(1) if m and notebook.parent.name == "notebooks" else None


def lessons() -> list[Path]:
    """Every guided stage and every lab in the checkout, found by glob."""
    found = sorted(REPO.glob("notebooks/[0-9][0-9]-*.ipynb")) + sorted(REPO.glob("labs/*.ipynb"))
    return [p.relative_to(REPO) for p in found]


# --- driving JupyterLab -------------------------------------------------------------

_KERNEL_IDLE = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!(k && k.status === 'idle' && w.context.isReady);
}"""

_ALL_RUN = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  if (!k || k.status !== 'idle') { return false; }
  const cells = w.content.widgets.filter(c => c.model.type === 'code');
  const errored = cells.some(c => Array.from({length: c.model.outputs.length},
      (_, i) => c.model.outputs.get(i).type).includes('error'));
  const done = cells.every(c => c.model.executionCount !== null
      || c.model.sharedModel.getSource().trim() === '');
  return errored || done;
}"""

_ERRORS = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const out = [];
  w.content.widgets.forEach((c, n) => {
    if (c.model.type !== 'code') { return; }
    for (let i = 0; i < c.model.outputs.length; i++) {
      const o = c.model.outputs.get(i).toJSON();
      if (o.output_type === 'error') { out.push(`cell ${n}: ${o.ename}: ${o.evalue}`); }
    }
  });
  return out;
}"""


# Every widget output and every HTML table the lessons draw, measured after Run All: an
# element wider than its output area (its right edge past the area's, or a scrollable box
# whose content is wider than the box) is horizontal overflow, which hides columns.
_OVERFLOW = """() => {
  const outputs = Array.from(document.querySelectorAll('.jp-OutputArea-output'))
    .filter(o => o.querySelector('.jupyter-widgets, table') !== null);
  const found = [];
  const name = e => e.tagName.toLowerCase() + (e.className && e.className.baseVal === undefined
      ? '.' + String(e.className).trim().split(/\\s+/).slice(0, 2).join('.') : '');
  outputs.forEach(o => {
    const box = o.getBoundingClientRect();
    if (box.width === 0) { return; }
    const cell = o.closest('.jp-Cell');
    const at = cell ? Array.from(cell.parentElement.children).indexOf(cell) : -1;
    o.querySelectorAll('*').forEach(e => {
      const r = e.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) { return; }
      const style = getComputedStyle(e);
      const scrolls = ['auto', 'scroll'].includes(style.overflowX);
      if (r.right > box.right + 1) {
        found.push(`cell ${at}: ${name(e)} ends ${Math.round(r.right - box.right)} px past`
            + ` its ${Math.round(box.width)} px output area`);
      } else if (scrolls && e.scrollWidth > e.clientWidth + 1) {
        found.push(`cell ${at}: ${name(e)} scrolls: ${e.scrollWidth} px of content in`
            + ` ${e.clientWidth} px`);
      }
    });
  });
  return found;
}"""

VIEWPORT = {"width": 1280, "height": 2400}  # a workshop laptop or projector


@dataclass
class OpenNotebook:
    page: Any
    path: Path

    def cell_with(self, selector: str) -> Any:
        """The first notebook cell that holds ``selector``."""
        return (
            self.page.locator(".jp-Notebook .jp-Cell").filter(has=self.page.locator(selector)).first
        )


def open_notebook(page: Any, base_url: str, path: Path) -> OpenNotebook:
    page.goto(f"{base_url}/lab/tree/{path.as_posix()}?reset", timeout=LOAD_TIMEOUT_MS)
    page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for(timeout=LOAD_TIMEOUT_MS)
    dialog = page.locator(".jp-Dialog .jp-mod-accept")  # "Select Kernel", if asked
    page.wait_for_function(
        f"() => document.querySelector('.jp-Dialog') !== null || ({_KERNEL_IDLE})()",
        timeout=LOAD_TIMEOUT_MS,
    )
    if dialog.count():
        dialog.first.click()
    page.wait_for_function(_KERNEL_IDLE, timeout=LOAD_TIMEOUT_MS)
    return OpenNotebook(page, path)


def run_all(nb: OpenNotebook) -> None:
    """Clear the stored outputs, then Run → Run All Cells, as a learner would."""
    page = nb.page
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget.content.widgets"
        ".every(c => c.model.type !== 'code' || c.model.executionCount === null)",
        timeout=UI_TIMEOUT_MS,
    )
    page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    page.wait_for_function(_ALL_RUN, timeout=RUN_TIMEOUT_MS)


def assert_ran_clean(nb: OpenNotebook) -> None:
    page = nb.page
    errors = page.evaluate(_ERRORS)
    tracebacks = page.locator(
        '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]',
        has_text="Traceback",
    )
    assert not errors, f"{nb.path}: cells raised: {errors}"
    assert tracebacks.count() == 0, (
        f"{nb.path}: a traceback is shown: {tracebacks.first.inner_text()}"
    )
    broken = page.get_by_text("Error displaying widget")
    assert broken.count() == 0, f"{nb.path}: 'Error displaying widget' is shown"


def assert_fits_the_cell(nb: OpenNotebook) -> None:
    """No widget output or table is wider than its output area at the test's viewport."""
    wide = nb.page.evaluate(_OVERFLOW)
    where = f"{nb.path}: horizontal overflow at {VIEWPORT['width']} px"
    assert not wide, f"{where}: " + "; ".join(wide[:8])


def assert_stage_widgets(nb: OpenNotebook) -> None:
    stage = stage_of(nb.path)
    if stage is None:
        return
    assert stage in STAGE_WIDGETS, (
        f"{nb.path}: stage {stage} is not in STAGE_WIDGETS; say there what it must show"
    )
    for expect in STAGE_WIDGETS[stage]:
        found = nb.page.locator(expect.selector).first
        try:
            found.wait_for(state="visible", timeout=UI_TIMEOUT_MS)
        except Exception as err:  # playwright's TimeoutError: say what is missing
            raise AssertionError(
                f"{nb.path}: stage {stage} should show {expect.what} "
                f"(selector {expect.selector!r}), and it is not on the page"
            ) from err
        if expect.selector == _IMG_OUTPUT:
            nb.page.wait_for_function(
                "() => Array.from(document.querySelectorAll('.jp-OutputArea-output img'))"
                ".some(i => i.complete && i.naturalWidth > 0)",
                timeout=UI_TIMEOUT_MS,
            )


@pytest.fixture
def page(browser: Any, jupyter_lab: str) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    try:
        yield page
    finally:
        context.close()
        shutdown_kernels(jupyter_lab)


def ran(page: Any, base_url: str, path: Path) -> OpenNotebook:
    nb = open_notebook(page, base_url, path)
    run_all(nb)
    assert_ran_clean(nb)
    return nb


def stage_notebook(stage: str) -> Path:
    found = [p for p in lessons() if stage_of(p) == stage]
    assert found, f"no notebooks/{stage}-*.ipynb in the checkout"
    return found[0]


def shoot(nb: OpenNotebook, selector: str, target: Path) -> None:
    """Save the output area of the first cell showing ``selector``."""
    output = nb.cell_with(selector).locator(".jp-OutputArea").first
    output.scroll_into_view_if_needed()
    output.screenshot(path=str(target))


# --- the tests ----------------------------------------------------------------------


def test_every_stage_in_the_widget_table_has_its_notebook() -> None:
    stages = {stage_of(p) for p in lessons()}
    missing = sorted(set(STAGE_WIDGETS) - stages)
    assert not missing, f"no notebook for stage(s) {missing} under notebooks/"


@pytest.mark.parametrize("path", lessons(), ids=lambda p: p.as_posix())
def test_notebook_runs_in_jupyterlab_without_errors_and_shows_its_widgets(
    page: Any, jupyter_lab: str, path: Path
) -> None:
    nb = ran(page, jupyter_lab, path)
    assert_stage_widgets(nb)
    assert_fits_the_cell(nb)


def test_changing_the_namespace_in_the_playground_changes_the_verdict(
    page: Any, jupyter_lab: str, screenshots: Path
) -> None:
    nb = ran(page, jupyter_lab, stage_notebook("03"))
    assert_stage_widgets(nb)
    playground = (
        page.locator(".widget-vbox")
        .filter(has=page.locator(".widget-label:text-is('namespace')"))
        .filter(has=page.locator(".widget-label:text-is('trust policy')"))
        .last
    )
    verdict = playground.locator(".widget-html", has_text=re.compile("ALLOWED|DENIED")).first
    # Start from the article's situation: the "correct" preset is allowed.
    playground.locator(
        ".widget-dropdown:has(.widget-label:text-is('preset')) select"
    ).select_option("correct")
    playground.locator(".widget-html", has_text="ALLOWED").first.wait_for()
    shoot(nb, ".widget-label:text-is('trust policy')", screenshots / "03-playground.png")
    box = playground.locator(".widget-text:has(.widget-label:text-is('namespace')) input")
    box.fill("kube-system")
    box.press("Enter")
    denied = playground.locator(".widget-html", has_text="DENIED").first
    denied.wait_for()
    # The failed check is the sub condition, and it shows the namespace typed in.
    failed_row = denied.locator("tr", has_text="FAILED").first
    assert ":sub" in failed_row.inner_text()
    assert "system:serviceaccount:kube-system:" in failed_row.inner_text()
    assert "ALLOWED" not in verdict.inner_text()
    assert_fits_the_cell(nb)
    shoot(nb, ".widget-label:text-is('trust policy')", screenshots / "03-playground-denied.png")


def test_moving_the_timeline_slider_moves_the_clock_and_redraws(
    page: Any, jupyter_lab: str, screenshots: Path
) -> None:
    nb = ran(page, jupyter_lab, stage_notebook("02"))
    assert_stage_widgets(nb)
    shoot(nb, ".widget-label:text-is('JWT')", screenshots / "02-token-decoder.png")
    timeline = (
        page.locator(".widget-vbox")
        .filter(has=page.locator(".widget-slider"))
        .filter(has=page.locator(".widget-image"))
        .last
    )
    caption = timeline.locator(".widget-html").last
    image = timeline.locator(".widget-image").first
    caption.wait_for()
    before_caption = caption.inner_text()
    before_src = image.get_attribute("src")
    handle = timeline.locator(".noUi-handle").first
    handle.focus()
    handle.press("End")  # the slider's keyboard control: jump to the last second
    page.wait_for_function(
        "([el, old]) => el.innerText !== old",
        arg=[caption.element_handle(), before_caption],
        timeout=UI_TIMEOUT_MS,
    )
    assert caption.inner_text() != before_caption
    page.wait_for_function(
        "([img, old]) => img.getAttribute('src') !== old && img.complete && img.naturalWidth > 0",
        arg=[image.element_handle(), before_src],
        timeout=UI_TIMEOUT_MS,
    )
    shoot(nb, ".widget-slider", screenshots / "02-timeline.png")


def test_ticking_the_skip_label_in_the_mutation_explorer_changes_the_diff(
    page: Any, jupyter_lab: str, screenshots: Path
) -> None:
    nb = ran(page, jupyter_lab, stage_notebook("01"))
    assert_stage_widgets(nb)
    shoot(
        nb,
        ".jp-OutputArea-output > .irsa-diff, .jp-RenderedHTML .irsa-diff",
        screenshots / "01-side-by-side-diff.png",
    )
    explorer = page.locator(_EXPLORER).last
    diff = explorer.locator(".irsa-diff").first
    diff.wait_for()
    before = diff.inner_text()
    explorer.locator(".widget-checkbox input").first.check()
    explorer.locator(".widget-button", has_text="Recreate the probe pod").click()
    page.wait_for_function(
        "([box, old]) => { const d = box.querySelector('.irsa-diff');"
        " return d !== null && d.innerText !== old; }",
        arg=[explorer.element_handle(), before],
        timeout=UI_TIMEOUT_MS,
    )
    assert explorer.locator(".irsa-diff").first.inner_text() != before
    assert_fits_the_cell(nb)
    shoot(nb, _EXPLORER, screenshots / "01-mutation-explorer.png")


def test_stage_4_and_stage_5_figures_are_drawn(
    page: Any, jupyter_lab: str, screenshots: Path
) -> None:
    for stage, name in (("04", "04-sequence-diagram.png"), ("05", "05-imds.png")):
        nb = ran(page, jupyter_lab, stage_notebook(stage))
        assert_stage_widgets(nb)
        shoot(nb, _IMG_OUTPUT, screenshots / name)
