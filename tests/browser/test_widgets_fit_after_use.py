"""The playground and the decoder still fit their cell once used, not only as Run All
leaves them: a denied verdict's checks table, the two verdicts of "Try it for real" side
by side, and a tampered token's verification table, measured in Chromium at 1280 px.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from browser_support import shutdown_kernels
from test_jupyterlab import (
    UI_TIMEOUT_MS,
    VIEWPORT,
    assert_fits_the_cell,
    ran,
    stage_notebook,
)

pytestmark = pytest.mark.browser


@pytest.fixture
def page(browser: Any, jupyter_lab: str) -> Iterator[Any]:
    """A JupyterLab tab at the suite's viewport (as test_jupyterlab's ``page``)."""
    context = browser.new_context(viewport=VIEWPORT)
    tab = context.new_page()
    tab.set_default_timeout(UI_TIMEOUT_MS)
    try:
        yield tab
    finally:
        context.close()
        shutdown_kernels(jupyter_lab)


def _widget(page: Any, *labels: str) -> Any:
    """The widget box holding a label for each of ``labels``."""
    box = page.locator(".widget-vbox")
    for label in labels:
        box = box.filter(has=page.locator(f".widget-label:text-is('{label}')"))
    return box.last


def test_a_denied_playground_and_its_real_verdict_beside_it_fit_the_cell(
    page: Any, jupyter_lab: str
) -> None:
    nb = ran(page, jupyter_lab, stage_notebook("03"))
    playground = _widget(page, "namespace", "trust policy")
    playground.locator(
        ".widget-dropdown:has(.widget-label:text-is('preset')) select"
    ).select_option("https:// in the condition key")
    playground.locator(".widget-html", has_text="DENIED").first.wait_for()
    playground.get_by_role("button", name=re.compile("Try it for real")).click()
    columns = playground.locator(".widget-html", has_text="the real STS stand-in answers")
    columns.wait_for(timeout=60_000)
    # Two real columns: the prediction's table and the real answer's, side by side.
    tables = columns.locator("table table")
    assert tables.count() == 2
    left, right = (tables.nth(i).bounding_box() for i in range(2))
    assert left is not None and right is not None
    assert left["x"] + left["width"] <= right["x"] + 1
    assert abs(left["y"] - right["y"]) < 40
    why = playground.locator("th", has_text=re.compile("^why$")).first
    assert why.is_visible()
    assert_fits_the_cell(nb)


def test_a_tampered_token_in_the_decoder_fits_the_cell(page: Any, jupyter_lab: str) -> None:
    nb = ran(page, jupyter_lab, stage_notebook("02"))
    decoder = _widget(page, "JWT", "claim")
    decoder.get_by_role("button", name=re.compile("Tamper")).click()
    decoder.locator(".widget-html", has_text="token rejected").first.wait_for()
    assert decoder.locator("th", has_text="where IAM/STS uses it").first.is_visible()
    assert_fits_the_cell(nb)
