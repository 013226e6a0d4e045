"""A CMPP channel: its connections to the upstream, and what their answers mean for the outbox.

Per outbox row (one recipient of one customer message) the upstream gets one SUBMIT per part.
The row turns 'sent' once every part was answered with Result 0 (ledger.mark_sent) and is
finished with the upstream's report once every part reported. Failures finish it at once:
Result N -> MO:NNNN, timeout -> MO:0254, link lost with the part in flight -> MO:0255.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from gateway.cmpp import (
    CmppDecodeError, CmppEncodeError, Deliver, Submit, SubmitResp, parse_report,
)
from gateway.store import GatewayStore, OutboxRow
from policy.rules.model import Channel
from policy.settings import Settings

from .channel import ChannelWorker, Stopping
from .codes import UNSENDABLE, upstream_result
from .ledger import Ledger
from .link import Link, LinkConfig, is_link_error
from .split import UpstreamPart

log = logging.getLogger("gateway.forwarder")

_INTERMEDIATE = "ACCEPTD"  # not a final state; an ISMG must not pass it on (cmpp.md §7)
_FIRST_BACKOFF = 0.5
_FEE_TYPE_FREE = "01"


@dataclass
class _Job:
    """One outbox row on its way: the upstream Msg_Id of each part once answered."""
    row: OutboxRow
    ids: list[int | None]
    closed: bool = False  # finished, or marked sent
    submitted: int = 0
    answered: int = 0


def _report_time(text: str) -> float:
    try:
        return datetime.strptime(text, "%y%m%d%H%M").timestamp()
    except ValueError:
        return datetime.now().timestamp()


class CmppChannel(ChannelWorker):
    def __init__(self, channel: Channel, settings: Settings, store: GatewayStore, ledger: Ledger,
                 mo_owner: Callable[[str], str | None]):
        super().__init__(channel, store, ledger)
        self.settings = settings
        self.mo_owner = mo_owner
        config = LinkConfig(channel.host, channel.port, channel.account, channel.secret,
                            channel.version, channel.window, settings.upstream_submit_timeout,
                            settings.active_test_interval, settings.response_timeout,
                            settings.retries)
        self.links = [Link(config, self, f"{channel.id}#{i + 1}")
                      for i in range(max(1, channel.connections))]

    def capacity(self) -> int:
        return sum(link.free for link in self.links)

    async def run(self) -> None:
        requeued = self.store.requeue_claimed(self.channel.id)
        if requeued:
            log.warning("%s: %d messages claimed by a forwarder that stopped without an answer "
                        "from the upstream go out again", self.channel.id, requeued)
        tasks = [asyncio.create_task(self._keep_connected(link)) for link in self.links]
        try:
            await self.pump()
        finally:
            await asyncio.gather(*(link.close(grace=2.0) for link in self.links))
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _keep_connected(self, link: Link) -> None:
        delay = _FIRST_BACKOFF
        cap = max(_FIRST_BACKOFF, self.settings.upstream_reconnect_max)
        while not self.stopping:
            try:
                await link.session()
            except Exception as e:
                if not is_link_error(e):
                    raise
                if not self.stopping:
                    log.warning("%s: %s; reconnecting in %.1f s", link.name, e or type(e).__name__,
                                delay)
            if link.logged_in:  # it worked for a while: start the backoff over
                delay = _FIRST_BACKOFF
                link.logged_in = False
            if self.stopping:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, cap)

    async def _free_link(self, prefer: Link | None) -> Link:
        while True:
            if prefer is not None and prefer.free > 0:
                return prefer
            best = max(self.links, key=lambda link: link.free)
            if best.free > 0:
                return best
            await self.wait_change(1.0)

    async def forward(self, row: OutboxRow, parts: list[UpstreamPart]) -> None:
        job = _Job(row, [None] * len(parts))
        link = None
        try:
            for index, part in enumerate(parts):
                await self.rate.acquire()
                link = await self._free_link(link)
                if job.closed:  # an earlier part failed meanwhile
                    return
                link.submit(self._submit(row, part), (job, index))
                job.submitted += 1
                self.forwarded += 1
        except CmppEncodeError as e:
            # e.g. a 3.0 customer's 32-character number towards a 2.x upstream
            log.error("%s: outbox %d cannot be encoded for this upstream: %s", self.channel.id,
                      row.id, e)
            self._close(job, UNSENDABLE)
        except Stopping:
            if job.submitted == 0:
                self.store.requeue(row.id)
            raise

    def _submit(self, row: OutboxRow, part: UpstreamPart) -> Submit:
        return Submit(0, pk_total=part.pk_total, pk_number=part.pk_number, registered_delivery=1,
                      service_id=row.service_id, tp_udhi=part.tp_udhi, msg_fmt=part.msg_fmt,
                      msg_src=self.channel.account[:6], fee_type=_FEE_TYPE_FREE, src_id=row.src_id,
                      dest_terminal_ids=(row.dest,), msg_content=part.content)

    # -- LinkOwner -------------------------------------------------------------------------------
    def submit_answered(self, token, resp: SubmitResp) -> None:
        job, index = token
        if job.closed:
            return
        if resp.result:
            self._close(job, upstream_result(resp.result))
            return
        job.ids[index] = resp.msg_id
        job.answered += 1
        if job.answered == len(job.ids):
            job.closed = True
            final = self.ledger.mark_sent(self.channel.id, job.row.id, job.ids)
            if final:
                self.finish(final.outbox_id, final.stat, final.done_time)

    def submit_failed(self, token, stat: str) -> None:
        self._close(token[0], stat)

    def _close(self, job: _Job, stat: str) -> None:
        if not job.closed:
            job.closed = True
            self.finish(job.row.id, stat)

    def deliver(self, link: Link, packet: Deliver) -> int | None:
        try:
            if packet.registered_delivery == 1:
                return self._report(link, packet)
            return self._mo(packet)
        except CmppDecodeError as e:
            log.warning("%s: bad DELIVER from the upstream: %s", link.name, e)
            return 1  # "bad message structure"
        except Exception:
            # e.g. the store is locked for too long: leave it unanswered, the upstream resends
            log.exception("%s: cannot take DELIVER %d now", link.name, packet.msg_id)
            return None

    def _report(self, link: Link, packet: Deliver) -> int:
        report = parse_report(packet, link.version)
        if report.stat == _INTERMEDIATE:
            return 0
        final = self.ledger.record_report(self.channel.id, report.msg_id, report.stat,
                                          _report_time(report.done_time))
        if final:
            self.finish(final.outbox_id, final.stat, final.done_time)
        return 0

    def _mo(self, packet: Deliver) -> int:
        account = self.mo_owner(packet.dest_id)
        if account is None:
            # answered all the same: nobody will ever own it, and an unanswered DELIVER
            # would come back forever
            log.warning("%s: MO from %s to %s matches no account's access code; dropped",
                        self.channel.id, packet.src_terminal_id, packet.dest_id)
            return 0
        self.ledger.add_mo(self.channel.id, packet.msg_id, account, packet.dest_id,
                           packet.src_terminal_id, packet.msg_content, packet.msg_fmt,
                           packet.service_id, packet.tp_udhi)
        return 0
