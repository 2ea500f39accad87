"""The engine's `Router`: trigger types and bindings (spec §3.4-§3.6, §6).

`http` bindings checked and routed in the engine; custom bindings parked until a provider
of their type registers, delivered to it, refused or accepted by it, parked again when it
leaves, and unbound when the binder or the type goes. Driven through `router_harness`
(real worker cores, a fake clock).
"""

from __future__ import annotations

from router_harness import Engine, provider_of, webhook_binding

from anyiii._protocol import events as ev
from anyiii._protocol.codes import TRIGGER_REGISTRATION_FAILED
from anyiii._protocol.frames import (
    ErrorBody,
    RegisterTrigger,
    UnregisterTrigger,
    UnregisterTriggerType,
    decode_value,
    to_raw,
)

# --- triggers (spec §3.4-§3.6, §6) -----------------------------------------------------------


def test_http_binding_without_api_path_is_refused(engine: Engine) -> None:
    worker = engine.connect("svc::a")
    binding = RegisterTrigger(
        id="h-1", trigger_type="http", function_id="svc::a", config=to_raw({"http_method": "GET"})
    )
    engine.send(worker, worker.core.register(binding))
    failed = worker.one(ev.TriggerRegistrationFailed)
    assert (failed.trigger_id, failed.trigger_type, failed.function_id) == (
        "h-1",
        "http",
        "svc::a",
    )
    assert failed.error.code == TRIGGER_REGISTRATION_FAILED
    assert failed.error.message == "api_path is required for http triggers"
    assert "h-1" not in engine.router.tables.bindings
    assert len(engine.router.http_routes) == 0


def test_http_binding_with_api_path_is_accepted_silently(engine: Engine) -> None:
    worker = engine.connect("svc::a")
    config = to_raw({"api_path": "/users/:id", "http_method": "post"})
    binding = RegisterTrigger(id="h-1", trigger_type="http", function_id="svc::a", config=config)
    frames_before = len(worker.frames)
    engine.send(worker, worker.core.register(binding))
    assert len(worker.frames) == frames_before
    matched = engine.router.http_routes.match("POST", "/users/7")
    assert matched is not None
    assert matched[1] == {"id": "7"}


def test_custom_binding_is_parked_until_a_provider_registers(engine: Engine) -> None:
    binder = engine.connect("svc::a", bindings=[webhook_binding()])
    assert provider_of(engine, "t-1") is None
    provider = engine.connect(types=["webhook"])
    delivered = provider.one(ev.TriggerBindingRequested).binding
    assert (delivered.id, delivered.trigger_type, delivered.function_id) == (
        "t-1",
        "webhook",
        "svc::a",
    )
    assert decode_value(delivered.config) == {"path": "/hook"}
    assert provider_of(engine, "t-1") == ("default", "webhook")
    assert not binder.take(ev.TriggerRegistrationFailed)


def test_provider_refusal_is_forwarded_to_the_binder_and_parks_the_binding(
    engine: Engine,
) -> None:
    provider = engine.connect(types=["webhook"])
    binder = engine.connect("svc::a", bindings=[webhook_binding()])
    provider.one(ev.TriggerBindingRequested)
    error = ErrorBody(TRIGGER_REGISTRATION_FAILED, "bad path")
    engine.send(provider, provider.core.answer_binding("t-1", error))
    failed = binder.one(ev.TriggerRegistrationFailed)
    assert (failed.trigger_id, failed.error) == ("t-1", error)
    assert provider_of(engine, "t-1") is None


def test_provider_acceptance_is_not_reported_to_the_binder(engine: Engine) -> None:
    provider = engine.connect(types=["webhook"])
    binder = engine.connect("svc::a", bindings=[webhook_binding()])
    provider.one(ev.TriggerBindingRequested)
    frames_before = len(binder.frames)
    engine.send(provider, provider.core.answer_binding("t-1"))
    assert len(binder.frames) == frames_before


def test_provider_disconnect_parks_bindings_until_a_new_provider_registers(
    engine: Engine,
) -> None:
    provider = engine.connect(types=["webhook"])
    engine.connect("svc::a", bindings=[webhook_binding()])
    provider.one(ev.TriggerBindingRequested)
    engine.disconnect(provider)
    assert provider_of(engine, "t-1") is None
    replacement = engine.connect(types=["webhook"])
    assert replacement.one(ev.TriggerBindingRequested).binding.id == "t-1"
    assert provider_of(engine, "t-1") == ("default", "webhook")


def test_unregistertrigger_reaches_the_provider_with_its_trigger_type(engine: Engine) -> None:
    provider = engine.connect(types=["webhook"])
    binder = engine.connect("svc::a", bindings=[webhook_binding()])
    provider.one(ev.TriggerBindingRequested)
    engine.send(binder, binder.core.unregister(UnregisterTrigger(id="t-1")))  # no type given
    assert provider.frames[-1] == UnregisterTrigger(id="t-1", trigger_type="webhook")
    removed = provider.one(ev.TriggerBindingRemoved)
    assert (removed.trigger_id, removed.trigger_type) == ("t-1", "webhook")
    assert "t-1" not in engine.router.tables.bindings


def test_binder_disconnect_unbinds_at_the_provider(engine: Engine) -> None:
    provider = engine.connect(types=["webhook"])
    binder = engine.connect("svc::a", bindings=[webhook_binding()])
    provider.one(ev.TriggerBindingRequested)
    engine.disconnect(binder)
    assert provider.one(ev.TriggerBindingRemoved).trigger_id == "t-1"
    assert not engine.router.tables.bindings


def test_unregistertriggertype_removes_the_type_and_parks_its_bindings(engine: Engine) -> None:
    provider = engine.connect(types=["webhook"])
    engine.connect("svc::a", bindings=[webhook_binding()])
    provider.one(ev.TriggerBindingRequested)
    engine.send(provider, provider.core.unregister(UnregisterTriggerType(id="webhook")))
    assert ("default", "webhook") not in engine.router.tables.trigger_types
    assert provider_of(engine, "t-1") is None
    replacement = engine.connect(types=["webhook"])
    assert replacement.one(ev.TriggerBindingRequested).binding.id == "t-1"
