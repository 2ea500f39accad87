"""Workers written for the official Python SDK (iii-sdk 0.25): a custom trigger type.

    python custom_trigger.py ENGINE_URL

One worker provides the trigger type `dropin::webhook`; another binds its function to
it; the provider fires the binding. Prints one JSON line per observation.
"""

from __future__ import annotations

import json
import sys
import threading

from iii import InitOptions, InvocationError, register_worker
from iii.triggers import TriggerConfig, TriggerHandler


def show(what, value):
    print(json.dumps({what: value}, sort_keys=True), flush=True)


class Webhooks(TriggerHandler[dict]):
    def __init__(self):
        self.bindings = {}
        self.changed = threading.Condition()

    async def register_trigger(self, config: TriggerConfig[dict]) -> None:
        if not config.config.get("path", "").startswith("/"):
            raise ValueError("path must start with /")
        with self.changed:
            self.bindings[config.id] = config
            self.changed.notify_all()

    async def unregister_trigger(self, config: TriggerConfig[dict]) -> None:
        with self.changed:
            self.bindings.pop(config.id, None)
            self.changed.notify_all()

    def wait(self, predicate):
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self.bindings), timeout=10)


def main(url):
    provider = register_worker(url, InitOptions(worker_name="dropin-provider"))
    app = register_worker(url, InitOptions(worker_name="dropin-app"))
    webhooks = Webhooks()
    provider.register_trigger_type(
        {"id": "dropin::webhook", "description": "calls you on a webhook"}, webhooks
    )
    provider.trigger({"function_id": "engine::functions::list", "payload": {}})

    received = []
    got = threading.Event()

    async def on_hook(data, metadata=None):
        received.append({"data": data, "metadata": metadata})
        got.set()

    app.register_function("app::on_hook", on_hook)
    trigger = app.register_trigger(
        {
            "type": "dropin::webhook",
            "function_id": "app::on_hook",
            "config": {"path": "/github"},
            "metadata": {"team": "infra"},
        }
    )
    show("bound", webhooks.wait(lambda b: len(b) == 1))
    [config] = webhooks.bindings.values()
    show(
        "config",
        {"function_id": config.function_id, "config": config.config, "metadata": config.metadata},
    )

    provider.trigger(
        {
            "function_id": config.function_id,
            "payload": {"event": "push"},
            "metadata": config.metadata,
        }
    )
    show("fired", got.wait(10))
    show("received", {"event": received[0]["data"]["event"], "metadata": received[0]["metadata"]})

    try:
        app.trigger(
            {
                "function_id": "engine::register_trigger",
                "payload": {
                    "trigger_type": "dropin::webhook",
                    "function_id": "app::on_hook",
                    "config": {"path": "nope"},
                },
            }
        )
        show("refused", False)
    except InvocationError as error:
        show("refused", error.message.endswith("path must start with /"))

    trigger.unregister()
    show("unbound", webhooks.wait(lambda b: len(b) == 0))
    app.shutdown()
    provider.shutdown()
    show("done", True)


if __name__ == "__main__":
    main(sys.argv[1])
