"""CloudEvents published to the namespace-style ``:publish`` endpoint of an Event Grid topic.

Namespace topics speak only CloudEvents, and the ``azure-eventgrid`` SDK's ``namespace_topic=``
mode sends nothing else. Rather than refusing those clients on an Event Grid schema topic, the
events are stored converted (the inverse of SPEC §2.1's mapping): ``type→eventType``,
``subject→subject`` (``source`` when there is none), ``time→eventTime`` (the publish time when
there is none, since ``eventTime`` is required in the Event Grid schema), ``data→data``,
``dataschema "#v"→dataVersion "v"``; ``topic`` is the topic's id and extension attributes are
dropped. The classic ``/api/events`` endpoint keeps Azure's strict rule.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from mlgrid.events.timestamps import format_timestamp


def cloudevent_to_eventgrid(ev: dict[str, Any], topic_id: str, now: datetime) -> dict[str, Any]:
    """One validated CloudEvent as an Event Grid event of the topic ``topic_id``, received at ``now``."""
    dataschema = ev.get("dataschema") or ""
    data: Any = ev.get("data")
    if data is None and "data_base64" in ev:
        data = base64.b64decode(ev["data_base64"]).decode("utf-8", errors="replace")
    return {
        "id": ev["id"],
        "topic": topic_id,
        "subject": ev.get("subject") or ev.get("source") or "",
        "eventType": ev["type"],
        "eventTime": ev.get("time") or format_timestamp(now),
        "data": data,
        "dataVersion": dataschema[1:] if dataschema.startswith("#") else dataschema,
        "metadataVersion": "1",
    }
