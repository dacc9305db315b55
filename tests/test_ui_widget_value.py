"""A view's text attribute is its widget's value: setting it is what typing would do."""

from __future__ import annotations

import ipywidgets as widgets

from irsa_lab.ui.widget_value import WidgetText


class _View:
    text = WidgetText("box")

    def __init__(self) -> None:
        self.box = widgets.Text(value="first")
        self.seen: list[str] = []
        self.box.observe(lambda change: self.seen.append(change["new"]), names="value")


def test_reading_the_attribute_reads_the_widget() -> None:
    view = _View()
    assert view.text == "first"
    view.box.value = "typed"
    assert view.text == "typed"


def test_setting_the_attribute_sets_the_widget_and_its_observers_run() -> None:
    view = _View()
    view.text = "set from Python"
    assert view.box.value == "set from Python"
    assert view.seen == ["set from Python"]


def test_the_class_attribute_is_the_descriptor_itself() -> None:
    assert isinstance(_View.text, WidgetText)
    assert _View.text.widget == "box"
