"""The static export without a browser, a kernel or the network: the pages it writes
load only local scripts, and the vendoring of npm files is pinned and checked."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import nbformat
import pytest

from irsa_lab import export
from irsa_lab.export import (
    ASSETS,
    ExportError,
    NpmAsset,
    default_notebooks,
    notebook_html,
    remote_references,
    vendored,
)

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def widget_notebook() -> nbformat.NotebookNode:
    """A notebook as nbclient leaves it: a widget view output and the saved state."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Stage 3: the trust policy playground"),
        nbformat.v4.new_code_cell(
            "pg",
            execution_count=1,
            outputs=[
                nbformat.v4.new_output(
                    "display_data",
                    data={
                        WIDGET_VIEW: {"model_id": "m1", "version_major": 2, "version_minor": 0},
                        "text/plain": "Playground(...)",
                    },
                )
            ],
        ),
    ]
    nb.metadata["widgets"] = {
        WIDGET_STATE: {
            "version_major": 2,
            "version_minor": 0,
            "state": {
                "m1": {
                    "model_name": "HTMLModel",
                    "model_module": "@jupyter-widgets/controls",
                    "model_module_version": "2.0.0",
                    "state": {"value": "<b>ALLOWED</b>"},
                }
            },
        }
    }
    return nb


def test_remote_references_finds_cdn_scripts_module_imports_and_css_urls() -> None:
    page = (
        '<script src="https://cdnjs.cloudflare.com/ajax/libs/require.js/2.1.10/require.min.js">'
        "</script>"
        '<script type="module">const m = await import("https://example.org/mermaid.mjs");</script>'
        "<style>@import url(https://fonts.example.org/css);</style>"
        '<link rel="stylesheet" href="//cdn.example.org/x.css">'
    )
    found = remote_references(page)
    assert "https://cdnjs.cloudflare.com/ajax/libs/require.js/2.1.10/require.min.js" in found
    assert "https://example.org/mermaid.mjs" in found
    assert "https://fonts.example.org/css" in found
    assert "//cdn.example.org/x.css" in found
    assert "cdnjs.cloudflare.com" in found  # the host itself is named too


def test_plain_links_and_local_scripts_are_not_remote_loads() -> None:
    page = (
        '<a href="https://docs.aws.amazon.com/eks/">the EKS docs</a>'
        '<script src="../static/requirejs/require.js"></script>'
        "<pre>iss: https://oidc.eks.eu-west-1.amazonaws.com/id/ABC</pre>"
    )
    assert remote_references(page) == []


def test_a_mention_of_a_cdn_host_anywhere_is_reported() -> None:
    assert remote_references("var base = 'https://unpkg.com/';") == ["unpkg.com"]


def test_a_page_with_widget_state_loads_only_the_local_widget_manager() -> None:
    page, needs_mermaid = notebook_html(widget_notebook(), static_url="../static")
    assert remote_references(page) == []
    assert '<script src="../static/requirejs/require.js"></script>' in page
    assert "'../static/html-manager/dist/embed-amd.js'" in page
    assert '"@jupyter-widgets": "../static/html-manager/dist"' in page
    assert WIDGET_STATE in page and WIDGET_VIEW in page
    assert '"value": "<b>ALLOWED<\\/b>"' in page  # the saved state, "</" escaped
    assert not needs_mermaid
    assert "mermaid.min.js" not in page and "mermaid.esm" not in page


def test_a_mermaid_block_brings_the_local_classic_mermaid_build() -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("```mermaid\nsequenceDiagram\n  A->>B: hi\n```")]
    page, needs_mermaid = notebook_html(nb, static_url="static")
    assert needs_mermaid
    assert '<script src="static/mermaid/dist/mermaid.min.js"></script>' in page
    assert "import(" not in page  # the ES module build does not load from file://
    assert remote_references(page) == []


def test_markdown_images_are_embedded_so_a_page_stands_alone(tmp_path: Path) -> None:
    png = bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "map.png").write_bytes(png)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("![the chain](images/map.png)")]
    page, _ = notebook_html(nb, folder=tmp_path)
    assert 'src="data:image/png;base64,' in page
    assert "images/map.png" not in page


# --- vendoring ------------------------------------------------------------------------


def fake_tarball(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def fake_npm(bin_dir: Path, tarball: bytes) -> Path:
    """An `npm` that answers `npm pack NAME --pack-destination DIR` with ``tarball``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "package.tgz").write_bytes(tarball)
    log = bin_dir / "calls.log"
    script = bin_dir / "npm"
    script.write_text(
        f"#!{sys.executable}\n"
        "import shutil, sys\n"
        f"open({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        "dest = sys.argv[sys.argv.index('--pack-destination') + 1]\n"
        f"shutil.copy({str(bin_dir / 'package.tgz')!r}, dest + '/fake-1.0.0.tgz')\n"
    )
    script.chmod(0o755)
    return log


FILES = {"dist/app.js": b"define([], function () {});", "dist/app.js.map": b"{}", "LICENSE": b"MIT"}


def fake_asset(sha256: str) -> NpmAsset:
    return NpmAsset("fake", "1.0.0", sha256, (r"dist/app\.js", r"LICENSE"), "dist/app.js")


def test_vendoring_keeps_only_the_listed_files_and_fetches_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tarball = fake_tarball(FILES)
    log = fake_npm(tmp_path / "bin", tarball)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setitem(ASSETS, "fake", fake_asset(hashlib.sha256(tarball).hexdigest()))
    folder = vendored("fake", cache=tmp_path / "cache")
    kept = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert kept == ["LICENSE", "dist/app.js"]
    assert vendored("fake", cache=tmp_path / "cache") == folder
    assert log.read_text().splitlines() == [
        f"pack fake@1.0.0 --pack-destination {log.read_text().split()[3]} --silent"
    ]


def test_a_tarball_that_does_not_match_its_pinned_checksum_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_npm(tmp_path / "bin", fake_tarball(FILES))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setitem(ASSETS, "fake", fake_asset("0" * 64))
    with pytest.raises(ExportError, match="does not match the pinned"):
        vendored("fake", cache=tmp_path / "cache")
    assert not (tmp_path / "cache" / "fake-1.0.0").exists()


def test_without_npm_the_error_says_how_to_get_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ExportError, match=r"apt-get install -y npm"):
        vendored("requirejs", cache=tmp_path / "cache")


def test_every_pinned_asset_has_a_sha256_and_keeps_its_entry_script() -> None:
    import re

    for name, asset in ASSETS.items():
        assert re.fullmatch(r"[0-9a-f]{64}", asset.sha256), name
        assert any(re.fullmatch(k, asset.entry) for k in asset.keep), name


# --- the command ----------------------------------------------------------------------


def fill_cache(cache: Path) -> None:
    """Stand-ins for the vendored files, so the command runs without npm."""
    for asset in ASSETS.values():
        entry = cache / asset.folder / asset.entry
        entry.parent.mkdir(parents=True, exist_ok=True)
        entry.write_text("/* stand-in */\n")


def test_the_command_writes_a_page_per_notebook_an_index_and_the_scripts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    nbformat.write(widget_notebook(), root / "notebooks" / "03-playground.ipynb")
    fill_cache(tmp_path / "cache")
    monkeypatch.setenv("IRSA_LAB_VENDOR_DIR", str(tmp_path / "cache"))
    out = tmp_path / "site"
    code = export.main([str(out), "--root", str(root), "--no-execute"])
    assert code == 0
    page = out / "notebooks" / "03-playground.html"
    assert page.is_file()
    assert (out / "static" / "requirejs" / "require.js").is_file()
    assert (out / "static" / "html-manager" / "dist" / "embed-amd.js").is_file()
    assert not (out / "static" / "mermaid").exists()
    index = (out / "index.html").read_text()
    assert 'href="notebooks/03-playground.html"' in index
    assert "Stage 3: the trust policy playground" in index
    assert "1 widget models" in capsys.readouterr().out


def test_default_notebooks_are_the_stages_in_order_then_the_labs(tmp_path: Path) -> None:
    for rel in (
        "notebooks/02-b.ipynb",
        "notebooks/00-a.ipynb",
        "notebooks/scratch.ipynb",
        "labs/01-x.ipynb",
        "labs/solutions/01-x.ipynb",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(json.dumps({}))
    found = [p.relative_to(tmp_path).as_posix() for p in default_notebooks(tmp_path)]
    assert found == ["notebooks/00-a.ipynb", "notebooks/02-b.ipynb", "labs/01-x.ipynb"]
