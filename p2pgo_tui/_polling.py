"""A screen that polls the network thread on a timer: the Peers and Rounds screens' loop.

:class:`PollingScreen` owns the pattern both screens share. Every ``POLL_S`` seconds
(and on ``ctrl+r``) :meth:`~PollingScreen.action_refresh` starts one async worker,
unless the last one is still waiting on the network thread (the ``_refreshing``
guard: a slow network must not pile requests up). The worker shows
``host.describe()`` until the network is up, then awaits :meth:`~PollingScreen._poll`
and hands the result to :meth:`~PollingScreen.show`; a failed request is logged and
shown on the status line, and the next tick retries. The UI loop only awaits.

The relay operator's screen does not use it: it scrapes HTTP endpoints in a thread
worker whether or not our node is up, and pings separately.
"""

from __future__ import annotations

import logging
from typing import ClassVar, Generic, TypeVar

from textual.screen import Screen
from textual.widgets import Static
from textual.worker import Worker

from p2pgo_tui._netmodel import NetStatus, NetworkHost

__all__ = ["PollingScreen"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class PollingScreen(Screen[None], Generic[T]):
    """A screen redrawn from ``await self._poll()`` every ``POLL_S`` seconds.

    Subclasses set the class attributes, implement :meth:`_poll` and :meth:`show`,
    compose a ``Static`` with id ``status`` (or override :meth:`_status`), and call
    :meth:`start_polling` from ``on_mount``.
    """

    POLL_S: ClassVar[float] = 2.0
    POLL_GROUP: ClassVar[str] = "poll"  # the worker group of the poll requests
    POLL_FAILED: ClassVar[str] = "cannot reach the network"  # status text on an error

    def __init__(self, host: NetworkHost) -> None:
        super().__init__()
        self.host = host
        self._refreshing = False
        self._poll_worker: Worker[None] | None = None  # the latest poll request

    async def _poll(self) -> T:
        """Ask the network for the data (runs only while it is up); may raise."""
        raise NotImplementedError

    def show(self, data: T) -> None:
        """Redraw the screen from ``data``."""
        raise NotImplementedError

    def _status(self, text: str) -> None:
        self.query_one("#status", Static).update(text)

    def start_polling(self) -> None:
        """Poll now and every ``POLL_S`` seconds while the screen is mounted."""
        self.set_interval(self.POLL_S, self.action_refresh)
        self.action_refresh()

    def action_refresh(self) -> None:
        if self._refreshing:
            return  # the last request is still on the network thread
        self._refreshing = True
        # What ``@work(group=..., exit_on_error=False)`` would start, with the group
        # chosen by the subclass: a failed poll must not close the app.
        self._poll_worker = self.run_worker(
            self._fetch,
            name="_fetch",
            group=self.POLL_GROUP,
            description="_fetch()",
            exit_on_error=False,
        )

    async def _fetch(self) -> None:
        try:
            if self.host.status is not NetStatus.UP:
                self._status(self.host.describe())
                return
            try:
                data = await self._poll()
            except Exception as exc:  # shown on the status line; the next refresh retries
                log.warning("%s: %s: %r", type(self).__name__, self.POLL_FAILED, exc)
                self._status(f"{self.host.describe()} · {self.POLL_FAILED}: {exc}")
                return
            self.show(data)
        finally:
            self._refreshing = False
