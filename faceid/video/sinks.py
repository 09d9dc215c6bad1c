"""Where watch events go besides stdout: an HTTP webhook (POST of the event's JSON) and an MQTT
broker (the bus Frigate and Home Assistant users run; paho-mqtt, the Eclipse project's client).

A sink never stops a watch: a failed delivery is logged and counted (``failures``).
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from faceid.errors import OptionError
from faceid.video.watch import Event

__all__ = ["MqttSink", "WebhookSink"]

log = logging.getLogger(__name__)


class WebhookSink:
    """POST each event as ``application/json`` to ``url`` (``http://`` or ``https://``), ``timeout`` seconds each."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise OptionError(f"--webhook: {url!r} is not an http:// or https:// address")
        self.url, self.timeout, self.failures = url, timeout, 0

    def __call__(self, event: Event) -> None:
        body = json.dumps(event.to_json()).encode()
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (checked scheme)
                response.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            self.failures += 1
            log.warning("webhook %s: event not delivered (%s)", self.url, exc)

    def close(self) -> None:
        pass


class MqttSink:
    """Publish each event's JSON to an MQTT broker: ``mqtt://[user:password@]host[:port][/topic]``
    (default port 1883, topic ``faceid/events``), QoS 1. The client reconnects by itself."""

    def __init__(self, url: str, *, client_id: str = "") -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError as exc:
            raise OptionError("--mqtt needs paho-mqtt: pip install 'faceid[watch]'") from exc
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "mqtt" or not parts.hostname:
            raise OptionError(f"--mqtt: {url!r} is not an mqtt://host[:port][/topic] address")
        self.topic = parts.path.lstrip("/") or "faceid/events"
        self.failures = 0
        self._pending: list[Any] = []
        self._client: Any = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if parts.username:
            self._client.username_pw_set(
                urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or "")
            )
        self._client.connect_async(parts.hostname, parts.port or 1883)
        self._client.loop_start()

    def __call__(self, event: Event) -> None:
        import paho.mqtt.client as mqtt

        info = self._client.publish(self.topic, json.dumps(event.to_json()), qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):  # not connected yet: queued (QoS 1)
            self.failures += 1
            log.warning("mqtt: event not queued for %s (code %s)", self.topic, info.rc)
            return
        self._pending = [p for p in self._pending if not p.is_published()] + [info]

    def close(self, timeout: float = 5.0) -> None:
        """Wait up to ``timeout`` seconds for queued events to be delivered, then disconnect."""
        import time

        deadline = time.monotonic() + timeout
        for info in self._pending:
            try:
                info.wait_for_publish(max(0.01, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass
            if not info.is_published():
                self.failures += 1
        if self.failures:
            log.warning("mqtt: %d event(s) not delivered to %s", self.failures, self.topic)
        self._client.disconnect()
        self._client.loop_stop()
