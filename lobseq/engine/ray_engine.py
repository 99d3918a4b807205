"""The Ray engine: join a running cluster or start a local Ray instance, run tasks, clean up.

Only what lobseq started is shut down: a cluster it joined keeps running, and
a Ray session the caller had already opened is used as it is.

Token authentication (Ray >= 2.59): a local instance started by `ray.init`
turns it on by default and, when no token exists yet, writes one to
~/.ray/auth_token. Joining a cluster never turns it on by itself: when the
cluster uses tokens, set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or
RAY_AUTH_TOKEN_PATH) before lobseq starts; `ray get-auth-token` on the head
prints the token. Without them Ray reports a connection failure after ~20 s.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from lobseq.engine.config import EngineConfig
from lobseq.errors import LobseqError

# Driver settings that decide where workers write and how loud they are.
FORWARDED_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_DISABLE_TELEMETRY",
                 "LOBSEQ_TF_VERBOSE", "TF_CPP_MIN_LOG_LEVEL")
_URI_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
AUTH_FIX = ("if the cluster uses token authentication, set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN to "
            "its token (`ray get-auth-token` on the head node prints it)")
POLL_S = 1.0  # how often a waiting driver looks at Ctrl-C


def import_ray():
    """`ray`, or a LobseqError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise LobseqError("the ray engine needs Ray, which is not installed", field="engine",
                          fix="pip install 'lobseq[ray]', or use the local engine") from None
    return ray


def absolute_uri(uri: str) -> str:
    """A tracking URI that means the same file from any working directory."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    if uri.startswith("file:") and not uri.startswith("file:/"):
        return Path(uri[len("file:"):]).resolve().as_uri()
    if "://" not in uri and not uri.startswith("file:"):
        return str(Path(uri).resolve())
    return uri


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The driver's FORWARDED_ENV (paths made absolute) plus `extra`: what every worker sees."""
    env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
    env.update(extra or {})
    for key in _URI_ENV:
        if key in env:
            env[key] = absolute_uri(env[key])
    return env


def package_dir() -> str:
    import lobseq

    return str(Path(lobseq.__file__).resolve().parent)


class RayEngine:
    """Ray tasks for `map`; `start()` joins or starts Ray, `close()` undoes only what it did.

    `env_vars` are added to the forwarded driver environment of every worker.
    `ship_code` sends this lobseq source to the workers (runtime_env
    py_modules); by default only when joining a cluster, whose nodes may have
    another copy or none.
    """

    name = "ray"

    def __init__(self, config: EngineConfig | None = None, *, env_vars: dict[str, str] | None = None,
                 ship_code: bool | None = None, temp_dir: str | None = None,
                 log_to_driver: bool = False):
        self.config = config or EngineConfig(name="ray")
        self.env_vars = worker_env(env_vars)
        self.ship_code = ship_code
        self.temp_dir = temp_dir
        self.log_to_driver = log_to_driver
        self.owned = False  # True when close() must shut Ray down
        self.address: str | None = None  # the cluster joined; None for a local instance
        self._ray = None
        self._task_env: dict | None = None
        self._saved_auth_mode: str | None = None

    # ---------------------------------------------------------------- lifecycle

    def runtime_env(self, ship: bool) -> dict:
        env: dict[str, Any] = {"env_vars": dict(self.env_vars)}
        if ship:
            env["py_modules"] = [package_dir()]
            env["excludes"] = ["__pycache__/", "*.pyc"]
        return env

    def start(self) -> RayEngine:
        ray = self._ray = import_ray()
        if ray.is_initialized():  # the caller's session: use it, leave it open
            self._task_env = self.runtime_env(bool(self.ship_code))
            return self
        self.address = self.config.cluster_address()
        ship = self.ship_code if self.ship_code is not None else self.address is not None
        self._saved_auth_mode = os.environ.get("RAY_AUTH_MODE")
        self.owned = True
        try:
            with _keeping_sigterm_handler():
                if self.address:
                    self._connect(ray, self.runtime_env(ship))
                else:
                    ray.init(address="local", num_cpus=self.config.num_cpus, include_dashboard=False,
                             runtime_env=self.runtime_env(ship), log_to_driver=self.log_to_driver,
                             logging_level=logging.WARNING, _temp_dir=self.temp_dir)
        except BaseException:
            self.close()
            raise
        return self

    def _connect(self, ray, runtime_env: dict) -> None:
        from ray.exceptions import AuthenticationError

        try:
            ray.init(address=self.address, runtime_env=runtime_env, log_to_driver=self.log_to_driver,
                     logging_level=logging.WARNING)
        except AuthenticationError:
            raise LobseqError(f"the Ray cluster at {self.address} wants an authentication token and "
                              "none was found", field="ray.address", fix=AUTH_FIX) from None
        except ConnectionError:
            raise LobseqError(f"cannot connect to the Ray cluster at {self.address}",
                              field="ray.address",
                              fix=f"check the address (`ray status` on the head node); {AUTH_FIX}") from None

    def close(self) -> None:
        """Shut Ray down if this engine started or joined it; restore what ray.init changed."""
        if not self.owned:
            return
        self.owned = False
        if self._ray is not None and self._ray.is_initialized():
            self._ray.shutdown()
        if self._saved_auth_mode is None:  # ray.init sets RAY_AUTH_MODE=token for its children
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = self._saved_auth_mode

    # ---------------------------------------------------------------- work

    @property
    def task_runtime_env(self) -> dict | None:
        """What each task or actor must be given (None when the job already carries it)."""
        return self._task_env

    def node_cpus(self) -> list[float]:
        """Logical CPUs of each live node."""
        return [float(n["Resources"].get("CPU", 0.0)) for n in self._ray.nodes() if n.get("Alive")]

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], *, cpus: float = 1.0,
            label: str | None = None, retries: int = 3) -> list:
        """fn(item) for each item, one Ray task each (`cpus` logical CPUs), results in input order.

        The first failure in input order is raised as the local loop would raise
        it (a LobseqError unchanged) once every earlier item has finished; later
        tasks are cancelled. Ctrl-C cancels every outstanding task. `retries`:
        reruns of a task whose process died (0 for work that must not run twice).
        """
        return list(self.imap(fn, items, cpus=cpus, label=label, retries=retries))

    def mapper(self, *, cpus: float = 1.0, label: str | None = None, retries: int = 3) -> Callable:
        """`imap` with these settings, as a plain `mapper(fn, items)` a library function takes."""
        return functools.partial(self.imap, cpus=cpus, label=label, retries=retries)

    def imap(self, fn: Callable[[Any], Any], items: Iterable[Any], *, cpus: float = 1.0,
             label: str | None = None, retries: int = 3) -> Iterator:
        """`map`, yielding each result as soon as it and every earlier one are done.

        Every task is submitted at once; the caller consumes results in input order
        (and may stop early: closing the iterator cancels what is still running).
        """
        ray = self._ray
        items = list(items)
        if not items:
            return iter(())
        remote = ray.remote(_apply).options(num_cpus=cpus, name=label or getattr(fn, "__name__", "task"),
                                            runtime_env=self._task_env, max_retries=retries)
        fn_ref = ray.put(fn)  # any callable (partials, methods, builtins), shipped once
        cwd = os.getcwd()
        return iter_in_order(ray, [remote.remote(fn_ref, item, cwd) for item in items])


@contextlib.contextmanager
def _keeping_sigterm_handler() -> Iterator[None]:
    """Put the driver's Python SIGTERM handler back after `ray.init`: Ray's core worker installs
    its own (it logs and aborts), so a scheduler's SIGTERM would skip the cancelling and the
    KILLED runs that Ctrl-C gets (`lobseq.cli.main` and `sigterm_as_interrupt` install one)."""
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if callable(handler):
            signal.signal(signal.SIGTERM, handler)


def _apply(fn: Callable[[Any], Any], item: Any, cwd: str | None = None) -> Any:
    in_driver_dir(cwd)
    return fn(item)


def in_driver_dir(cwd: str | None) -> None:
    """Work in the driver's directory where this node has it (one machine, or a shared disk at
    the same path), so relative paths mean what they mean to the driver and errors name files
    as the local engine names them; elsewhere paths must be absolute."""
    if cwd and os.path.isdir(cwd) and os.getcwd() != cwd:
        os.chdir(cwd)


def unwrap_error(error: BaseException) -> BaseException:
    """The exception a local call would have raised: a task's LobseqError itself."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, LobseqError):
        return cause
    as_cause = getattr(error, "as_instanceof_cause", None)
    return as_cause() if as_cause else error


def find_lobseq_error(error: BaseException | None, depth: int = 8) -> LobseqError | None:
    """The LobseqError a worker raised, dug out of the wrappers Ray Train, Tune and Data put
    around it (causes, contexts, worker failures), if there is one."""
    if isinstance(error, LobseqError):
        return error
    if error is None or depth == 0:
        return None
    inner = [*getattr(error, "worker_failures", {}).values(), getattr(error, "cause", None),
             getattr(error, "controller_failure", None), error.__cause__, error.__context__]
    for candidate in inner:
        if isinstance(candidate, BaseException) and (found := find_lobseq_error(candidate, depth - 1)):
            return found
    return None


def cancel(ray, refs: list, wait_s: float = 10.0) -> None:
    """Cancel tasks (killing the processes that run them) and wait until they are gone.

    The cancel is repeated each second for tasks not yet ended: one that was being
    handed to a worker as the first cancel arrived can start anyway (seen under load).
    """
    deadline = time.monotonic() + wait_s
    pending = list(refs)
    while pending and time.monotonic() < deadline:
        for ref in pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - finished or already cancelled
                pass
        _, pending = ray.wait(pending, num_returns=len(pending), timeout=1.0)


def gather_in_order(ray, refs: list) -> list:
    """Results of `refs` in order; raises the first failure in input order (see RayEngine.map)."""
    return list(iter_in_order(ray, refs))


def iter_in_order(ray, refs: list) -> Iterator:
    """Results of `refs` in input order, each yielded once it and all before it are done.

    A failure is raised when its turn comes (the earlier results yielded first);
    tasks after it are cancelled as soon as it is seen. Ctrl-C, an error, or the
    consumer closing the iterator cancels every task still running.
    """
    from ray.exceptions import RayError

    index = {ref: i for i, ref in enumerate(refs)}
    ready: dict[int, Any] = {}
    pending = list(refs)
    bad: tuple[int, BaseException] | None = None
    try:
        for turn in range(len(refs)):
            while turn not in ready:
                if bad is not None and bad[0] == turn:
                    raise unwrap_error(bad[1])
                done, _ = ray.wait(pending, num_returns=1, timeout=POLL_S)
                if done:  # take everything that is ready now
                    done, _ = ray.wait(pending, num_returns=len(pending), timeout=0)
                for ref in done:
                    try:
                        ready[index[ref]] = ray.get(ref)
                    except RayError as e:
                        if bad is None or index[ref] < bad[0]:
                            bad = (index[ref], e)
                finished = set(done)
                pending = [r for r in pending if r not in finished]
                if bad:  # a local loop never reaches the items after the first failure
                    later = [r for r in pending if index[r] > bad[0]]
                    cancel(ray, later)
                    pending = [r for r in pending if index[r] < bad[0]]
            yield ready.pop(turn)
    finally:  # Ctrl-C, a failure, or a consumer that stopped early
        cancel(ray, pending)
