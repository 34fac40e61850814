"""Eclipse Paho's test_overlapping_subscriptions (paho.mqtt.testing, client_test.py), against Herald.

Subscribes to PREFIX/TopicA/# at QoS 2 and PREFIX/TopicA/+ at QoS 1 in one SUBSCRIBE, publishes one
QoS 2 message to PREFIX/TopicA/C, then a QoS 2 marker; prints the QoS of every copy of the message
received before the marker as JSON. [MQTT-3.3.5-1] allows one copy at QoS 2, or two at QoS 2 and 1.

Usage: HERALD_TOKEN=... python3 paho_overlapping.py PORT PREFIX
"""
import json
import os
import sys

import paho.mqtt.client as mqtt

port, prefix = int(sys.argv[1]), sys.argv[2]
copies = []
done = {"marker": False}


def on_connect(client, userdata, flags, rc):
    if rc != 0:
        print(json.dumps({"error": "connack %d" % rc}))
        sys.exit(1)
    client.subscribe([(prefix + "/TopicA/#", 2), (prefix + "/TopicA/+", 1)])


def on_subscribe(client, userdata, mid, granted):
    if list(granted) != [2, 1]:
        print(json.dumps({"error": "granted %r" % (granted,)}))
        sys.exit(1)
    client.publish(prefix + "/TopicA/C", b"overlapping topic filters", qos=2)
    client.publish(prefix + "/TopicA/marker", b"marker", qos=2)


def on_message(client, userdata, message):
    if message.topic.endswith("/marker"):
        done["marker"] = True
        client.disconnect()
    else:
        copies.append(message.qos)


client = mqtt.Client(client_id="paho-overlap", clean_session=True, protocol=mqtt.MQTTv311)
client.username_pw_set("paho", os.environ["HERALD_TOKEN"])
client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
client.connect("127.0.0.1", port, keepalive=30)
client.loop_forever()
print(json.dumps({"copies": copies, "marker": done["marker"]}))
