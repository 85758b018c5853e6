"""`newsletter serve`: APScheduler 3 wiring, the database lease, and a clean stop. Nothing else.

One AsyncIOScheduler with a persistent SQLAlchemy job store in the project's database (coalesce, one
instance per job, a misfire grace time): a run missed while `serve` was down runs once on restart if it
is late by less than the grace time, and is recorded as skipped otherwise. Only the holder of the
database lease runs jobs; a second `serve` waits. Jobs run in a worker thread; the web app (when given)
runs on the same event loop. SIGTERM/SIGINT: no new jobs, running ones finish (a send stops claiming and
releases what it had queued), the lease is released, exit 0. The SQLite file replaced or deleted under a
running `serve` (checked at each job and lease renewal) stops it the same way, with an error and exit 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from newsletter.clock import utcnow, worker_name
from newsletter.config import Settings
from newsletter.config.redact import redact
from newsletter.delivery.claims import dead_senders
from newsletter.delivery.ledger_writer import one_line
from newsletter.errors import NewsletterError
from newsletter.service.jobs import JOBS, JobResult
from newsletter.service.stopping import StopFlag
from newsletter.service.triggers import LEASE_NAME, cron_trigger, next_runs, schedules
from newsletter.storage.file_identity import DatabaseFile
from newsletter.storage.runs import Lease, RunStore, database_now

log = logging.getLogger(__name__)

JOB_TABLE = "apscheduler_jobs"
_service: Service | None = None
"""The running service; APScheduler's persistent jobs refer to ``scheduled`` by name and find it here."""


async def scheduled(name: str) -> None:
    """The function every stored job calls: run job ``name`` in the current service."""
    if _service is None:  # pragma: no cover - jobs only fire inside a running service
        raise RuntimeError("no running service")
    await _service.run_job(name)


def _fingerprint(trigger: Any, grace: Any) -> str:
    """What makes a stored job the configured one: APScheduler 3's ``CronTrigger.__str__`` omits the zone,
    so a changed ``[newsletter] timezone`` (or misfire grace) once kept the old job."""
    return f"{trigger} zone={getattr(trigger, 'timezone', '')} grace={grace}"


class Service:
    def __init__(self, settings: Settings, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.worker = worker_name()
        self.runs = RunStore(engine)
        self.lease = Lease(engine, LEASE_NAME, holder=self.worker,
                           duration=timedelta(seconds=settings.schedule.lease_seconds))
        self.stopping = StopFlag()
        self.stop_requested = asyncio.Event()
        self.running: set[asyncio.Task[Any]] = set()
        self.scheduler: AsyncIOScheduler | None = None
        self.failure: str | None = None
        """Why `serve` stopped on its own (the web server could not run), for a non-zero exit."""
        self.database_file = DatabaseFile(engine)
        self._unrecorded: dict[int, tuple[datetime, JobResult]] = {}
        """Finished runs whose record the database could not take yet (run id → end time, result)."""

    def database_replaced(self) -> bool:
        """Stop loudly (exit != 0) when the SQLite file was replaced or deleted under this process: every
        write from now on would go into a file nobody else sees (``DatabaseFile``)."""
        reason = self.database_file.changed()
        if reason is None:
            return False
        if self.failure is None:
            self.failure = (f"{reason} while `serve` was running; stopping so nothing more is written into the "
                            "old file (start `serve` again to use the new one)")
            log.error("%s", self.failure)
        self.request_stop()
        return True

    async def run_job(self, name: str) -> JobResult:
        if self.stopping.is_set() or self.database_replaced():
            return JobResult("nothing", "not started: serve is stopping")
        try:
            run_id = self.runs.start(name, now=self.clock(), worker=self.worker)
        except SQLAlchemyError as error:
            log.error("job %s not started: the database cannot be used (%s)", name, one_line(error))
            return JobResult("error", f"not started: the database cannot be used ({one_line(error)})")
        task = asyncio.current_task()
        if task is not None:
            self.running.add(task)
        log.info("job %s started", name)
        try:
            result = await asyncio.to_thread(JOBS[name], self.settings, self.engine, self.clock, self.stopping)
        except NewsletterError as error:
            result = JobResult("error", str(error))
        except SQLAlchemyError as error:  # the database went away: one line, not a traceback
            result = JobResult("error", f"the database cannot be used: {one_line(error)}")
        except Exception as error:
            log.exception("job %s failed", name)
            result = JobResult("error", f"{type(error).__name__}: {error}")
        finally:
            if task is not None:
                self.running.discard(task)
        self._unrecorded[run_id] = (self.clock(), result)
        self._record_finished()
        log.log(logging.ERROR if result.status == "error" else logging.INFO, "job %s: %s", name, result.summary)
        return result

    def _record_finished(self) -> None:
        """Close the run records of finished jobs; those the database could not take (it was down when the
        job ended) are tried again at each lease renewal and at stop, so none stays ``running``."""
        for run_id, (finished, result) in list(self._unrecorded.items()):
            try:
                self.runs.finish(run_id, now=finished, status=result.status, summary=redact(result.summary),
                                 details=result.details)
            except SQLAlchemyError as error:
                log.warning("could not record the end of run %s (%s); trying again later", run_id, one_line(error))
                return
            del self._unrecorded[run_id]

    def _missed(self, event: JobExecutionEvent) -> None:
        due = event.scheduled_run_time
        self.runs.record(event.job_id, now=self.clock(), worker=self.worker, status="skipped",
                         summary=f"skipped the run due at {due:%Y-%m-%d %H:%M %Z}: missed by more than "
                                 f"misfire_grace_seconds ({self.settings.schedule.misfire_grace_seconds} s)")
        log.warning("job %s: skipped the run due at %s (missed by more than the grace time)", event.job_id, due)

    def _build_scheduler(self) -> AsyncIOScheduler:
        schedule = self.settings.schedule
        return AsyncIOScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.engine, tablename=JOB_TABLE)},
            job_defaults={"coalesce": True, "max_instances": 1,
                          "misfire_grace_time": schedule.misfire_grace_seconds},
            timezone=self.settings.newsletter.timezone,
        )

    def _sync_jobs(self, scheduler: AsyncIOScheduler) -> None:
        """Add the configured jobs; keep a stored job whose schedule is unchanged, so a missed run survives."""
        zone = self.settings.newsletter.timezone
        wanted = schedules(self.settings)
        for job in scheduler.get_jobs():
            if job.id not in wanted:
                job.remove()
        for name, line in wanted.items():
            trigger = cron_trigger(line, zone)
            stored = scheduler.get_job(name)
            if stored is not None and _fingerprint(stored.trigger, stored.misfire_grace_time) == _fingerprint(
                    trigger, self.settings.schedule.misfire_grace_seconds):
                continue
            scheduler.add_job(f"{__name__}:scheduled", trigger, args=[name], id=name, name=name,
                              replace_existing=True)

    def lease_now(self) -> datetime:
        """The time lease expiries are written and compared in: the database server's, where it has one."""
        return database_now(self.engine, self.clock())

    def _take_from_dead_holder(self) -> bool:
        """Take the lease at once from a holder on this host whose process is gone (killed, crashed), whatever
        its expiry says (a clock stepped back once made a new `serve` wait 12 hours)."""
        stored = self.lease.row()
        if stored is None or stored[0] == self.worker or not dead_senders([stored[0]]):
            return False
        if self.lease.take_over(stored[0], now=self.lease_now()):
            log.warning("took over the scheduler lease of %s: that process is gone", stored[0])
            return True
        return False

    async def _wait_for_lease(self) -> bool:
        announced = False
        while not self.stop_requested.is_set():
            if self.lease.acquire(now=self.lease_now()) or self._take_from_dead_holder():
                return True
            if not announced:
                holder = self.lease.holder_now(now=self.lease_now())
                log.warning("another `serve` (%s) holds the scheduler lease; waiting", holder)
                announced = True
            await self._sleep(min(5.0, self.settings.schedule.lease_seconds / 3))
        return False

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop_requested.wait(), timeout=seconds)

    async def _keep_lease(self) -> None:
        """Renew the lease; a database error is retried, and jobs pause while the lease may have lapsed.

        One failed renewal used to end this task silently: the lease lapsed, a standby took it, and both
        ran jobs.
        """
        assert self.scheduler is not None
        duration = timedelta(seconds=self.settings.schedule.lease_seconds)
        renewed = self.clock()
        while not self.stop_requested.is_set():
            await self._sleep(self.settings.schedule.lease_seconds / 3)
            if self.stop_requested.is_set() or self.database_replaced():
                return
            try:
                held = await asyncio.to_thread(lambda: self.lease.acquire(now=self.lease_now()))
            except SQLAlchemyError as error:
                log.warning("could not renew the scheduler lease (%s); trying again",
                            str(getattr(error, "orig", error)).splitlines()[0])
                if self.clock() - renewed >= duration * 2 / 3 and self.scheduler.state != 2:
                    log.error("the scheduler lease may lapse before it can be renewed; pausing jobs")
                    self.scheduler.pause()
                continue
            if held:
                renewed = self.clock()
                if self._unrecorded:
                    await asyncio.to_thread(self._record_finished)
                if self.scheduler.state == 2:  # paused after losing the lease: take over again
                    self.scheduler.resume()
            elif self.scheduler.state != 2:
                log.error("lost the scheduler lease to another `serve`; pausing jobs")
                self.scheduler.pause()

    def _web_stopped(self, task: asyncio.Task[Any]) -> None:
        if self.stop_requested.is_set() or task.cancelled():
            return
        error = task.exception()
        self.failure = f"the web server stopped: {error or 'it exited'} (see the log above; is [web] port free?)"
        log.error("%s; stopping", self.failure)
        self.request_stop()

    def request_stop(self) -> None:
        self.stopping.set()
        self.stop_requested.set()

    async def run(self, *, web: Callable[[], Any] | None = None) -> None:
        """Serve until asked to stop: the scheduler (once the lease is ours) and the web app if given."""
        global _service
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        web_task = asyncio.create_task(web()) if web is not None else None
        if web_task is not None:
            web_task.add_done_callback(self._web_stopped)
        try:
            if not await self._wait_for_lease():
                return
            _service = self
            died = self.runs.mark_died(dead_senders(self.runs.running_workers()), now=self.clock())
            if died:
                log.warning("%d runs of a `serve` that died are marked so", died)
            scheduler = self.scheduler = self._build_scheduler()
            scheduler.add_listener(self._missed, EVENT_JOB_MISSED)
            scheduler.start(paused=True)
            self._sync_jobs(scheduler)
            scheduler.resume()
            for name, when in next_runs(self.settings, now=self.clock()).items():
                log.info("job %s: next run %s", name, when)
            if "retry" in schedules(self.settings):
                # Finish at once what a killed `serve` left: the daily job has moved on from its edition
                self.running.add(asyncio.create_task(self.run_job("retry")))
            keeper = asyncio.create_task(self._keep_lease())
            await self.stop_requested.wait()
            log.info("stopping: no new jobs; waiting for %d running job(s)", len(self.running))
            scheduler.pause()
            if self.running:
                await asyncio.gather(*self.running, return_exceptions=True)
            keeper.cancel()
            scheduler.shutdown(wait=False)
            self._record_finished()
            self.lease.release()
        finally:
            _service = None
            if web_task is not None:
                web_task.cancel()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
