"""Pull delivery: receive events from a Queue subscription with the azure-eventgrid SDK, then
with mlgrid's consumer helper.

    MLGRID_URL=http://127.0.0.1:8780 MLGRID_TOKEN=$(cat .mlgrid/admin.token) python examples/pull_consumer.py
"""

import os
import uuid

import httpx
from azure.core.credentials import AzureKeyCredential
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridConsumerClient, EventGridPublisherClient

from mlgrid.client.consumer import PullConsumer, RejectEvent

url = os.environ.get("MLGRID_URL", "http://127.0.0.1:8780")
admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {os.environ['MLGRID_TOKEN']}"})

# 1. A CloudEvents topic with a Queue (pull) subscription.
topic = f"jobs-{uuid.uuid4().hex[:6]}"
admin.put(f"/topics/{topic}", json={"properties": {"inputSchema": "CloudEventSchemaV1_0"}})
admin.put(f"/topics/{topic}/eventSubscriptions/workers", json={"properties": {
    "destination": {"endpointType": "Queue",
                    "properties": {"receiveLockDurationInSeconds": 60, "maxDeliveryCount": 3}},
    "deadLetterDestination": {"endpointType": "StorageBlob",
                              "properties": {"blobContainerName": "jobs-dead-letters"}},
}})
key = admin.post(f"/topics/{topic}/listKeys").json()["key1"]

publisher = EventGridPublisherClient(url, AzureKeyCredential(key), namespace_topic=topic)
publisher.send([CloudEvent(source="/jobs", type="Jobs.Submitted", data={"job": n}) for n in range(4)])

# 2. The official consumer client: receive under a lock, then acknowledge.
credential = AzureKeyCredential(key)
consumer = EventGridConsumerClient(url, credential, namespace_topic=topic, subscription="workers")
for detail in consumer.receive(max_events=2, max_wait_time=10):
    print("sdk", detail.event.data["job"], "deliveryCount", detail.broker_properties.delivery_count)
    consumer.acknowledge(lock_tokens=[detail.broker_properties.lock_token])


# 3. The helper: acknowledged when the handler returns, rejected (dead-lettered) on
#    RejectEvent, released (received again later) on any other exception.
def handle(event: dict) -> None:
    if event["data"]["job"] == 3:
        raise RejectEvent("job 3 is malformed")
    print("helper", event["data"]["job"])


with PullConsumer(url, topic, "workers", key=key, max_wait_time=2) as helper:
    handled = helper.run(handle, stop_when_idle=True)
print("handled", handled)

letters = admin.get(f"/topics/{topic}/eventSubscriptions/workers/deadLetters").json()["value"]
print("dead letters", [(d["record"]["data"]["job"], d["deadLetterReason"]) for d in letters])
