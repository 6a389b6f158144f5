"""``fhir-twin devices``: the MQTT bridge on its own, and ``devices simulate``."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from fhir_twin.cli.database_commands import DATABASE, safe_url
from fhir_twin.cli.termination import terminated
from fhir_twin.config import Config

MQTT_URL = click.option(
    "--mqtt-url",
    default=None,
    help="The broker, mqtt://host:port (default: FHIR_TWIN_MQTT_URL, else mqtt://127.0.0.1:1883).",
)
PREFIX = click.option(
    "--prefix", default=None, help="Topic prefix (default: FHIR_TWIN_MQTT_TOPIC_PREFIX, else fhir-twin/)."
)


def _simulator() -> Any:
    from fhir_twin.security.principal import Principal

    return Principal("fhir-twin devices simulate", kind="server", trusted=True)


def _config(database_url: str | None, mqtt_url: str | None, prefix: str | None) -> Config:
    """The settings, with the options given; the local broker when no ``mqtt_url`` is set."""
    given = {"database_url": database_url, "mqtt_url": mqtt_url, "mqtt_topic_prefix": prefix}
    overrides = {name: value for name, value in given.items() if value is not None}
    config = Config.from_env(overrides)
    return config if config.mqtt_url else Config.from_env({**overrides, "mqtt_url": "mqtt://127.0.0.1:1883"})


@click.group(invoke_without_command=True)
@DATABASE
@MQTT_URL
@PREFIX
@click.pass_context
def devices(ctx: click.Context, database_url: str | None, mqtt_url: str | None, prefix: str | None) -> None:
    """Run the bridge from the MQTT broker into the database until interrupted (Ctrl-C) or
    terminated (SIGTERM), and the Digital Doctor's live assessment with it, reporting its counts
    every 10 s."""
    if ctx.invoked_subcommand is not None:
        return
    from fhir_twin.services import build
    from fhir_twin.twin.mapping_file import MappingError

    config = _config(database_url, mqtt_url, prefix)
    try:
        services = build(config)
    except (MappingError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    assert services.bridge is not None
    database = safe_url(config.resolved_database_url)
    services.start()
    # Said once subscribed (or after waiting 10 s for the broker, while the bridge keeps retrying).
    state = "subscribed" if services.bridge.subscribed else "waiting for the broker"
    click.echo(f"fhir-twin devices: {config.mqtt_url} ({config.mqtt_topic_prefix}) into {database}, {state}")
    try:
        with terminated() as stop:
            while not stop.wait(10):
                click.echo(json.dumps(dict(services.bridge.counts), sort_keys=True))
    except KeyboardInterrupt:
        pass
    finally:
        # Stopping writes every reading already taken from the broker before the command ends.
        services.bridge.stop()
        services.close()
    click.echo(f"fhir-twin devices: stopped; {json.dumps(dict(services.bridge.counts), sort_keys=True)}")


@devices.command()
@DATABASE
@MQTT_URL
@PREFIX
@click.option("--patients", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--rate", type=click.FloatRange(min=0.01), default=1.0, show_default=True, help="Messages per second per patient."
)
@click.option(
    "--deteriorating", type=click.IntRange(min=0), default=1, show_default=True, help="Patients who deteriorate."
)
@click.option("--minutes", type=click.FloatRange(min=0.1), default=10.0, show_default=True, help="Time to deteriorate.")
@click.option(
    "--duration", type=click.FloatRange(min=0), default=0, help="Seconds to run (default: until interrupted)."
)
def simulate(
    database_url: str | None,
    mqtt_url: str | None,
    prefix: str | None,
    patients: int,
    rate: float,
    deteriorating: int,
    minutes: float,
    duration: float,
) -> None:
    """Create PATIENTS patients, each with a monitor (Device.patient), and publish their vital signs."""
    import paho.mqtt.client as mqtt

    from fhir_twin.cli.database_commands import services as build_services
    from fhir_twin.devices.bridge import mqtt_address
    from fhir_twin.devices.simulation import SimulatedMonitor, admission
    from fhir_twin.interactions.message import Request
    from fhir_twin.security.context import acting_as

    config = _config(database_url, mqtt_url, prefix)
    built = build_services(config)
    stamp = int(time.time())
    monitors = []
    for index in range(patients):
        device_id = f"sim-{stamp}-{index}"
        with acting_as(_simulator()):
            response = built.interactions.route(
                Request("POST", "", config.base_url, body=admission(device_id, f"Simulated {index}"))
            )
        if response.status != 200:
            raise click.ClickException(f"could not admit simulated patient {index}: {response.body}")
        monitors.append(SimulatedMonitor(device_id, deteriorating=index < deteriorating, minutes=minutes))
    built.close()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect(*mqtt_address(config.mqtt_url))
    client.loop_start()
    topic = config.mqtt_topic_prefix + "devices/monitor/{}/vitals"
    click.echo(f"publishing {patients} monitors at {rate}/s each to {topic.format('<device>')}")
    started = time.monotonic()
    sent = 0
    try:
        with terminated() as stop:
            while not stop.is_set() and (not duration or time.monotonic() - started < duration):
                now = time.time()
                for monitor in monitors:
                    client.publish(topic.format(monitor.device_id), json.dumps(monitor.message(now)), qos=1)
                    sent += 1
                stop.wait(max(0.0, 1 / rate - (time.time() - now)))
    except KeyboardInterrupt:
        pass
    finally:
        client.disconnect()
        client.loop_stop()
    click.echo(f"published {sent} messages")
