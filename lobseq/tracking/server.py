"""A tracking server's failures in one line: refused permission, bad credentials, no answer.

MLflow raises them as `MlflowException`s whose text holds the REST endpoint, the
HTTP status and the response body, or urllib3's "Max retries exceeded" chain.
`explain(e)` turns them into `(exit code, one line)` for the CLI: 2 for
permissions and credentials (fix the settings), 1 for a server that did not
answer within the retry budget. `wait_until_answering` is how a run that failed
on an unreachable server still gets marked FAILED once the server is back.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import urllib.error
import urllib.request

from lobseq.tracking.store import tracking_uri

EXIT_USAGE = 2
EXIT_FAILURE = 1
_ENDPOINT = re.compile(r"endpoint (/\S+) failed with error code (\d+)")
_REASON = re.compile(r"\[Errno \d+\] ([^\"')]+)|(Read timed out)|(RemoteDisconnected[^\"')]*)")


def _user() -> str:
    return os.environ.get("MLFLOW_TRACKING_USERNAME") or ""


def _retry_budget() -> str:
    retries = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7")
    factor = os.environ.get("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "2")
    try:
        n, f = int(retries), float(factor)
        wait = sum(min(120.0, f * 2 ** (i - 1)) for i in range(2, n + 1))
        return f"{n} retries over ~{wait:.0f} s"
    except ValueError:
        return f"{retries} retries"


def unreachable(e: BaseException) -> bool:
    """Did `e` come from a server that never answered (refused, timed out, dropped)?"""
    if "requests" in sys.modules:
        import requests

        seen: set[int] = set()
        cause: BaseException | None = e
        while cause is not None and id(cause) not in seen:
            if isinstance(cause, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
                return True
            seen.add(id(cause))
            cause = cause.__cause__ or cause.__context__
    text = str(e)
    return "Max retries exceeded" in text or ("API request to" in text
                                              and "failed with exception" in text)


def explain(e: BaseException) -> tuple[int, str] | None:
    """(exit code, one line) for a tracking server's refusal or silence; None for anything else."""
    if "mlflow" not in sys.modules:
        return None
    from mlflow.exceptions import MlflowException

    if not isinstance(e, MlflowException):
        return None
    uri = tracking_uri()
    code = getattr(e, "error_code", "")
    endpoint = _ENDPOINT.search(str(e))
    where = f" ({endpoint.group(1)})" if endpoint else ""
    if code == "PERMISSION_DENIED" or (endpoint and endpoint.group(2) == "403"):
        who = f"user '{_user()}'" if _user() else "this user"
        return EXIT_USAGE, (f"the tracking server {uri} refused: {who} has no permission for this "
                            f"change{where}. Fix: ask an MLflow admin to grant EDIT or MANAGE on "
                            "the registered model (or experiment), or run it as a user who has it")
    if code == "UNAUTHENTICATED" or (endpoint and endpoint.group(2) == "401"):
        problem = (f"rejected the credentials of user '{_user()}'" if _user()
                   else "needs credentials")
        return EXIT_USAGE, (f"the tracking server {uri} {problem}{where}. Fix: set "
                            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
    if unreachable(e):
        found = _REASON.search(str(e))
        reason = next((g for g in found.groups() if g), "no answer").strip() if found else "no answer"
        return EXIT_FAILURE, (f"the tracking server {uri} did not answer ({reason}) after "
                              f"{_retry_budget()}. Fix: check that it runs (GET {uri}/health); "
                              "MLFLOW_HTTP_REQUEST_MAX_RETRIES and _BACKOFF_FACTOR set how long "
                              "lobseq waits")
    return None


class RetryNotice(logging.Handler):
    """One short stderr line per retry of a request the tracking server did not answer
    (urllib3 logs "Retrying (...) after connection broken by ...", then retries silently)."""

    def emit(self, record: logging.LogRecord) -> None:
        if not str(record.msg).startswith("Retrying") or len(record.args or ()) < 2:
            return
        retry, err = record.args[0], record.args[1]
        found = _REASON.search(repr(err))
        reason = next((g for g in found.groups() if g), "").strip() if found else type(err).__name__
        left = getattr(retry, "total", None)
        sys.stderr.write(f"lobseq: the tracking server {tracking_uri()} did not answer "
                         f"({reason or 'no answer'}); retrying"
                         + (f" ({left} retries left)\n" if left is not None else "\n"))


def announce_retries() -> None:
    """Show the client's retries against a server on stderr (once per process)."""
    log = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(h, RetryNotice) for h in log.handlers):
        log.addHandler(RetryNotice(logging.WARNING))


def answering(uri: str, timeout_s: float = 5.0) -> bool:
    """Does the server at `uri` answer GET /health with 200?"""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_until_answering(uri: str, timeout_s: float, every_s: float = 2.0) -> bool:
    """Poll GET /health until it answers (True) or `timeout_s` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if answering(uri):
            return True
        if time.monotonic() + every_s > deadline:
            return False
        time.sleep(every_s)
