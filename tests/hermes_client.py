"""A Hermes client as Rhasspy's services are written: ``rhasspyhermes.client.HermesClient`` on paho-mqtt 1.5.

Run by tests/test_hermes.py with ``.venv-clients/bin/python`` (rhasspy-hermes pins paho-mqtt 1.5,
edge needs 2.x). It subscribes to ``NluIntent``, ``NluIntentNotRecognized``, ``NluIntentParsed``
and ``NluError``, publishes the ``NluQuery`` messages given as JSON lines on stdin, and prints
one JSON line per message received: the topic, the message class, the message parsed by the
library's own ``from_json`` (as ``to_dict()``), and whether that equals what the library's
client parsed on its own (``from_dict`` of the payload, in ``HermesClient.parse_mqtt_message``).
"""

import asyncio
import json
import sys
import threading

import paho.mqtt.client as mqtt
from rhasspyhermes.client import HermesClient
from rhasspyhermes.nlu import NluError, NluIntent, NluIntentNotRecognized, NluIntentParsed, NluQuery

TYPES = (NluIntent, NluIntentNotRecognized, NluIntentParsed, NluError)


class Recorder(HermesClient):
    def __init__(self, client):
        super().__init__("edge-test-hermes", client)
        self.subscribe(*TYPES)
        self.raw = {}

    async def on_raw_message(self, topic, payload):
        self.raw.setdefault(topic, []).append(payload)

    async def on_message(self, message, site_id=None, session_id=None, topic=None):
        payload = self.raw[topic].pop(0)
        parsed = type(message).from_json(payload)
        print(
            json.dumps(
                {
                    "topic": topic,
                    "class": type(message).__name__,
                    "message": parsed.to_dict(),
                    "same_as_client": parsed == message,
                    "site_id": site_id,
                }
            ),
            flush=True,
        )
        yield None


def main() -> None:
    port = int(sys.argv[1])
    client = mqtt.Client(client_id="edge-test-hermes")
    recorder = Recorder(client)
    connected = threading.Event()
    on_connect = client.on_connect

    def connect(c, userdata, flags, rc):
        on_connect(c, userdata, flags, rc)
        connected.set()

    client.on_connect = connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    connected.wait(10)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        handler = asyncio.ensure_future(recorder.handle_messages_async(loop))
        await asyncio.sleep(0.3)  # the subscriptions are acknowledged
        print(json.dumps({"ready": True}), flush=True)
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            data = json.loads(line)
            if "raw" in data:  # a payload no library would write: edge's answer to it is NluError
                client.publish(NluQuery.topic(), data["raw"])
            else:
                recorder.publish(NluQuery.from_dict(data))
        handler.cancel()

    asyncio.run(run())
    client.loop_stop()


if __name__ == "__main__":
    main()
