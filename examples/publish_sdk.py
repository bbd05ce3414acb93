"""Publish to mlgrid with the official azure-eventgrid SDK, then read the events back.

    MLGRID_URL=http://127.0.0.1:8780 MLGRID_TOKEN=$(cat .mlgrid/admin.token) python examples/publish_sdk.py
"""

import os
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from azure.core.credentials import AzureKeyCredential, AzureSasCredential
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent, EventGridPublisherClient, generate_sas

url = os.environ.get("MLGRID_URL", "http://127.0.0.1:8780")
token = os.environ["MLGRID_TOKEN"]  # a principal allowed to create topics (the admin)
admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})

# 1. Two topics: one in the Event Grid schema, one in CloudEvents 1.0.
orders = f"orders-{uuid.uuid4().hex[:6]}"
audit = f"audit-{uuid.uuid4().hex[:6]}"
topic = admin.put(f"/topics/{orders}", json={"properties": {"inputSchema": "EventGridSchema"}}).json()
admin.put(f"/topics/{audit}", json={"properties": {"inputSchema": "CloudEventSchemaV1_0"}})
endpoint = topic["properties"]["endpoint"]  # http://.../topics/<name>/api/events
key = admin.post(f"/topics/{orders}/listKeys").json()["key1"]

# 2. Event Grid events with a topic key (sent as the aeg-sas-key header).
client = EventGridPublisherClient(endpoint, AzureKeyCredential(key))
client.send([
    EventGridEvent(subject="orders/1", event_type="Shop.OrderPlaced", data={"total": 12.5}, data_version="1"),
    EventGridEvent(subject="orders/2", event_type="Shop.OrderPlaced", data={"total": 3}, data_version="1"),
])

# 3. The same with a SAS token instead of the key (aeg-sas-token header).
sas = generate_sas(endpoint, key, datetime.now(UTC) + timedelta(hours=1))
shipped = EventGridEvent(subject="orders/1", event_type="Shop.OrderShipped", data={"by": "ups"},
                         data_version="1")
EventGridPublisherClient(endpoint, AzureSasCredential(sas)).send(shipped)

# 4. CloudEvents, namespace style: the endpoint is the server, the topic is a keyword.
audit_key = admin.post(f"/topics/{audit}/listKeys").json()["key1"]
namespace_client = EventGridPublisherClient(url, AzureKeyCredential(audit_key), namespace_topic=audit)
namespace_client.send(CloudEvent(source="/shop/checkout", type="Shop.PaymentCaptured", data={"amount": 12.5}))

# 5. Every 200 means the events are committed: read them back.
for name in (orders, audit):
    for event in admin.get(f"/topics/{name}/events").json()["value"]:
        print(name, event.get("eventType") or event.get("type"), event.get("subject") or event.get("source"))
