"""What happens after the gateway lands a batch: the ingest of its feed, then a network sync.

`AirflowApiTrigger` (`--trigger airflow`) hands both to a running Airflow scheduler by posting the
feed's landing asset event through Airflow's REST API; `InlineTrigger` runs them in this process
(tests); `DagsTestTrigger` runs the DAGs with `airflow dags test` on this host, with no scheduler
(the demo); `NoTrigger` only lands.

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
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from civicnet.gateway.airflow_api import AirflowApi, AirflowApiSettings, landing_asset_uri
from connectors.feeds import Feed, load_feeds
from schemas.errors import CivicnetError, TerminalError, TransientError

if TYPE_CHECKING:
    from civicnet.gateway.app import Trigger
    from civicnet.settings import Settings

log = logging.getLogger(__name__)
BUSINESS_TZ = ZoneInfo("Asia/Shanghai")
RETRIES, RETRY_PAUSE = 3, 5  # a step that fails transiently is tried 3 times, 5 s then 10 s apart
# a run's work: the feeds with new batches → the error (if any) of each feed ('' for the sync)
RunFeeds = Callable[[list[str]], dict[str, str]]


class _Worker:
    """A single thread that runs queued feeds, coalescing everything queued while it waits."""

    def __init__(self, run: RunFeeds, run_lock: threading.Lock) -> None:
        self._run = run
        self._run_lock = run_lock
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
            # take the queue only once the run may start: whatever arrives meanwhile joins this run
            with self._run_lock:
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


def _retrying(step: Callable[[], None], attempts: int = RETRIES, pause: float = RETRY_PAUSE) -> None:
    """Run a step, again after a pause when it fails transiently (a node locked by another process,
    Airflow down for a moment)."""
    for attempt in range(1, attempts + 1):
        try:
            step()
            return
        except TransientError as err:
            if attempt == attempts:
                raise
            log.warning("attempt %d failed (%s); retrying in %g s", attempt, err, pause * attempt)
            time.sleep(pause * attempt)


class _BaseTrigger:
    """The worker plumbing every trigger shares; subclasses say what one run does."""

    def __init__(self, run_lock: threading.Lock | None = None) -> None:
        """`run_lock`: held while a run works (the city node's lock unless the run never writes it)."""
        self.node_lock = threading.Lock()
        self._worker = _Worker(self.run, run_lock or self.node_lock)

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


class DagsTestTrigger(_BaseTrigger):
    """Run the feed's ingest DAG and then the network DAG with `airflow dags test` in subprocesses on
    this host, with no scheduler (`--trigger dags-test`; the demo's push round)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        super().__init__()

    def ingest(self, feed: str) -> None:
        from civicnet.pipeline.runner import run_dag

        run_dag(self.home, f"ingest_{feed}")

    def sync(self) -> None:
        from civicnet.pipeline.runner import run_dag

        run_dag(self.home, "network_sync")


class AirflowApiTrigger(_BaseTrigger):
    """Tell a running Airflow scheduler that a batch landed (`--trigger airflow`): post an event of the
    feed's landing asset (`civicnet://landing/<dataset>`) through Airflow's REST API. The scheduler
    then runs the feed's ingest DAG, whose merge updates `civicnet://nodes/city`, which runs
    network_sync. A post that fails is retried; if it still fails, or the ingest DAG is paused (its
    scheduler would drop the event), the batch's status says why and the batch waits in landing."""

    def __init__(self, api: AirflowApi, feeds: dict[str, Feed] | None = None,
                 retry_pause: float = RETRY_PAUSE) -> None:
        """`feeds` by slug (the shipped feed configs unless given)."""
        self.api, self.retry_pause = api, retry_pause
        self.datasets = {f.slug: f.dataset for f in (feeds if feeds is not None else load_feeds()).values()}
        super().__init__(run_lock=threading.Lock())  # posting an event never holds the city node

    def run(self, feeds: list[str]) -> dict[str, str]:
        """Announce each feed's new batches; returns why, for each feed that could not be announced."""
        failures: dict[str, str] = {}
        for feed in feeds:
            try:
                _retrying(partial(self.announce, feed), pause=self.retry_pause)
            except CivicnetError as err:
                log.error("could not announce pushed feed %s to Airflow: %s", feed, err)
                failures[feed] = _for_sender(err)
        return failures

    def announce(self, feed: str) -> None:
        """Post one event of the feed's landing asset, once its ingest DAG would act on it."""
        dag_id = f"ingest_{feed}"
        if self.api.dag_paused(dag_id):
            raise DagPausedError(f"Airflow DAG {dag_id} is paused, and a paused DAG ignores asset events: the "
                                 f"gateway's operator must unpause it (Airflow UI, or `airflow dags unpause "
                                 f"{dag_id}`); its next run ingests every batch waiting in landing")
        uri = landing_asset_uri(self.datasets[feed])
        event = self.api.post_asset_event(int(self.api.asset(uri)["id"]), {"feed": feed})
        log.info("posted asset event %s of %s to Airflow", event.get("id"), uri)


class DagPausedError(TerminalError):
    """The DAG a push would start is paused in Airflow."""


def _for_sender(err: CivicnetError) -> str:
    """What a batch's status says when Airflow was not told: the remote sender learns what happens to
    the batch, not where Airflow runs (the gateway's log has the full error for its operator)."""
    why = str(err) if isinstance(err, DagPausedError) else (
        f"Airflow could not be told ({type(err).__name__}; the gateway's operator finds the details in its log)")
    return f"the batch is landed and waits there; nothing needs resending. {why}"


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


TRIGGERS = ("airflow", "dags-test", "inline", "none")


def make_trigger(kind: str, home: Path, airflow: AirflowApiSettings | None = None) -> Trigger:
    """The trigger `civicnet gateway serve --trigger KIND` runs (one of TRIGGERS); `airflow` says
    where Airflow's API is for kind "airflow"."""
    if kind == "airflow":
        if airflow is None:
            raise UnknownTriggerError("trigger 'airflow' needs Airflow's API URL: pass --airflow-url")
        return AirflowApiTrigger(AirflowApi(airflow))
    if kind == "dags-test":
        return DagsTestTrigger(home)
    if kind == "inline":
        return InlineTrigger(home)
    if kind == "none":
        return NoTrigger()
    raise UnknownTriggerError(f"trigger {kind!r} is not one of {', '.join(TRIGGERS)}")


class UnknownTriggerError(TerminalError):
    """`--trigger` names no trigger, or lacks what it needs."""


def airflow_api_settings(settings: Settings, url: str | None = None) -> AirflowApiSettings:
    """How the gateway reaches Airflow: `url` (else the settings'), the settings' user and password,
    else the admin password `airflow standalone` generated in the home."""
    from civicnet.pipeline.runner import generated_credentials

    user, password = settings.airflow_username, settings.airflow_password
    if user is None and password is None:
        user, password = generated_credentials(settings.home) or (None, None)
    return AirflowApiSettings(url or settings.airflow_url, user, password)
