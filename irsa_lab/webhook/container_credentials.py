"""The Pod Identity mode's config file: written from the associations, read as upstream does.

The upstream webhook learns which pods get Pod Identity settings only from the JSON file
named by ``--watch-container-credentials-config`` (docs/reference/pod-identity.md §5.1,
§5.2): ``{"identities": [{"namespace": ..., "serviceAccount": ...}]}``. On EKS the
control plane keeps that file in step with the Pod Identity associations; here
:class:`ConfigFileSync` does, for both the embedded webhook and the upstream binary on
the ``k8s`` backend:

* :func:`write_config` writes the file atomically (a temporary file in the same
  directory, renamed onto the path): the upstream fsnotify watcher sees one event with the
  file's own name and never reads a half-written file (§5.3);
* :class:`IdentitiesFile` is the embedded webhook's reader: it reads the file on each
  admission request and parses it again only when the bytes changed, so the reload
  follows the write at once (upstream reloads within milliseconds, §5.3). A missing or
  empty file means no identities; a file that does not parse keeps the previous ones
  (§5.2).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol, Self

__all__ = [
    "AssociationsLike",
    "CONFIG_FILE",
    "CONFIG_LOADED_LINES",
    "ConfigFileSync",
    "IdentitiesFile",
    "IdentitiesSync",
    "config_path",
    "parse_identities",
    "render_config",
    "replace_file",
    "write_config",
]

# Where the lab keeps the file, under its state directory.
CONFIG_FILE = Path("pod-identity") / "identities.json"
# What the upstream webhook logs when it (re)loads the file (§5.2): the one sign of a
# reload it gives, which the k8s and kind backends wait for.
CONFIG_LOADED_LINES = (
    "Successfully loaded container credentials config file",
    "Container credentials config file is empty, clearing cache",
)


class AssociationsLike(Protocol):
    """What a sync needs of :class:`irsa_lab.aws.eks.associations.Associations`."""

    on_change: list[Callable[[], None]]

    def identities(self) -> list[tuple[str, str]]: ...


def config_path(state_dir: Path) -> Path:
    """The absolute, clean path of the config file under ``state_dir`` (§5.3: the watcher
    matches events on the exact name given to the flag)."""
    return Path(os.path.abspath(state_dir / CONFIG_FILE))


def render_config(identities: Iterable[tuple[str, str]]) -> bytes:
    """The file's bytes: §5.2's format, identities sorted and de-duplicated."""
    items = [{"namespace": ns, "serviceAccount": sa} for ns, sa in sorted(set(identities))]
    return (json.dumps({"identities": items}, indent=1) + "\n").encode()


def write_config(path: Path, identities: Iterable[tuple[str, str]]) -> bytes:
    """Atomically replace ``path`` with the identities (§5.3); returns the bytes written."""
    data = render_config(identities)
    replace_file(path, data)
    return data


def replace_file(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` by a rename from a temporary file beside it (§5.3)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class IdentitiesSync:
    """Keeps an identities file equal to the associations' identities.

    :meth:`start` writes it once and subscribes to ``associations.on_change``; each change
    renders the file again, runs ``before_write`` (optional), replaces the file with
    :meth:`replace` and bumps :attr:`generation`, so a waiter can tell that a newer file
    exists. ``before_write`` is for a webhook that reloads asynchronously: it may log the
    reload before the writer's next line runs, so a waiter counts the loads first.
    Subclasses say where the file is (:meth:`replace`).
    """

    def __init__(
        self,
        associations: AssociationsLike,
        *,
        before_write: Callable[[], None] | None = None,
    ) -> None:
        self.associations = associations
        self.before_write = before_write
        self.generation = 0
        self.written = b""
        self._lock = threading.Lock()

    def start(self) -> Self:
        self.write()
        if self.write not in self.associations.on_change:
            self.associations.on_change.append(self.write)
        return self

    def stop(self) -> None:
        if self.write in self.associations.on_change:
            self.associations.on_change.remove(self.write)

    def write(self) -> None:
        with self._lock:
            data = render_config(self.associations.identities())
            if self.before_write is not None:
                self.before_write()
            self.replace(data)
            self.written = data
            self.generation += 1

    def replace(self, data: bytes) -> None:
        """Put ``data`` in place of the file, atomically (§5.3)."""
        raise NotImplementedError


class ConfigFileSync(IdentitiesSync):
    """An :class:`IdentitiesSync` for a file on this machine (embedded and ``k8s``)."""

    def __init__(
        self,
        associations: AssociationsLike,
        path: Path,
        *,
        before_write: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(associations, before_write=before_write)
        self.path = path

    def replace(self, data: bytes) -> None:
        replace_file(self.path, data)


def parse_identities(data: bytes) -> frozenset[tuple[str, str]]:
    """The identities in the file's bytes, read as Go's ``encoding/json`` would (§5.2).

    Empty content means none. Unknown fields are ignored and key names match without
    regard to case; raises ``ValueError`` when the document does not decode.
    """
    if not data.strip():
        return frozenset()
    doc = json.loads(data)
    if doc is None:
        return frozenset()
    if not isinstance(doc, dict):
        raise ValueError("cannot unmarshal into IdentityConfigObject")
    items = _field(doc, "identities")
    if items is None:
        return frozenset()
    if not isinstance(items, list):
        raise ValueError("identities: cannot unmarshal into []Identity")
    pairs: set[tuple[str, str]] = set()
    for item in items:
        if item is None:
            pairs.add(("", ""))
            continue
        if not isinstance(item, dict):
            raise ValueError("cannot unmarshal into Identity")
        ns, sa = _field(item, "namespace"), _field(item, "serviceAccount")
        ns, sa = "" if ns is None else ns, "" if sa is None else sa
        if not isinstance(ns, str) or not isinstance(sa, str):
            raise ValueError("namespace and serviceAccount must be strings")
        pairs.add((ns, sa))
    return frozenset(pairs)


def _field(obj: dict[str, object], name: str) -> object:
    # Go matches keys to fields without regard to case and decodes them in document
    # order, so of several spellings the last one wins.
    found: object = None
    for key, value in obj.items():
        if key.lower() == name.lower():
            found = value
    return found


class IdentitiesFile:
    """The embedded webhook's view of the watched file (§5.2, §5.3).

    :meth:`current` reads the file and returns its identities; the bytes are parsed again
    only when they changed. Missing or empty: none. Unparsable: the previous identities
    stay in force, and the next call tries again (upstream retries a failed load).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._data: bytes | None = None
        self._identities: frozenset[tuple[str, str]] = frozenset()
        self.error = ""  # the last load's error, "" after a good one

    def current(self) -> frozenset[tuple[str, str]]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        with self._lock:
            if data != self._data:
                try:
                    self._identities = parse_identities(data)
                except ValueError as exc:  # json.JSONDecodeError is a ValueError
                    self.error = f"error Unmarshalling container credentials config file: {exc}"
                    return self._identities
                self._data = data
                self.error = ""
            return self._identities
