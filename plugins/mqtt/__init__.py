"""MQTT northbound: Sparkplug B (spBv1.0) and plain JSON, with store-and-forward.

See docs/mqtt.md. The gateway pushes to a broker (Mosquitto, EMQX, HiveMQ);
SCADA hosts and time-series databases take the data from there.
"""
