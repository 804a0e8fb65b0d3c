"""Shared fixtures: a runner for the real ``deepworks`` script and small trained run directories.

A command that trains or reads a run costs about 3-4 s of imports (torch, scikit-learn,
matplotlib), which would make the ~60 CLI invocations of the test suite take minutes on a 2-core
CI machine. So the ``cli``
fixture executes the *installed* ``deepworks`` script in a forked child of a server process that
has already imported the package: every command still runs in its own process, through the real
script file, with its own stdout, stderr and exit code, but without paying for the imports again.
The server never runs a tensor operation, so forking it is safe (no OpenMP pool to inherit).

``cli.submit(...)`` / ``cli.wait(ticket)`` run several commands at once; ``cli.cold(...)`` runs
the script as a plain subprocess (a test checks the real start-up path with it). Set
``DEEPWORKS_TEST_FORK=0`` to run every command that way.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

TIMEOUT_S = 120
ENV = {
    "PYTHONWARNINGS": "ignore",
    "PYTHONIOENCODING": "utf-8",  # rich draws tables with box characters; the tests parse them
    "COLUMNS": "200",  # no wrapping of one-line errors and table rows
    "NO_COLOR": "1",
    "TERM": "dumb",
    # One intra-op thread: on small VMs two OpenMP threads make small convolutions ~30x slower
    # (thread hand-offs cost more than the work), and a CLI test only needs the result.
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tiny models run fastest on one thread (and do not fight other processes for cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# The tiniest training that still writes every file of a run directory.
TINY = ["--set", "train.epochs=1", "--set", "train.batch_size=256", "-q"]


def deepworks_script() -> Path:
    """The ``deepworks`` console script of the environment running the tests."""
    script = Path(sys.executable).parent / "deepworks"
    if not script.is_file():
        found = shutil.which("deepworks")
        if found is None:
            pytest.skip("the deepworks script is not installed (pip install -e .)")
        script = Path(found)
    return script


@dataclass
class Result:
    """What one CLI invocation gave back."""

    rc: int
    stdout: str
    stderr: str
    args: tuple[str, ...] = ()
    cpu_s: float | None = None  # CPU time of the command (fork mode)

    def __iter__(self):  # rc, stdout, stderr = cli(...)
        return iter((self.rc, self.stdout, self.stderr))

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return (
            f"deepworks {' '.join(self.args)} -> rc {self.rc}\n--- stdout\n{self.stdout}"
            f"\n--- stderr\n{self.stderr}"
        )


# The server: reads JSON requests (one per line), forks a child for each, runs the script in the
# child with stdout/stderr redirected to files, and answers {"id", "rc", "cpu"} when the child
# ends (or is killed at its timeout). Several commands may run at once; replies come as they end.
SERVER = textwrap.dedent(
    r"""
    import json, os, runpy, select, signal, sys, time, traceback
    script = sys.argv[1]
    import deepworks.cli
    from deepworks.registry import REGISTRIES
    # the expensive imports, done once (the CLI itself imports them only as a command needs them)
    for registry in REGISTRIES.values():
        registry.load()
    for module, _ in deepworks.cli.commands().values():
        __import__(f"deepworks.cli.{module}")
    for warm in ("torch._dynamo", "matplotlib.pyplot", "deepworks.report", "deepworks.run",
                 "deepworks.audit", "deepworks.robust.evaluate", "deepworks.explain.runs"):
        try:
            __import__(warm)
        except Exception:
            pass

    def reply(obj):
        os.write(1, (json.dumps(obj) + "\n").encode())

    def child(req):
        os.chdir(req["cwd"])
        os.environ.update(req["env"])
        fd_in = os.open(os.devnull, os.O_RDONLY)
        fd_out = os.open(req["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        fd_err = os.open(req["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        for fd, target in ((fd_in, 0), (fd_out, 1), (fd_err, 2)):
            os.dup2(fd, target)
            os.close(fd)
        sys.argv = [script, *req["args"]]
        code = 0
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as exc:  # what the interpreter does with sys.exit(x)
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code & 0xFF)

    reply("ready")
    pending, buf, reading = {}, b"", True
    while reading or pending:
        ready = select.select([0], [], [], 0.005 if pending else None)[0] if reading else []
        if not reading:
            time.sleep(0.005)
        if ready:
            chunk = os.read(0, 1 << 16)
            if not chunk:  # the tests are over (or gone): stop what still runs
                reading = False
                for pid in pending:
                    os.kill(pid, signal.SIGKILL)
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                req = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    try:
                        child(req)
                    finally:
                        os._exit(70)
                pending[pid] = (req["id"], time.monotonic() + req["timeout"])
        for pid, (rid, deadline) in list(pending.items()):
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if not done and time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                done, status, usage = os.wait4(pid, 0)
                status = None
            if done:
                del pending[pid]
                rc = "timeout" if status is None else os.waitstatus_to_exitcode(status)
                if reading:
                    reply({"id": rid, "rc": rc, "cpu": usage.ru_utime + usage.ru_stime})
    """
)


@dataclass
class Ticket:
    """A command started with :meth:`CLI.submit`; :meth:`CLI.wait` gives its result."""

    id: int
    args: tuple[str, ...]
    out: Path | None = None
    err: Path | None = None
    timeout: float = TIMEOUT_S
    proc: subprocess.Popen | None = None  # cold runs


class CLI:
    """Run ``deepworks ARGS...``; returns a :class:`Result` (unpacks as rc, stdout, stderr).

    ``submit`` starts a command without waiting (several may run at once) and ``wait`` collects
    its result; ``cli(*args)`` does both.
    """

    def __init__(self, script: Path, scratch: Path):
        self.script = script
        self.scratch = scratch
        self.env = os.environ | ENV
        self._server: subprocess.Popen | None = None
        self._count = 0
        self._replies: dict[int, dict] = {}
        self.fork = hasattr(os, "fork") and os.environ.get("DEEPWORKS_TEST_FORK", "1") != "0"

    def __call__(self, *args, cwd: Path | str | None = None, timeout: float = TIMEOUT_S) -> Result:
        return self.wait(self.submit(*args, cwd=cwd, timeout=timeout))

    def submit(self, *args, cwd: Path | str | None = None, timeout: float = TIMEOUT_S) -> Ticket:
        args = tuple(str(a) for a in args)
        self._count += 1
        ticket = Ticket(self._count, args, timeout=timeout)
        if not self.fork:
            ticket.proc = subprocess.Popen(
                [str(self.script), *args],
                cwd=cwd or self.scratch,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            return ticket
        server = self._start()
        ticket.out = self.scratch / f"{ticket.id}.out"
        ticket.err = self.scratch / f"{ticket.id}.err"
        request = {
            "id": ticket.id,
            "args": list(args),
            "cwd": str(cwd or self.scratch),
            "env": ENV,
            "out": str(ticket.out),
            "err": str(ticket.err),
            "timeout": timeout,
        }
        server.stdin.write(json.dumps(request) + "\n")
        server.stdin.flush()
        return ticket

    def wait(self, ticket: Ticket) -> Result:
        if ticket.proc is not None:
            try:
                out, err = ticket.proc.communicate(timeout=ticket.timeout)
            except subprocess.TimeoutExpired:
                ticket.proc.kill()
                ticket.proc.communicate()
                pytest.fail(f"deepworks {' '.join(ticket.args)} ran longer than {ticket.timeout} s")
            return Result(ticket.proc.returncode, out, err, ticket.args)
        while ticket.id not in self._replies:
            line = self._server.stdout.readline()
            if not line:
                self.close()
                raise RuntimeError("the deepworks test server died")
            reply = json.loads(line)
            self._replies[reply["id"]] = reply
        reply = self._replies.pop(ticket.id)
        if reply["rc"] == "timeout":
            pytest.fail(f"deepworks {' '.join(ticket.args)} ran longer than {ticket.timeout} s")
        stdout = ticket.out.read_text(errors="replace")
        stderr = ticket.err.read_text(errors="replace")
        ticket.out.unlink()
        ticket.err.unlink()
        return Result(reply["rc"], stdout, stderr, ticket.args, reply["cpu"])

    def cold(self, *args, cwd: Path | str | None = None, timeout: float = TIMEOUT_S) -> Result:
        """Run the script as a fresh subprocess (pays the full start-up cost)."""
        fork, self.fork = self.fork, False
        try:
            return self(*args, cwd=cwd, timeout=timeout)
        finally:
            self.fork = fork

    def _start(self) -> subprocess.Popen:
        if self._server is None or self._server.poll() is not None:
            self._server = subprocess.Popen(
                [sys.executable, "-c", SERVER, str(self.script)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=self.scratch,
                env=self.env,
                text=True,
            )
            self._replies.clear()
            if json.loads(self._server.stdout.readline() or "null") != "ready":
                self.close()
                raise RuntimeError("the deepworks test server did not start")
        return self._server

    def close(self) -> None:
        if self._server is not None:
            self._server.stdin.close()  # the server kills what still runs and exits
            try:
                self._server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._server.kill()
                self._server.wait()
            self._server = None


@pytest.fixture(scope="session")
def cli():
    """The ``deepworks`` command: ``rc, out, err = cli("train", cfg, "--out", tmp_path)``."""
    scratch = Path(tempfile.mkdtemp(prefix="deepworks-cli-"))
    runner = CLI(deepworks_script(), scratch)
    yield runner
    runner.close()
    shutil.rmtree(scratch, ignore_errors=True)


TINY_CONFIG = {
    "name": "tiny",
    "seed": 0,
    "data": {"name": "breast_cancer", "split": {"val": 0.15, "test": 0.2}},
    "model": {"name": "mlp", "hidden": [32]},
    "task": {"name": "classification"},
    # fp32 even on CUDA, so that predictions compare tightly with the saved ones
    "train": {"epochs": 1, "batch_size": 256, "progress": False, "precision": "fp32"},
}


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory) -> Path:
    """A valid run config (breast cancer, MLP [32], one epoch): the base of many tests."""
    path = tmp_path_factory.mktemp("configs") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_CONFIG, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def train_tiny(cli) -> Callable[..., tuple[Path, Result]]:
    """``run_dir, result = train_tiny(config, out, *extra_args)``: train with the tiny budget
    (one epoch, batch 256, no progress bar) and return the one new run directory under ``out``."""

    def train(config: Path | str, out: Path, *extra: str) -> tuple[Path, Result]:
        out.mkdir(parents=True, exist_ok=True)
        before = set(out.iterdir())
        result = cli("train", config, "--out", out, *TINY, *extra)
        assert result.rc == 0, str(result)
        new = [p for p in out.iterdir() if p not in before and p.is_dir()]
        assert len(new) == 1, f"expected one new run directory in {out}\n{result}"
        return new[0], result

    return train


TRAINED_OVERRIDES = ["--set", "model.hidden=[16]", "--set", "train.optimizer.lr=0.01"]


@pytest.fixture(scope="session")
def trained(train_tiny, tiny_config, tmp_path_factory) -> tuple[Path, Result]:
    """(run directory, train result) of one finished tiny run, shared by many tests: tiny.yaml
    with ``--set model.hidden=[16] --set train.optimizer.lr=0.01``."""
    return train_tiny(tiny_config, tmp_path_factory.mktemp("runs"), *TRAINED_OVERRIDES)


@pytest.fixture(scope="session")
def trained_run(trained) -> Path:
    """A finished tiny run directory, shared: a test that modifies it must use ``run_copy``."""
    return trained[0]


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    """A private copy of :func:`trained_run` (in ``tmp_path/runs/``) that a test may modify."""
    dest = tmp_path / "runs" / trained_run.name
    shutil.copytree(trained_run, dest, symlinks=True)  # checkpoint links are relative
    return dest


def _snapshot(path: Path) -> dict[str, bytes | str]:
    """Every file (bytes) and link (target) under ``path``, by relative name."""
    path = Path(path)
    if path.is_file():
        return {path.name: path.read_bytes()}
    found: dict[str, bytes | str] = {}
    for p in sorted(path.rglob("*")):
        name = str(p.relative_to(path))
        if p.is_symlink():
            found[name] = "-> " + os.readlink(p)
        elif p.is_file():
            found[name] = p.read_bytes()
        else:
            found[name] = "<dir>"
    return found


@pytest.fixture(scope="session")
def snapshot() -> Callable[[Path], dict[str, bytes | str]]:
    """``snapshot(path)``: the bytes of every file under ``path``, to show nothing changed."""
    return _snapshot
