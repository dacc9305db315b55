"""kube.kubeconfig.to_yaml writes what PyYAML reads back unchanged (kubectl's Go YAML
reads the same subset: block style, plain or JSON-quoted strings)."""

from __future__ import annotations

import yaml
from hypothesis import given
from hypothesis import strategies as st

from irsa_lab.kube.kubeconfig import kubeconfig, to_yaml

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_scalars = st.none() | st.booleans() | st.integers() | _text
_documents = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=12,
)


@given(st.dictionaries(_text, _documents, max_size=4))
def test_any_document_reads_back_the_same(document: dict[str, object]) -> None:
    assert yaml.safe_load(to_yaml(document)) == document


def test_the_kubeconfig_reads_as_safe_dump_wrote_it() -> None:
    doc = kubeconfig("https://127.0.0.1:6443", b"PEM", "abc:def", namespace="no")
    text = to_yaml(doc)
    assert yaml.safe_load(text) == doc
    assert "server: https://127.0.0.1:6443\n" in text
    assert 'namespace: "no"\n' in text  # YAML 1.1 would read a plain no as false
