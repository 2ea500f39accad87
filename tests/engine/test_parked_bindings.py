"""Bindings whose trigger type nobody provides (spec §3.4, §3.5): parked, reported once per
trigger type at warning level, and visible as `parked` in the listing built-ins."""

from __future__ import annotations

import logging

import pytest
from router_harness import Engine, Peer, call_value, webhook_binding

from anyiii._protocol.frames import RegisterTrigger, to_raw


def parked_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "is not registered" in r.getMessage()
    ]


def listed(engine: Engine, peer: Peer) -> dict[str, bool]:
    rows = call_value(engine, peer, "engine::registered-triggers::list", {})
    return {row["id"]: row["parked"] for row in rows["registered_triggers"]}


def test_parking_is_warned_once_per_trigger_type_and_listed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = Engine()
    with caplog.at_level(logging.DEBUG, logger="anyiii.engine"):
        worker = engine.connect(
            "svc::a",
            bindings=[
                webhook_binding("w-1"),
                webhook_binding("w-2"),
                RegisterTrigger(id="o-1", trigger_type="other", function_id="svc::a"),
            ],
        )
    warnings = parked_warnings(caplog)
    assert len(warnings) == 2
    assert "'webhook'" in warnings[0]
    assert "w-1" in warnings[0]
    assert "'other'" in warnings[1]
    assert listed(engine, worker) == {"w-1": True, "w-2": True, "o-1": True}
    info = call_value(engine, worker, "engine::registered-triggers::info", {"id": "w-2"})
    assert info["parked"] is True


def test_a_provider_unparks_and_its_departure_warns_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = Engine()
    worker = engine.connect("svc::a", bindings=[webhook_binding("w-1"), webhook_binding("w-2")])
    provider = engine.connect(types=["webhook"])
    assert listed(engine, worker) == {"w-1": False, "w-2": False}
    assert len(parked_warnings(caplog)) == 1  # before the provider came
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="anyiii.engine"):
        engine.disconnect(provider)
        engine.send(
            worker,
            worker.core.register(webhook_binding("w-3")),
        )
    assert len(parked_warnings(caplog)) == 1
    assert listed(engine, worker) == {"w-1": True, "w-2": True, "w-3": True}


def test_bindings_of_engine_provided_types_are_not_parked() -> None:
    engine = Engine()
    worker = engine.connect(
        "svc::a",
        bindings=[
            RegisterTrigger(
                id="s-1",
                trigger_type="subscribe",
                function_id="svc::a",
                config=to_raw({"topic": "t"}),
            )
        ],
    )
    assert listed(engine, worker) == {"s-1": False}
