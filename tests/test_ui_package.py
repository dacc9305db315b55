"""``irsa_lab.ui`` imports its modules on first use, and the playground's names stay where
the notebooks and lessons import them from."""

from __future__ import annotations

import subprocess
import sys

import irsa_lab.ui
from irsa_lab.ui import playground, trust_presets, trust_verdict


def test_every_module_the_package_lists_is_an_attribute_of_it() -> None:
    for name in irsa_lab.ui.__all__:
        assert getattr(irsa_lab.ui, name).__name__ == f"irsa_lab.ui.{name}"


def test_importing_the_package_imports_no_widget_module() -> None:
    code = "import sys, irsa_lab.ui; print('irsa_lab.ui.playground' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]


def test_the_playground_module_offers_the_verdict_and_the_presets_it_is_built_on() -> None:
    assert playground.judge is trust_verdict.judge
    assert playground.Verdict is trust_verdict.Verdict
    assert playground.ConditionRow is trust_verdict.ConditionRow
    assert playground.trust_policy_text is trust_presets.trust_policy_text
    assert playground.presets is trust_presets.presets
    assert playground.PRESETS == tuple(trust_presets.presets("https://issuer.example"))
