"""Regression: deleting a topic must not let a later topic's deliveries carry its events.

SQLite reused ``events.seq`` after the newest rows were deleted, and the dispatcher's event
cache is keyed by seq, so a new topic's subscriber once received a deleted topic's event.
"""

from __future__ import annotations

import uuid

from tests.support.receiver import Receiver
from tests.support.server import ServerProcess


def _event(event_id: str, subject: str) -> dict[str, object]:
    return {"id": event_id, "subject": subject, "eventType": "Test.Recreated",
            "eventTime": "2026-11-22T10:00:00Z", "data": {"subject": subject}, "dataVersion": "1"}


def _topic_with_hook(server: ServerProcess, receiver: Receiver, topic: str, path: str) -> str:
    with server.client() as http:
        assert http.put(f"/topics/{topic}", json={}).status_code == 201
        body = {"properties": {"destination": {"endpointType": "WebHook",
                                               "properties": {"endpointUrl": receiver.endpoint(path)}}}}
        response = http.put(f"/topics/{topic}/eventSubscriptions/hook", json=body)
        assert response.status_code == 201, response.text
        return str(http.post(f"/topics/{topic}/listKeys").json()["key1"])


def test_new_topic_never_receives_a_deleted_topics_event(server: ServerProcess) -> None:
    first, second = "old" + uuid.uuid4().hex[:8], "new" + uuid.uuid4().hex[:8]
    with Receiver() as receiver:
        key = _topic_with_hook(server, receiver, first, "/first")
        with server.client() as http:
            response = http.post(f"/topics/{first}/api/events", headers={"aeg-sas-key": key},
                                 json=[_event("a-1", "first")])
            assert response.status_code == 200
            receiver.wait_for_events(1, path="/first")
            assert http.delete(f"/topics/{first}").status_code == 204

        key = _topic_with_hook(server, receiver, second, "/second")
        with server.client() as http:
            response = http.post(f"/topics/{second}/api/events", headers={"aeg-sas-key": key},
                                 json=[_event("b-1", "second")])
            assert response.status_code == 200
        events = receiver.wait_for_events(1, path="/second")
        assert [e["id"] for e in events] == ["b-1"]
        assert events[0]["data"] == {"subject": "second"}
