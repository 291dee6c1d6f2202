"""The Rounds screen: federated rounds, the player's part in them, and their privacy cost.

Every second an async worker asks the network thread for a
:class:`~p2pgo_tui._roundsmodel.RoundsView` (``NetworkHost.rounds``; the UI loop only
awaits it) and redraws:

- the current round: id, stage, participants, when the next one starts;
- the player: status (idle, joining, ready, training, submitted, verified, ...),
  local training progress, the privacy budget spent and left (from the ledger);
- model versions with their parents, round by round (the one the AI plays with
  marked "◀ AI"), and the mean local-training
  loss and top-1 accuracy per round as sparklines.

``j`` joins the next round: the ledger first says what it would cost
(``NetworkHost.round_quote``: ``PrivacyLedger.epsilon_after``); a round over the
budget is refused with the numbers, anything else asks for confirmation with them,
and the confirmed total is the most the round may spend. ``l`` leaves. Errors are
notifications; nothing here blocks the UI.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, ProgressBar, Sparkline, Static

from p2pgo_tui._charts import format_duration
from p2pgo_tui._dialogs import ConfirmDialog
from p2pgo_tui._model_choice import ModelChoice
from p2pgo_tui._netmodel import NetworkError, NetworkHost
from p2pgo_tui._polling import PollingScreen
from p2pgo_tui._roundsmodel import JoinQuote, MyStatus, RoundSummary, RoundsView

__all__ = ["RoundsScreen", "budget_text", "join_question"]

log = logging.getLogger(__name__)

_STATUS_STYLE = {
    MyStatus.IDLE: "dim",
    MyStatus.JOINING: "yellow",
    MyStatus.READY: "cyan",
    MyStatus.TRAINING: "bold cyan",
    MyStatus.SUBMITTED: "bold blue",
    MyStatus.VERIFIED: "bold green",
    MyStatus.REFUSED: "bold red",
    MyStatus.FAILED: "bold red",
    MyStatus.LEFT: "yellow",
}


def _version(version: str) -> str:
    return version[:10] if version else "-"


def budget_text(spent: float | None, budget: float, delta: float, *, width: int = 24) -> Text:
    """``ε ██████░░░░ 0.594 of 1 spent · 0.406 left (δ = 1e-05)``."""
    text = Text("ε ", style="bold")
    if spent is None or budget <= 0:
        text.append("reading the privacy ledger…", style="dim")
        return text
    filled = min(width, round(spent / budget * width))
    text.append("█" * filled, style="red" if spent >= budget else "magenta")
    text.append("░" * (width - filled), style="dim")
    text.append(f" {spent:.3f} of {budget:g} spent · ")
    text.append(f"{max(0.0, budget - spent):.3f} left", style="bold")
    text.append(f" (δ = {delta:g})", style="dim")
    return text


def join_question(quote: JoinQuote) -> str:
    """The confirmation text: what the round costs and what is left after it."""
    # Explicit line breaks: the dialog is 64 columns wide and its label does not wrap.
    sampling = "with" if quote.amplified else "no"
    return (
        "Join the next federated round?\n\n"
        f"It costs epsilon {quote.cost:.3f} (noise multiplier {quote.noise_multiplier:g},\n"
        f"{sampling} sampling amplification): your total goes\n"
        f"from {quote.epsilon_spent:.3f} to {quote.epsilon_after:.3f} of your budget "
        f"{quote.epsilon_budget:g} (delta {quote.delta:g}),\n"
        f"leaving {quote.left_after:.3f}.\n\n"
        "Your games stay on this machine: only a clipped,\n"
        "noised and masked update of the model leaves it."
    )


class RoundsScreen(PollingScreen[RoundsView]):
    """The federated rounds and the player's part in them (see the module docstring)."""

    POLL_S = 1.0
    POLL_GROUP = "rounds"
    POLL_FAILED = "cannot read the rounds"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "join", "Join next round"),
        Binding("l", "leave", "Leave"),
        Binding("ctrl+r", "refresh", "Refresh"),
    ]
    HELP_NOTES: ClassVar[tuple[str, ...]] = (
        "j joins the next round after showing what it costs your privacy budget "
        "(epsilon, from your ledger); a round that would exceed the budget is refused. "
        "l withdraws, or leaves the round running (budget spent stays spent).",
        "Loss and top-1 are the local training metrics of the participants this app "
        "runs, averaged per round.",
    )
    DEFAULT_CSS = """
    RoundsScreen > #status { height: 1; padding: 0 1; background: $boost; }
    RoundsScreen #top { height: auto; }
    RoundsScreen #top > Vertical { width: 1fr; height: auto; border: round $foreground 30%; padding: 0 1; }
    RoundsScreen #training { width: 1fr; }
    RoundsScreen #bottom { height: 1fr; }
    RoundsScreen #versions { width: 3fr; height: 1fr; border: round $foreground 30%; }
    RoundsScreen #charts { width: 2fr; border: round $foreground 30%; padding: 0 1; }
    RoundsScreen Sparkline { height: 3; margin-bottom: 1; }
    """

    def __init__(self, host: NetworkHost, models: ModelChoice | None = None) -> None:
        super().__init__(host)
        self.models = models  # the AI's model: its version is marked "AI" in the table
        self.view: RoundsView | None = None
        self._announced: set[int] | None = None  # rounds of ours whose end was told

    def compose(self) -> ComposeResult:
        yield Static(self.host.describe(), id="status")
        with Horizontal(id="top"):
            with Vertical(id="round-box"):
                yield Static("", id="round")
            with Vertical(id="me-box"):
                yield Static("", id="me")
                yield ProgressBar(total=None, show_eta=False, id="training")
                yield Static("", id="privacy")
        with Horizontal(id="bottom"):
            versions: DataTable[str | Text] = DataTable(id="versions", cursor_type="row")
            versions.add_columns("Round", "Outcome", "Model", "Parent", "Peers", "Took", "Me")
            yield versions
            with Vertical(id="charts"):
                yield Static("", id="loss-label")
                yield Sparkline([], id="loss")
                yield Static("", id="top1-label")
                yield Sparkline([], id="top1")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#round-box").border_title = "Round"
        self.query_one("#me-box").border_title = "Me"
        self.query_one("#versions").border_title = "Model versions"
        self.query_one("#charts").border_title = "Per round"
        self.query_one("#versions").focus()
        self.start_polling()

    # ---- fetching (PollingScreen) and drawing -----------------------------------------

    async def _poll(self) -> RoundsView:
        view = await self.host.rounds()
        if self.view is None:
            await self.host.prepare_rounds()
        return view

    def show(self, view: RoundsView) -> None:
        """Redraw everything from ``view`` (and tell the player when their round ended)."""
        self.view = view
        sessions = f" · {view.sessions} peers connected" if view.sessions >= 0 else ""
        self._status(f"{self.host.describe()} · {view.coordinator}{sessions}")
        self._draw_round(view)
        self._draw_me(view)
        self._draw_versions(view)
        self._draw_charts(view)
        mine = {s.round_id: s for s in view.history if s.mine}
        if self._announced is None:  # rounds that ended before this screen opened
            self._announced = set(mine)
        for round_id in sorted(set(mine) - self._announced):
            self._announced.add(round_id)
            self._notify_end(mine[round_id])

    def _notify_end(self, summary: RoundSummary) -> None:
        round_id = summary.round_id
        if summary.outcome == "completed":
            self.notify(
                f"Round {round_id} completed with {summary.participants} peers: model "
                f"{_version(summary.parent_version)} → {_version(summary.model_version)} "
                f"(you: {summary.mine})",
                title="Round over",
            )
        else:
            self.notify(
                f"Round {round_id} {summary.outcome}: {summary.reason} (you: {summary.mine})",
                title="Round over",
                severity="warning",
            )

    def _draw_round(self, view: RoundsView) -> None:
        text = Text()
        if view.round_id is None:
            text.append("no round yet", style="dim")
        else:
            text.append(f"Round {view.round_id}", style="bold")
            text.append(f" · {view.stage}")
        if view.participants:
            text.append(f"\n{view.participants} participants")
        if view.next_round_at is not None:
            wait = max(0.0, view.next_round_at - time.time())
            text.append(f"\nnext round in {format_duration(wait)}", style="dim")
        text.append(f"\nmodel held: {_version(view.model_version)}", style="dim")
        in_use = self.models.current if self.models is not None else None
        if in_use is not None:
            text.append(f"\nthe AI plays with: {in_use.short}", style="dim")
        self.query_one("#round", Static).update(text)

    def _draw_me(self, view: RoundsView) -> None:
        text = Text("Status: ")
        text.append(view.my_status.value, style=_STATUS_STYLE[view.my_status])
        if view.my_reason:
            text.append(f" · {view.my_reason}", style="dim")
        text.append(f"\nYour finished games to train on: {view.games}", style="dim")
        self.query_one("#me", Static).update(text)
        done, total = view.training
        bar = self.query_one("#training", ProgressBar)
        bar.display = total > 0  # shown from the first round we train in
        bar.update(total=total or None, progress=done)
        self.query_one("#privacy", Static).update(
            budget_text(view.epsilon_spent, view.epsilon_budget, view.delta)
        )

    def _draw_versions(self, view: RoundsView) -> None:
        table: DataTable[str | Text] = self.query_one("#versions", DataTable)
        table.clear()
        in_use = self.models.version if self.models is not None else ""
        for s in reversed(view.history):
            outcome = Text(s.outcome, style="green" if s.outcome == "completed" else "red")
            model: str | Text = _version(s.model_version) if s.model_version else "(unchanged)"
            if in_use and s.model_version == in_use:
                model = Text(f"{_version(s.model_version)} ◀ AI", style="bold green")
            table.add_row(
                str(s.round_id),
                outcome,
                model,
                _version(s.parent_version),
                str(s.participants) if s.participants >= 0 else "?",
                f"{s.seconds:.1f} s" if s.seconds else "-",
                s.mine or "-",
            )

    def _draw_charts(self, view: RoundsView) -> None:
        for key, title, fmt in (
            ("loss", "loss (local training)", "{:.3f}"),
            ("top1", "top-1 accuracy", "{:.1%}"),
        ):
            values = [v for s in view.history if (v := getattr(s, key)) is not None]
            label = Text(title, style="bold")
            if values:
                label.append(
                    f"  last {fmt.format(values[-1])} · first {fmt.format(values[0])} · "
                    f"{len(values)} rounds",
                    style="dim",
                )
            else:
                label.append("  no round trained here yet", style="dim")
            self.query_one(f"#{key}-label", Static).update(label)
            self.query_one(f"#{key}", Sparkline).data = values[-60:]

    # ---- joining and leaving ------------------------------------------------------------

    def action_join(self) -> None:
        self._join()

    @work(group="rounds-join", exclusive=True, exit_on_error=False)
    async def _join(self) -> None:
        try:
            quote = await self.host.round_quote()
        except Exception as exc:  # not up, no round seen yet, unreadable ledger
            self.notify(f"Cannot join a round: {exc}", severity="error")
            return
        if not quote.allowed:
            self.notify(quote.reason, title="Join refused", severity="error", timeout=12)
            return
        if not await self.app.push_screen_wait(ConfirmDialog(join_question(quote), yes="Join")):
            return
        try:
            await self.host.join_round(quote.epsilon_after)
        except Exception as exc:
            message = str(exc) if isinstance(exc, NetworkError) else repr(exc)
            self.notify(f"Cannot join a round: {message}", severity="error")
            return
        self.notify(
            f"You take part in the next round (epsilon {quote.cost:.3f}, "
            f"{quote.left_after:.3f} left after it).",
            title="Joining",
        )
        self.action_refresh()

    def action_leave(self) -> None:
        self._leave()

    @work(group="rounds-leave", exclusive=True, exit_on_error=False)
    async def _leave(self) -> None:
        try:
            said = await self.host.leave_round()
        except Exception as exc:
            message = str(exc) if isinstance(exc, NetworkError) else repr(exc)
            self.notify(f"Cannot leave: {message}", severity="warning")
            return
        self.notify(said, title="Left")
        self.action_refresh()

    def commands(self) -> Iterator[SystemCommand]:
        yield SystemCommand(
            "Join the next round",
            "See its privacy cost, then confirm (j)",
            self.action_join,
        )
        yield SystemCommand("Leave the round", "Withdraw or drop out (l)", self.action_leave)
        yield SystemCommand("Refresh rounds", "Read the rounds again now", self.action_refresh)
