"""A Sparkplug B host application for the tests, decoding with pysparkplug.

Runs in a virtualenv of its own (tests/mqtt_peers.py makes it) under
pysparkplug, a Sparkplug B implementation this project did not write, with
paho-mqtt 1.x as pysparkplug pins it. Nothing of btms-gateway is imported.

    python sparkplug_host.py HOST PORT USER PASSWORD GROUP HOST_ID|-

Subscribes to ``spBv1.0/GROUP/#`` and prints one JSON line per message as
pysparkplug decoded it (data messages resolved through the aliases of the
birth certificate before them). With a HOST_ID it is the primary host: it
publishes its retained STATE ``{"online": true, "timestamp": ...}`` with a
will saying offline. Commands on stdin: ``online``, ``offline``,
``rebirth GROUP NODE`` (an NCMD "Node Control/Rebirth" = true).
"""

import json
import sys
import time

import paho.mqtt.client as mqtt
import pysparkplug as spb

DECODERS = {
    "NBIRTH": spb.NBirth,
    "DBIRTH": spb.DBirth,
    "NDATA": spb.NData,
    "DDATA": spb.DData,
    "DDEATH": spb.DDeath,
}


def metric_dict(m):
    value = m.value
    if isinstance(value, bytes):
        value = value.hex()
    return {
        "name": m.name,
        "alias": m.alias,
        "timestamp": m.timestamp,
        "datatype": m.datatype.name,
        "value": value,
        "is_historical": m.is_historical,
        "is_null": m.is_null,
    }


def main():
    host, port, user, password, group, host_id = sys.argv[1:7]
    host_id = None if host_id == "-" else host_id
    births = {}
    # a session the broker keeps: what comes while it reconnects waits for it
    client = mqtt.Client(client_id=f"test-host-{time.time_ns()}", clean_session=False)
    client.username_pw_set(user, password)

    def state(online):
        topic = f"spBv1.0/STATE/{host_id}"
        payload = spb.State(timestamp=spb.get_current_timestamp(), online=online).encode()
        return topic, payload

    if host_id is not None:
        topic, payload = state(False)
        client.will_set(topic, payload, qos=1, retain=True)

    def on_message(c, userdata, msg):
        received = time.time()
        topic = spb.Topic.from_str(msg.topic)
        kind = str(topic.message_type.value if hasattr(topic.message_type, "value") else "")
        out = {"topic": msg.topic, "type": kind, "received": received, "device": topic.device_id}
        out["node"] = topic.edge_node_id
        key = (topic.edge_node_id, topic.device_id)
        try:
            if kind == "NDEATH":
                p = spb.NDeath.decode(msg.payload)
                out["metrics"] = [metric_dict(p.bd_seq_metric)]
            elif kind in DECODERS:
                p = DECODERS[kind].decode(msg.payload, birth=births.get(key))
                if kind.endswith("BIRTH"):
                    births[key] = p
                out["seq"] = p.seq
                out["timestamp"] = p.timestamp
                out["metrics"] = [metric_dict(m) for m in getattr(p, "metrics", ())]
            else:
                return
        except Exception as exc:  # report it: the test fails on it
            out["error"] = f"{type(exc).__name__}: {exc}"
        print(json.dumps(out), flush=True)

    def on_connect(c, userdata, flags, rc):
        c.subscribe(f"spBv1.0/{group}/#", qos=1)
        if host_id is not None:
            topic, payload = state(True)
            c.publish(topic, payload, qos=1, retain=True)

    client.on_message = on_message
    client.on_connect = on_connect
    client.connect(host, int(port), 30)
    client.loop_start()
    deadline = time.time() + 10
    while not client.is_connected() and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # the subscription's SUBACK
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] in ("online", "offline") and host_id is not None:
            topic, payload = state(words[0] == "online")
            client.publish(topic, payload, qos=1, retain=True)
        elif words[0] == "rebirth":
            metric = spb.Metric(
                timestamp=spb.get_current_timestamp(),
                name="Node Control/Rebirth",
                datatype=spb.DataType.BOOLEAN,
                value=True,
            )
            payload = spb.NCmd(timestamp=spb.get_current_timestamp(), metrics=(metric,)).encode(
                include_dtypes=True
            )
            client.publish(f"spBv1.0/{words[1]}/NCMD/{words[2]}", payload, qos=0)
    client.loop_stop()
    client.disconnect()


if __name__ == "__main__":
    main()
