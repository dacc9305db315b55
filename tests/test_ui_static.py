"""The stored output of a widget cell reads as text where no widget can be drawn."""

import ipywidgets as widgets

from irsa_lab.ui.static import RUN_TO_USE, StaticFallback


class _Gauge(StaticFallback, widgets.VBox):
    def static_title(self) -> str:
        return "Gauge <demo>"

    def static_lines(self) -> list[str]:
        return ["level: 3", "state: ok & steady"]


def test_a_widget_with_the_fallback_keeps_its_view_and_replaces_the_python_repr() -> None:
    bundle = _Gauge()._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"]
    assert bundle["text/plain"] == f"Gauge <demo>. {RUN_TO_USE}\nlevel: 3\nstate: ok & steady"
    assert "children=" not in bundle["text/plain"]


def test_the_html_fallback_escapes_the_widget_state() -> None:
    html = _Gauge()._repr_mimebundle_()["text/html"]
    assert "<b>Gauge &lt;demo&gt;</b>" in html
    assert "<li>state: ok &amp; steady</li>" in html
