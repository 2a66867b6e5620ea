"""What happens after the gateway lands a batch: the ingest of its feed, then a network sync.

Every trigger runs in one background worker thread, so the HTTP request that landed a batch
returns at once. Batches that arrive while a run is waiting join it (one ingest per feed takes
every pending batch of that feed), so a burst of pushes costs one run, not one per batch. A
failed run is logged and recorded for the batches it carried (`last_error`), never raised into
a request: the sender sees it in the batch's status.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

from schemas.errors import CivicnetError, TransientError

log = logging.getLogger(__name__)
BUSINESS_TZ = ZoneInfo("Asia/Shanghai")
RETRIES, RETRY_PAUSE = 3, 5  # a step that fails transiently is tried 3 times, 5 s then 10 s apart
# a run's work: the feeds with new batches → the error (if any) of each feed ('' for the sync)
RunFeeds = Callable[[list[str]], dict[str, str]]


class _Worker:
    """A single thread that runs queued feeds, coalescing everything queued while it waits."""

    def __init__(self, run: RunFeeds, node_lock: threading.Lock) -> None:
        self._run = run
        self._node_lock = node_lock
        self._cond = threading.Condition()
        self._queued: dict[str, set[str]] = {}  # feed → batch ids waiting for the next run
        self._running = False
        self.errors: dict[str, str] = {}
        self.runs = 0  # runs finished (tests and the demo count them)
        self._thread = threading.Thread(target=self._loop, name="civicnet-gateway-trigger", daemon=True)
        self._thread.start()

    def submit(self, feed: str, batch_id: str) -> None:
        with self._cond:
            self._queued.setdefault(feed, set()).add(batch_id)
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._queued and not self._running, timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queued))
            # take the queue only once the node is ours: whatever arrives meanwhile joins this run
            with self._node_lock:
                with self._cond:
                    batch, self._queued, self._running = self._queued, {}, True
                try:
                    self._record(batch, self._run_safely(batch))
                finally:
                    with self._cond:
                        self._running = False
                        self.runs += 1
                        self._cond.notify_all()

    def _run_safely(self, batch: dict[str, set[str]]) -> dict[str, str]:
        try:
            return self._run(sorted(batch))
        except Exception as err:  # the worker must outlive any failure: logged, and reported in the status
            log.exception("gateway trigger run for feeds %s failed", sorted(batch))
            return {feed: f"{type(err).__name__}: {err}" for feed in batch}

    def _record(self, batch: dict[str, set[str]], failures: dict[str, str]) -> None:
        for feed, ids in batch.items():
            message = failures.get(feed) or failures.get("")
            for batch_id in ids:
                if message:
                    self.errors[batch_id] = message
                else:
                    self.errors.pop(batch_id, None)


def _retrying(step: Callable[[], None], attempts: int = RETRIES) -> None:
    """Run a step, again after a pause when it fails transiently (a node locked by another process)."""
    for attempt in range(1, attempts + 1):
        try:
            step()
            return
        except TransientError as err:
            if attempt == attempts:
                raise
            log.warning("attempt %d failed (%s); retrying in %d s", attempt, err, RETRY_PAUSE * attempt)
            time.sleep(RETRY_PAUSE * attempt)


class _BaseTrigger:
    """The worker plumbing every trigger shares; subclasses say what one run does."""

    def __init__(self) -> None:
        self.node_lock = threading.Lock()
        self._worker = _Worker(self.run, self.node_lock)

    def __call__(self, feed: str, batch_id: str) -> None:
        """Queue the ingest of a landed batch (returns at once)."""
        self._worker.submit(feed, batch_id)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or running; False if `timeout` seconds passed first."""
        return self._worker.wait_idle(timeout)

    def last_error(self, batch_id: str) -> str | None:
        """Why the last run that carried this batch failed, if it did."""
        return self._worker.errors.get(batch_id)

    @property
    def runs(self) -> int:
        """How many runs have finished."""
        return self._worker.runs

    def run(self, feeds: list[str]) -> dict[str, str]:
        """Ingest the feeds, then sync; returns the error of each feed that failed ('' for the sync)."""
        failures: dict[str, str] = {}
        for feed in feeds:
            try:
                _retrying(partial(self.ingest, feed))
            except CivicnetError as err:
                log.error("ingest of pushed feed %s failed: %s", feed, err)
                failures[feed] = str(err)
        if len(failures) < len(feeds):
            try:
                _retrying(self.sync)
            except CivicnetError as err:
                log.error("network sync after a push failed: %s", err)
                failures[""] = f"the batch was merged at the city node but the network sync failed: {err}"
        return failures

    def ingest(self, feed: str) -> None:
        """Check and merge every pending batch of a feed."""
        raise NotImplementedError

    def sync(self) -> None:
        """Sync the network from the city."""
        raise NotImplementedError


class InlineTrigger(_BaseTrigger):
    """Ingest and sync in this process (`civicnet gateway serve --trigger inline`, tests, the demo)."""

    def __init__(self, home: Path, as_of: dt.date | None = None, sync: bool = True) -> None:
        """`as_of`: the business date the checks use (None: today in Asia/Shanghai at each run);
        `sync=False` stops after the merge at the city node (tests that need no network)."""
        self.home, self.as_of, self.sync_network = home, as_of, sync
        super().__init__()

    def ingest(self, feed: str) -> None:
        from civicnet import pipeline

        as_of = self.as_of or dt.datetime.now(BUSINESS_TZ).date()
        outcomes = pipeline.ingest_feed(self.home, feed, as_of)
        log.info("ingested pushed feed %s: %s", feed, [(o["batch_id"][:12], o["status"]) for o in outcomes])

    def sync(self) -> None:
        from civicnet import pipeline

        if self.sync_network:
            pipeline.sync_network(self.home)


class AirflowTrigger(_BaseTrigger):
    """Run the feed's ingest DAG and then the network DAG through Airflow (`--trigger airflow`)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        super().__init__()

    def ingest(self, feed: str) -> None:
        from civicnet.airflow_runner import run_dag

        run_dag(self.home, f"ingest_{feed}")

    def sync(self) -> None:
        from civicnet.airflow_runner import run_dag

        run_dag(self.home, "network_sync")


class NoTrigger:
    """Land only: an operator or Airflow's own schedule runs the ingest (`--trigger none`)."""

    def __init__(self) -> None:
        self.node_lock = threading.Lock()
        self.runs = 0

    def __call__(self, feed: str, batch_id: str) -> None:
        """Nothing to do: the batch waits in landing."""

    def wait_idle(self, timeout: float) -> bool:
        """Always idle."""
        return True

    def last_error(self, batch_id: str) -> str | None:
        """No run, no error."""
        return None


def make_trigger(kind: str, home: Path) -> InlineTrigger | AirflowTrigger | NoTrigger:
    """The trigger `civicnet gateway serve --trigger KIND` runs: airflow, inline or none."""
    if kind == "airflow":
        return AirflowTrigger(home)
    if kind == "inline":
        return InlineTrigger(home)
    if kind == "none":
        return NoTrigger()
    raise ValueError(f"trigger {kind!r} is not one of airflow, inline, none")
