"""The ``irsa-lab`` command (README, "The command line")."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__

__all__ = [
    "UP_BACKENDS",
    "CliError",
    "build_parser",
    "cmd_doctor",
    "cmd_down",
    "cmd_env",
    "cmd_exec",
    "cmd_kind",
    "cmd_lab",
    "cmd_reset",
    "cmd_up",
    "env_lines",
    "jupyter_lab_command",
    "main",
]


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


def _state_dir(arg: str | None) -> Path:
    from .stack import default_state_dir

    return Path(arg).expanduser().resolve() if arg else default_state_dir()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running_pid(state: Path) -> int | None:
    pid_file = state / "lab.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def _load_endpoints(state: Path) -> dict[str, str]:
    path = state / "endpoints.json"
    if not path.exists() or _running_pid(state) is None:
        raise CliError(
            f"no running lab in {state}: start one with `irsa-lab up --detach"
            f"{'' if state == _state_dir(None) else ' --state-dir ' + shlex.quote(str(state))}`"
        )
    return dict(json.loads(path.read_text()))


def _serve_until_signalled() -> None:
    """Block until SIGTERM or SIGINT (``irsa-lab down`` sends the former)."""
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop:
        time.sleep(0.2)


# --- up / down ---------------------------------------------------------------------
def cmd_up(args: argparse.Namespace) -> int:
    state = _state_dir(args.state_dir)
    pid = _running_pid(state)
    if pid is not None:
        raise CliError(
            f"a lab is already running in {state} (pid {pid}); stop it with `irsa-lab down`"
        )
    backend = _backend(args)
    if args.detach:
        return _up_detached(state, args, backend)
    lab = _make_lab(backend, state, args.seed)
    try:
        lab.start()
    except Exception as err:
        from .backends.k8s import K8sError

        if isinstance(err, K8sError):
            raise CliError(str(err)) from err
        raise
    (state / "lab.pid").write_text(f"{os.getpid()}\n")
    print(lab.summary(), flush=True)
    try:
        _serve_until_signalled()
    finally:
        lab.stop()
        (state / "lab.pid").unlink(missing_ok=True)
    print("irsa-lab: stopped", flush=True)
    return 0


UP_BACKENDS = ("embedded", "k8s")


def _backend(args: argparse.Namespace) -> str:
    """``--backend``, else ``$IRSA_LAB_BACKEND`` when it names one ``up`` starts, else embedded."""
    chosen = args.backend or os.environ.get("IRSA_LAB_BACKEND") or "embedded"
    if chosen not in UP_BACKENDS:
        if args.backend is None:
            return "embedded"  # e.g. IRSA_LAB_BACKEND=running, meant for notebooks
        raise CliError(
            f"unknown backend {chosen!r}: `irsa-lab up` starts {' or '.join(UP_BACKENDS)}"
        )
    return chosen


def _make_lab(backend: str, state: Path, seed: int | None) -> Any:
    if backend == "k8s":
        from .backends.k8s import K8sLab

        return K8sLab(
            state_dir=state, seed=seed, progress=lambda m: print(f"irsa-lab k8s: {m}", flush=True)
        )
    _begin_signing_key(state, seed)
    from .stack import EmbeddedLab

    return EmbeddedLab(state_dir=state, seed=seed)


def _begin_signing_key(state: Path, seed: int | None) -> Any:
    """Start making a new lab's RSA signing key on a thread before the stack's imports,
    which it overlaps (see ``pki.begin_signing_key``); a seeded lab uses the demo key."""
    if seed is not None:
        return None
    from .pki import begin_signing_key

    return begin_signing_key(state.resolve() / "sa-signer.key")


def _up_detached(state: Path, args: argparse.Namespace, backend: str) -> int:
    state.mkdir(parents=True, exist_ok=True)
    (state / "endpoints.json").unlink(missing_ok=True)
    # Fork only a process with no other thread (a fork copies just the calling one).
    if backend == "embedded" and hasattr(os, "fork") and threading.active_count() == 1:
        child: Any = _fork_foreground_up(state, args)
        args.exit_at_once = True
    else:
        log = open(state / "lab.log", "wb")  # noqa: SIM115 - handed to the child
        cmd = [sys.executable, "-m", "irsa_lab.cli", "up", "--state-dir", str(state)]
        cmd += ["--backend", backend]
        if args.seed is not None:
            cmd += ["--seed", str(args.seed)]
        child = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
    limit = 180 if backend == "k8s" else 30
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if child.poll() is not None:
            text = (state / "lab.log").read_text()
            last = [ln for ln in text.splitlines() if ln.startswith("irsa-lab: ")]
            if child.returncode == 2 and last:
                raise CliError(last[-1].removeprefix("irsa-lab: "))
            raise CliError(
                f"the lab exited during start-up; see {state / 'lab.log'}:\n" + text[-2000:]
            )
        if (state / "endpoints.json").exists() and _running_pid(state) == child.pid:
            print(f"irsa-lab: running in the background (pid {child.pid}); state in {state}")
            print(
                f'irsa-lab: `eval "$(irsa-lab env{_sd(state)})"` points kubectl, boto3 and the aws CLI at it'
            )
            return 0
        time.sleep(0.01)
    child.terminate()
    raise CliError(f"the lab did not come up within {limit} s; see {state / 'lab.log'}")


class _Forked:
    """The few ``Popen`` calls ``_up_detached`` makes, for a forked child."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def terminate(self) -> None:
        os.kill(self.pid, signal.SIGTERM)


def _fork_foreground_up(state: Path, args: argparse.Namespace) -> _Forked:
    """Run the foreground ``up`` in a forked child, in its own session, logging to
    ``lab.log``. The stack's modules are imported here, before the fork (no thread runs
    yet), so the child starts no second interpreter and imports nothing again."""
    key = _begin_signing_key(state, args.seed)
    from . import stack  # noqa: F401 - imported once, inherited by the child

    if key is not None:
        key.join()  # made before the fork, which copies no thread; any error shows in the child
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return _Forked(pid)
    code = 1
    try:
        os.setsid()
        log = os.open(state / "lab.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        args.detach = False
        try:
            code = cmd_up(args)
        except CliError as err:
            print(f"irsa-lab: {err}", file=sys.stderr)
            code = 2
    except BaseException:  # noqa: BLE001 - reported in lab.log, never back in the parent
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _sd(state: Path) -> str:
    return "" if state == _state_dir(None) else f" --state-dir {shlex.quote(str(state))}"


def cmd_down(args: argparse.Namespace) -> int:
    state = _state_dir(args.state_dir)
    from .backends.procs import kill_leftovers

    pid = _running_pid(state)
    if pid is None:
        left = kill_leftovers(state)
        if left:
            print(f"irsa-lab: stopped {len(left)} process(es) left behind in {state}")
        else:
            print(f"irsa-lab: no lab running in {state}")
        (state / "lab.pid").unlink(missing_ok=True)
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.05)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    kill_leftovers(state)
    (state / "lab.pid").unlink(missing_ok=True)
    print(f"irsa-lab: stopped the lab in {state} (pid {pid})")
    return 0


# --- env / exec ----------------------------------------------------------------------
def env_lines(ep: dict[str, str]) -> list[str]:
    """The ``export`` lines for a shell, from ``endpoints.json``: the variables a notebook's
    ``irsa_lab.lab()`` sets in its kernel (one list, :func:`irsa_lab.client_env.lab_environment`),
    the account administrator's keys included, as a learner has on a real account."""
    from .client_env import lab_environment

    return [f"export {k}={shlex.quote(v)}" for k, v in lab_environment(ep).items()]


def cmd_env(args: argparse.Namespace) -> int:
    ep = _load_endpoints(_state_dir(args.state_dir))
    print("\n".join(env_lines(ep)))
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    from .in_pod import PodNotFound, exec_in_pod

    state = _state_dir(args.state_dir)
    ep = _load_endpoints(state)
    argv = list(args.command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise CliError("nothing to run: irsa-lab exec POD -- CMD...")
    try:
        result = exec_in_pod(
            ep,
            state,
            namespace=args.namespace,
            pod=args.pod,
            container=args.container,
            argv=argv,
            capture=False,
            timeout=None,
        )
    except PodNotFound as err:
        raise CliError(f"Error from server (NotFound): {err}") from err
    except FileNotFoundError as err:
        raise CliError(f"cannot run {argv[0]!r} in the pod: {err.strerror}") from err
    return int(result.returncode)


# --- reset ----------------------------------------------------------------------------
def cmd_reset(args: argparse.Namespace) -> int:
    """``irsa-lab reset``: the running lab back to its starting state, through the clients
    a learner uses (:func:`irsa_lab.labs.baseline.restore_default`): the pods lessons and
    labs created deleted (namespaces ``default`` and ``analytics``), the ServiceAccount's
    annotations, the OIDC provider and the role's trust policy restored, the node's
    metadata options back to the defaults, the webhook running. ``--progress`` also
    deletes the learner's lab progress (``progress.json`` in the state directory)."""
    state = _state_dir(args.state_dir)
    ep = _load_endpoints(state)
    from .labs.baseline import restore_default
    from .labs.progress import progress_path
    from .session import Lab

    lab = Lab(ep, state, backend="kind" if ep.get("backend") == "kind" else "running")
    try:
        restore_default(lab)
    finally:
        lab.close()
    print(f"irsa-lab: the lab in {state} is back to its starting state")
    if args.progress:
        path = progress_path(state)
        if path.exists():
            path.unlink()
            print(f"irsa-lab: deleted the lab progress ({path})")
        else:
            print(f"irsa-lab: no lab progress to delete ({path})")
    return 0


# --- doctor / lab ----------------------------------------------------------------------
def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import print_checks, run_checks

    return print_checks(run_checks(_state_dir(args.state_dir)))


def jupyter_lab_command(extra: Sequence[str] = ()) -> list[str]:
    """The ``jupyter lab`` command line ``irsa-lab lab`` runs (extra options last)."""
    root = Path(__file__).resolve().parents[1]
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.ip=127.0.0.1",
    ]
    if (root / "notebooks" / "00-start-here.ipynb").exists():
        cmd.append("--LabApp.default_url=/lab/tree/notebooks/00-start-here.ipynb")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # JupyterLab refuses to run as root without it (containers, CI machines).
        cmd.append("--allow-root")
    return [*cmd, *extra]


def cmd_lab(args: argparse.Namespace) -> int:
    cmd = jupyter_lab_command(args.jupyter_args)
    env = dict(os.environ, IRSA_LAB_BACKEND=os.environ.get("IRSA_LAB_BACKEND", "embedded"))
    return subprocess.call(cmd, env=env)


def cmd_kind(args: argparse.Namespace) -> int:
    """``irsa-lab kind up|down|doctor``: the real-cluster backend (irsa_lab/kind, docs/kind.md).

    ``up`` runs in the foreground like ``irsa-lab up`` (``--detach`` backgrounds it):
    the AWS stand-ins live in this process, the cluster outlives it until ``down``.
    ``up`` on an existing cluster resumes it. SIGINT and SIGTERM, during the start or
    after it, stop the stand-ins and remove ``endpoints.json`` on the way out.
    """
    from .doctor import print_checks
    from .kind.checks import kind_checks
    from .kind.cluster import KindError, kind_down, kind_up

    state = _state_dir(args.state_dir)
    if args.action == "doctor":
        return print_checks(kind_checks())
    if args.action == "down":
        pid = _running_pid(state)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _pid_alive(pid):
                time.sleep(0.05)
            (state / "lab.pid").unlink(missing_ok=True)
        try:
            kind_down(state)
        except KindError as err:
            raise CliError(str(err)) from err
        print(f"irsa-lab: deleted the kind cluster and stopped its AWS stand-ins ({state})")
        return 0

    pid = _running_pid(state)
    if pid is not None:
        raise CliError(
            f"a lab is already running in {state} (pid {pid}); stop it with "
            f"`irsa-lab down{_sd(state)}` or `irsa-lab kind down{_sd(state)}`"
        )
    if args.detach:
        return _kind_up_detached(state, args)

    def interrupted(signum: int, frame: object) -> None:
        # SIGTERM (`irsa-lab kind down`, a detached parent giving up) unwinds like
        # Ctrl-C, so the stand-ins stop and endpoints.json goes with them.
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupted)
    try:
        lab = kind_up(
            state, seed=args.seed, progress=lambda msg: print(f"irsa-lab kind: {msg}", flush=True)
        )
    except KindError as err:
        raise CliError(str(err)) from err
    except KeyboardInterrupt:
        print(
            f"irsa-lab kind: interrupted; `irsa-lab kind up{_sd(state)}` resumes, "
            f"`irsa-lab kind down{_sd(state)}` deletes the cluster",
            flush=True,
        )
        return 130
    try:
        (state / "lab.pid").write_text(f"{os.getpid()}\n")
        print(
            f"irsa-lab kind: cluster {lab.name!r} is up, issuer {lab.endpoints['issuer']}",
            flush=True,
        )
        print(
            f'irsa-lab kind: `eval "$(irsa-lab env{_sd(state)})"` points kubectl, boto3 and '
            "the aws CLI at it",
            flush=True,
        )
        _serve_until_signalled()
    except KeyboardInterrupt:
        pass  # a signal that came before _serve_until_signalled took over
    finally:
        lab.stop_aws()  # removes endpoints.json first
        (state / "lab.pid").unlink(missing_ok=True)
    print(
        f"irsa-lab kind: AWS stand-ins stopped; the cluster keeps running "
        f"(`irsa-lab kind down{_sd(state)}` deletes it)",
        flush=True,
    )
    return 0


def _kind_up_detached(state: Path, args: argparse.Namespace) -> int:
    # The blocking checks run here first, so a machine without Docker fails in the
    # foreground with the fix instead of in a log file.
    from .kind.checks import kind_checks
    from .kind.cluster import UP_DEADLINE_S, KindError, failed_prerequisites, remove_stale_endpoints

    problem = failed_prerequisites(kind_checks())
    if problem:
        raise CliError(problem)
    (state / "kind").mkdir(parents=True, exist_ok=True)
    try:
        # A stale endpoints.json would read as "up" below before the child is ready.
        remove_stale_endpoints(state)
    except KindError as err:
        raise CliError(str(err)) from err
    log_path = state / "kind" / "kind-up.log"
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child
    cmd = [sys.executable, "-m", "irsa_lab.cli", "kind", "up", "--state-dir", str(state)]
    if args.seed is not None:
        cmd += ["--seed", str(args.seed)]
    child = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    log.close()
    print(
        f"irsa-lab kind: creating the cluster in the background (pid {child.pid}); "
        f"progress in {log_path}",
        flush=True,
    )
    # Every step of kind up at its longest (irsa_lab.kind.cluster.step_timeouts).
    deadline = time.monotonic() + UP_DEADLINE_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise CliError(f"kind up failed; see {log_path}:\n" + log_path.read_text()[-3000:])
        if (state / "endpoints.json").exists() and _running_pid(state) == child.pid:
            print(
                f'irsa-lab kind: up; `eval "$(irsa-lab env{_sd(state)})"` points the clients at it',
                flush=True,
            )
            return 0
        time.sleep(0.5)
    child.terminate()  # SIGTERM: the child stops its stand-ins and removes endpoints.json
    raise CliError(f"kind up did not finish within {UP_DEADLINE_S:g} s; see {log_path}")


# --- parser ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="irsa-lab", description="The EKS IRSA chain, run locally.")
    p.add_argument("--version", action="version", version=f"irsa-lab {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def with_state(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument(
            "--state-dir",
            metavar="DIR",
            help="where kubeconfig and endpoints.json live "
            "(default: $IRSA_LAB_STATE_DIR, else ~/.irsa-lab)",
        )
        return sp

    up = with_state(
        sub.add_parser("up", help="start a lab (embedded stand-ins, or real Kubernetes)")
    )
    up.add_argument("--detach", action="store_true", help="run in the background")
    up.add_argument(
        "--backend",
        choices=UP_BACKENDS,
        default=None,
        help="embedded (default): stand-ins in one process; k8s: the real etcd, kube-apiserver, "
        "controllers and webhook built by `make k8s-bin` (default: $IRSA_LAB_BACKEND, else embedded)",
    )
    up.add_argument(
        "--seed",
        type=int,
        default=None,
        help="fixed seed: same keys, ids and issuer on every start",
    )
    up.set_defaults(func=cmd_up)
    with_state(sub.add_parser("down", help="stop a detached stack")).set_defaults(func=cmd_down)
    with_state(sub.add_parser("env", help="print export lines for the stack")).set_defaults(
        func=cmd_env
    )

    ex = with_state(sub.add_parser("exec", help="run a command as a pod's container would"))
    ex.add_argument("-n", "--namespace", default="default")
    ex.add_argument("-c", "--container", default=None)
    ex.add_argument("pod")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    ex.set_defaults(func=cmd_exec)

    reset = with_state(
        sub.add_parser(
            "reset",
            help="put a running lab back to its starting state (pods, ServiceAccount, "
            "trust policy, metadata options, webhook)",
        )
    )
    reset.add_argument(
        "--progress", action="store_true", help="also delete the lab progress (progress.json)"
    )
    reset.set_defaults(func=cmd_reset)
    with_state(sub.add_parser("doctor", help="check the machine")).set_defaults(func=cmd_doctor)
    lab = sub.add_parser(
        "lab", help="start JupyterLab on the notebooks (other options go to jupyter lab)"
    )
    lab.set_defaults(func=cmd_lab)
    kind = with_state(sub.add_parser("kind", help="the real-cluster backend (docs/kind.md)"))
    kind.add_argument(
        "action",
        choices=["up", "down", "doctor"],
        help="up: create the cluster and start the AWS stand-ins; down: delete "
        "it; doctor: check docker, kind, kubectl, cgroups, inotify",
    )
    kind.add_argument("--detach", action="store_true", help="up: run in the background")
    kind.add_argument(
        "--seed", type=int, default=None, help="up: fixed seed for the AWS stand-ins' ids and keys"
    )
    kind.set_defaults(func=cmd_kind)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "lab":
        args.jupyter_args = extra  # e.g. --ServerApp.port=8899, passed to jupyter lab
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        code = int(args.func(args))
    except CliError as err:
        print(f"irsa-lab: {err}", file=sys.stderr)
        return 2
    if argv is None and getattr(args, "exit_at_once", False):
        # `up --detach` imported the whole stack to fork it: skip tearing it all down
        # again at exit (a tenth of a second or more) when run as the command.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
