"""``p2pgo-tui``'s network flags: the operator view, a given relay, no network at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pgo_tui import P2PGoApp
from p2pgo_tui.__main__ import main


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[P2PGoApp]:
    """The apps ``main`` built (their ``run`` does nothing)."""
    seen: list[P2PGoApp] = []

    def fake_run(self: P2PGoApp) -> None:
        seen.append(self)

    monkeypatch.setattr(P2PGoApp, "run", fake_run)
    return seen


def test_operator_with_a_relay_and_its_metrics_opens_the_relay_view(
    tmp_path: Path, built: list[P2PGoApp]
) -> None:
    relay = "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWFoo"
    url = "http://127.0.0.1:9100/metrics"
    argv = ["--data-dir", str(tmp_path), "--operator", "--relay", relay, "--metrics", url]
    assert main(argv) == 0
    (app,) = built
    assert app.operator
    plan = app.network.plan
    assert plan is not None and not plan.embedded and plan.relays == (relay,)
    assert [r.metrics_url for r in app.network.relays()] == [url]


def test_no_flags_plan_the_embedded_network_and_no_embedded_plans_none(
    tmp_path: Path, built: list[P2PGoApp]
) -> None:
    assert main(["--data-dir", str(tmp_path)]) == 0
    assert main(["--data-dir", str(tmp_path), "--no-embedded"]) == 0
    embedded, off = built
    assert not embedded.operator and embedded.network.plan is not None
    assert embedded.network.plan.embedded and embedded.network.plan.data_dir == tmp_path
    assert off.network.plan is None and not off.network.enabled


def test_a_bad_relay_address_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--data-dir", str(tmp_path), "--relay", "127.0.0.1:4001"])
    assert exit_info.value.code == 2
    assert "/p2p/" in capsys.readouterr().err
