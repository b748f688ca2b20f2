"""Shift changes on APScheduler cron triggers: record the handover, then offer waiting work.

At the start of each shift (in the roster's time zone) the watch records a handover (交接班)
summary for the team, naming the incoming duty lead who must acknowledge it, and offers the
team's waiting assignments to the officers who just came on duty. :meth:`ShiftWatch.shift_began`
does the work and is what tests call; the cron jobs only decide when.
"""

from __future__ import annotations

import logging
from datetime import datetime

import orjson
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from dispatcher.core.roster import WEEKDAY_NAMES, Roster, Shift
from dispatcher.hub import Hub
from dispatcher.store import HandoverRecord

log = logging.getLogger(__name__)


class ShiftWatch:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._scheduler: AsyncIOScheduler | None = None
        self._roster: Roster | None = None

    def start(self) -> None:
        self._scheduler = AsyncIOScheduler(timezone="UTC")
        self._scheduler.start()
        self.follow(self._hub.roster)

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    def follow(self, roster: Roster) -> None:
        """(Re)schedule one cron job per shift of ``roster``; call again after the roster changes."""
        self._roster = roster
        if self._scheduler is None:
            return
        self._scheduler.remove_all_jobs()
        for shift in roster.shifts:
            self._scheduler.add_job(
                self._fire,
                trigger=trigger_for(shift, roster.timezone),
                args=[shift.id],
                id=f"shift:{shift.id}",
                misfire_grace_time=300,
                coalesce=True,
            )
        log.info("shift changes: %d cron jobs armed, one per shift of roster %s", len(roster.shifts), roster.version)

    async def _fire(self, shift_id: str) -> None:
        roster = self._roster
        shift = next((s for s in roster.shifts if s.id == shift_id), None) if roster else None
        if shift is None or not self._hub.running:
            return
        try:
            await self.shift_began(shift, self._hub.clock.now())
        except Exception:
            log.exception("shift change %s failed", shift_id)

    async def shift_began(self, shift: Shift, at: datetime) -> HandoverRecord:
        """Record the team's handover (a hub command) and hand its waiting assignments to who came on duty."""
        record = await self._hub.record_handover(shift, at)
        filled = await self._hub.offer_waiting(shift.team, at)
        summary = orjson.loads(record.summary)
        log.info(
            "shift %s began: handover %s (%d open, %d about to breach), %d waiting assignments handed out",
            shift.id,
            record.id,
            len(summary["open"]),
            len(summary["about_to_breach"]),
            filled,
        )
        return record


def trigger_for(shift: Shift, timezone: str) -> CronTrigger:
    """A cron trigger at the shift's start on the days it runs."""
    fields: dict[str, str] = {"hour": str(shift.start.hour), "minute": str(shift.start.minute)}
    if shift.weekdays:
        fields["day_of_week"] = ",".join(WEEKDAY_NAMES[d] for d in sorted(shift.weekdays))
    if shift.days_of_month:
        fields["day"] = ",".join(str(d) for d in sorted(shift.days_of_month))
    return CronTrigger(timezone=timezone, **fields)
