"""Regenerates ``irsa_lab/data/k8s-protos.*`` from the pinned Kubernetes API modules.

``python -m irsa_lab.kube.protobuf_build`` (needs Go, for the module cache, and
``grpcio-tools``, for ``protoc``). Two files come out:

- ``k8s-protos.binpb``: a ``FileDescriptorSet`` compiled by ``protoc`` from the
  ``generated.proto`` files of k8s.io/api and k8s.io/apimachinery at
  :data:`K8S_MODULE_VERSION`, for the groups in :data:`PROTO_FILES` and what they import.
- ``k8s-protos.json``: what the ``.proto`` files do not say and the Go types do, read
  by a small Go program through reflection over the same modules: which kind is which
  message, each field's JSON name, whether it is ``omitempty``/``omitzero``, a pointer
  or ``inline``, and which messages stand for a named Go slice (``ExtraValue``,
  ``Verbs``). :mod:`irsa_lab.kube.protobuf` needs both to write the JSON the real
  server writes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "DATA_DIR",
    "DESCRIPTOR_FILE",
    "FIELDS_FILE",
    "GO_PROGRAM",
    "K8S_MODULE_VERSION",
    "PROTO_FILES",
    "build_descriptor_set",
    "build_fields",
    "main",
    "module_dirs",
]

# The k8s.io/api and k8s.io/apimachinery version the lab's kube-apiserver (v1.36.1) is built from.
K8S_MODULE_VERSION = "v0.36.1"
DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DESCRIPTOR_FILE = "k8s-protos.binpb"
FIELDS_FILE = "k8s-protos.json"
# The API groups the lab serves or may be sent (imports such as meta/v1, runtime,
# intstr and resource come in with --include_imports).
PROTO_FILES = (
    "k8s.io/api/core/v1/generated.proto",
    "k8s.io/api/apps/v1/generated.proto",
    "k8s.io/api/authorization/v1/generated.proto",
    "k8s.io/api/authentication/v1/generated.proto",
    "k8s.io/api/admissionregistration/v1/generated.proto",
    "k8s.io/api/events/v1/generated.proto",
    "k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto",
    "k8s.io/apimachinery/pkg/runtime/generated.proto",
)

GO_PROGRAM = r"""// Each protobuf message's fields as the Go types see them (see protobuf_build.py).
package main

import (
	"encoding/json"
	"os"
	"reflect"
	"sort"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

type out struct {
	Kinds    map[string]string           `json:"kinds"`
	Messages map[string]map[string][]any `json:"messages"`
	Lists    []string                    `json:"lists"`
}

var o = out{Kinds: map[string]string{}, Messages: map[string]map[string][]any{}}
var lists = map[string]bool{}

func protoName(t reflect.Type) string {
	return strings.ReplaceAll(t.PkgPath(), "/", ".") + "." + t.Name()
}

func walk(t reflect.Type) {
	for t.Kind() == reflect.Ptr {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		if t.Name() != "" && strings.HasPrefix(t.PkgPath(), "k8s.io/") && t.Elem().Kind() != reflect.Uint8 {
			lists[protoName(t)] = true
		}
		walk(t.Elem())
		return
	case reflect.Map:
		walk(t.Elem())
		return
	case reflect.Struct:
	default:
		return
	}
	if !strings.HasPrefix(t.PkgPath(), "k8s.io/") {
		return
	}
	name := protoName(t)
	if _, seen := o.Messages[name]; seen {
		return
	}
	fields := map[string][]any{}
	o.Messages[name] = fields
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		parts := strings.Split(f.Tag.Get("protobuf"), ",")
		if len(parts) < 2 {
			continue
		}
		jparts := strings.Split(f.Tag.Get("json"), ",")
		flags := 0
		for _, opt := range jparts[1:] {
			switch opt {
			case "omitempty":
				flags |= 1
			case "inline":
				flags |= 4
			case "omitzero":
				flags |= 8
			}
		}
		if f.Type.Kind() == reflect.Ptr {
			flags |= 2
		}
		fields[parts[1]] = []any{jparts[0], flags}
		walk(f.Type)
	}
}

func main() {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		admissionregistrationv1.AddToScheme, appsv1.AddToScheme, authenticationv1.AddToScheme,
		authorizationv1.AddToScheme, corev1.AddToScheme, eventsv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	for gvk, t := range s.AllKnownTypes() {
		if gvk.Version == runtime.APIVersionInternal {
			continue
		}
		o.Kinds[gvk.GroupVersion().String()+"/"+gvk.Kind] = protoName(t)
		walk(t)
	}
	for name := range lists {
		o.Lists = append(o.Lists, name)
	}
	sort.Strings(o.Lists)
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	if err := enc.Encode(o); err != nil {
		panic(err)
	}
}
"""

_GO_MOD = f"""module irsalab/k8sprotos

go 1.24

require (
\tk8s.io/api {K8S_MODULE_VERSION}
\tk8s.io/apimachinery {K8S_MODULE_VERSION}
)
"""


def _go() -> str:
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else ""
    )
    if not go:
        raise FileNotFoundError("go is not installed (the Kubernetes API modules come through it)")
    return go


def _go_env() -> dict[str, str]:
    return {**os.environ, "GOFLAGS": "-mod=mod"}


def module_dirs(version: str = K8S_MODULE_VERSION) -> dict[str, Path]:
    """The Go module cache directories of k8s.io/api and k8s.io/apimachinery at
    ``version``, downloaded through the Go module proxy when missing."""
    out: dict[str, Path] = {}
    for module in ("k8s.io/api", "k8s.io/apimachinery"):
        cache = subprocess.run(
            [_go(), "env", "GOMODCACHE"], capture_output=True, text=True, check=True
        ).stdout.strip()
        path = Path(cache) / f"{module}@{version}"
        if not path.is_dir():
            info = subprocess.run(
                [_go(), "mod", "download", "-json", f"{module}@{version}"],
                capture_output=True,
                text=True,
                check=True,
                env=_go_env(),
            ).stdout
            path = Path(json.loads(info)["Dir"])
        out[module] = path
    return out


def build_descriptor_set(dirs: dict[str, Path]) -> bytes:
    """``protoc --include_imports`` over :data:`PROTO_FILES` (no source info, so the
    output depends only on the ``.proto`` files)."""
    from grpc_tools import protoc  # build-time only: pip install grpcio-tools

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "include"
        (root / "k8s.io").mkdir(parents=True)
        for module, path in dirs.items():
            (root / module).symlink_to(path)
        target = Path(tmp) / "out.binpb"
        code = protoc.main(
            [
                "protoc",
                f"-I{root}",
                "--include_imports",
                f"--descriptor_set_out={target}",
                *PROTO_FILES,
            ]
        )
        if code != 0:
            raise RuntimeError(f"protoc failed with exit code {code}")
        return target.read_bytes()


def build_fields(dirs: dict[str, Path]) -> dict[str, Any]:
    """The Go types' view of each message (see the module docstring), by running
    :data:`GO_PROGRAM` against the pinned modules."""
    del dirs  # the program resolves the same pinned versions through go.mod
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "main.go").write_text(GO_PROGRAM)
        (Path(tmp) / "go.mod").write_text(_GO_MOD)
        env = _go_env()
        subprocess.run([_go(), "mod", "tidy"], cwd=tmp, check=True, env=env, capture_output=True)
        result = subprocess.run(
            [_go(), "run", "."], cwd=tmp, check=True, env=env, capture_output=True, text=True
        )
    fields: dict[str, Any] = json.loads(result.stdout)
    fields["version"] = K8S_MODULE_VERSION
    return fields


def main(argv: list[str] | None = None) -> int:
    """Write both data files into ``irsa_lab/data`` (or the directory given)."""
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else DATA_DIR
    dirs = module_dirs()
    (out / DESCRIPTOR_FILE).write_bytes(build_descriptor_set(dirs))
    fields = build_fields(dirs)
    (out / FIELDS_FILE).write_text(json.dumps(fields, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out / DESCRIPTOR_FILE} and {out / FIELDS_FILE} ({K8S_MODULE_VERSION})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
