"""Topic management: create/replace, read, delete, keys.

Topic keys must be usable for HMAC (SAS tokens), so they cannot be hashed: they are sealed
with the server's secret key at rest and opened into a short-lived in-memory cache for the
publish path. The cache is per ``TopicService`` instance (no module state) and expires after a
few seconds so that a key regenerated on another node is honoured quickly.
"""

from __future__ import annotations

import builtins
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, ConfigDict, Field, WithJsonSchema, model_validator

from mlgrid.auth.secretbox import SecretBox
from mlgrid.auth.tokens import new_topic_key
from mlgrid.body import Body, Invalid, checked, echoed, integral, one_of, parse, reason
from mlgrid.broker.names import (
    RESOURCE_GROUP_SCHEMA_PATTERN,
    check_name,
    check_resource_group,
    system_topic_arm_id,
    topic_resource_id,
    workspace_resource_id,
)
from mlgrid.config import Settings
from mlgrid.domain.schemas import INPUT_SCHEMAS, EventSchema
from mlgrid.errors import BadRequest, NotFound, invalid
from mlgrid.etags import new_etag, require_match
from mlgrid.events.schemas import InputSchemaMapping, mapping_to_json, parse_input_schema_mapping
from mlgrid.store import events as event_store
from mlgrid.store import principals as principal_store
from mlgrid.store import subscriptions as subscription_store
from mlgrid.store import topics as topic_store
from mlgrid.store.database import Database
from mlgrid.store.events import EventCursor, StoredEvent
from mlgrid.store.topics import TopicRow

log = logging.getLogger("mlgrid.topics")

KEY_CACHE_SECONDS = 5.0
MAX_RETENTION_DAYS = 30


@dataclass(frozen=True)
class TopicKeys:
    key1: str
    key2: str


@dataclass(frozen=True)
class Topic:
    """A topic as the services see it (keys stay sealed; ask ``TopicService.keys``)."""

    row: TopicRow
    resource_id: str
    mapping: InputSchemaMapping | None

    @property
    def name(self) -> str:
        return self.row.name

    @property
    def key(self) -> str:
        return self.row.key

    @property
    def kind(self) -> str:
        return self.row.kind

    @property
    def input_schema(self) -> str:
        return self.row.input_schema


@dataclass(frozen=True)
class TopicSpec:
    """The validated body of ``PUT /topics/{t}``."""

    input_schema: str
    mapping: InputSchemaMapping | None
    resource_group: str
    retention_days: int


_WRITABLE_PROPERTIES = ("inputSchema", "inputSchemaMapping", "resourceGroup", "retentionInDays")


def _mapping_only_with_custom_schema(schema: dict[str, Any]) -> None:
    """The schema says what the validator below checks: a mapping with (and only with) the
    custom input schema."""
    custom = {"const": EventSchema.CUSTOM_EVENT}
    schema["if"] = {"required": ["inputSchema"], "properties": {"inputSchema": custom}}
    schema["then"] = {"required": ["inputSchemaMapping"],
                      "properties": {"inputSchemaMapping": {"type": "object"}}}
    schema["else"] = {"properties": {"inputSchemaMapping": {"type": "null"}}}


class TopicProperties(Body):
    """``properties`` of a topic body; Azure's read-only properties are accepted and ignored."""

    model_config = ConfigDict(json_schema_extra=_mapping_only_with_custom_schema)

    input_schema: Annotated[str, *one_of(INPUT_SCHEMAS)] = EventSchema.EVENT_GRID
    input_schema_mapping: Annotated[
        Any, WithJsonSchema({
            "type": ["object", "null"], "description": "required for CustomEventSchema",
            "additionalProperties": False,
            "properties": {
                "inputSchemaMappingType": {"type": "string", "pattern": "^[Jj][Ss][Oo][Nn]$"},
                "mappingType": {"type": "string", "pattern": "^[Jj][Ss][Oo][Nn]$"},
                "properties": {"type": "object", "description": "each event member from a sourceField "
                               "or a defaultValue (events/schemas.py)"},
            },
        })
    ] = None
    resource_group: Annotated[
        str,
        Field(pattern=RESOURCE_GROUP_SCHEMA_PATTERN, max_length=90),
        reason("must be 1-90 characters of letters, digits, '-', '_', '.', '(' and ')'"),
        AfterValidator(lambda v: checked(lambda: check_resource_group(v))),
    ] = "default"
    retention_in_days: Annotated[
        int,
        integral,
        Field(ge=1, le=MAX_RETENTION_DAYS),
        reason(f"must be an integer from 1 to {MAX_RETENTION_DAYS}"),
    ] = 1
    provisioning_state: Any = echoed()
    endpoint: Any = echoed()
    metric_resource_id: Any = echoed()
    public_network_access: Any = echoed()
    inbound_ip_rules: Any = echoed()
    disable_local_auth: Any = echoed()
    data_residency_boundary: Any = echoed()
    private_endpoint_connections: Any = echoed()
    minimum_tls_version_allowed: Any = echoed()
    event_type_info: Any = echoed()

    @classmethod
    def unknown_reason(cls, known: list[str]) -> str:
        return f"unknown field; a topic has {', '.join(_WRITABLE_PROPERTIES)}"

    @model_validator(mode="after")
    def _mapping_goes_with_custom_schema(self) -> TopicProperties:
        if self.input_schema == EventSchema.CUSTOM_EVENT and self.input_schema_mapping is None:
            raise Invalid("is required for CustomEventSchema", at="inputSchemaMapping")
        if self.input_schema != EventSchema.CUSTOM_EVENT and self.input_schema_mapping is not None:
            raise Invalid("is only allowed with CustomEventSchema", at="inputSchemaMapping")
        return self


class TopicBody(Body):
    """The body of ``PUT /topics/{t}`` (and of the ARM topic route): Azure's topic resource,
    whose members other than ``properties`` a body copied from a GET carries and we ignore."""

    properties: TopicProperties | None = None
    location: Any = echoed()
    tags: Any = echoed()
    name: Any = echoed()
    id: Any = echoed()
    type: Any = echoed()
    etag: Any = echoed()
    sku: Any = echoed()
    kind: Any = echoed()
    identity: Any = echoed()
    system_data: Any = echoed()

    @classmethod
    def unknown_reason(cls, known: list[str]) -> str:
        return "unknown field"


class ArmTopicBody(TopicBody):
    """The ARM route's topic body: the same resource, said so when it is not an object."""

    @classmethod
    def object_reason(cls) -> str:
        return "must be a JSON object (an ARM topic resource)"


class RegenerateKeyBody(Body):
    """The body of ``regenerateKey``: which of the two keys to replace."""

    key_name: Annotated[str, *one_of(("key1", "key2"), "must be 'key1' or 'key2'")]

    @classmethod
    def object_reason(cls) -> str:
        return "must be a JSON object with keyName"


def parse_topic_body(body: object, model: type[TopicBody] = TopicBody) -> TopicSpec:
    parsed = parse(model, {} if body is None else body)
    props = parsed.properties or TopicProperties()
    mapping: InputSchemaMapping | None = None
    if props.input_schema == EventSchema.CUSTOM_EVENT:
        mapping = parse_input_schema_mapping(props.input_schema_mapping, "properties.inputSchemaMapping")
    return TopicSpec(props.input_schema, mapping, props.resource_group, props.retention_in_days)


class TopicService:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        box: SecretBox,
        subscription_id: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._settings = settings
        self._box = box
        self.subscription_id = subscription_id
        self._clock = clock
        self._key_cache: dict[str, tuple[float, TopicKeys, Topic]] = {}
        #: Tells the other nodes that keys changed (LISTEN/NOTIFY, set by the server); they
        #: also stop using a cached key after ``KEY_CACHE_SECONDS``.
        self.announce: Callable[[], Awaitable[None]] | None = None

    def _topic(self, row: TopicRow) -> Topic:
        mapping = None
        if row.input_schema_mapping:
            mapping = parse_input_schema_mapping(orjson.loads(row.input_schema_mapping))
        if row.kind == "system":
            resource_id = workspace_resource_id(self.subscription_id, row.resource_group, row.name)
        else:
            resource_id = topic_resource_id(self.subscription_id, row.resource_group, row.name)
        return Topic(row=row, resource_id=resource_id, mapping=mapping)

    async def get(self, name: str, kind: str = "custom") -> Topic:
        async with self._db.read() as conn:
            row = await topic_store.get(conn, name, kind)
        if row is None:
            label = "topic" if kind == "custom" else "system topic"
            raise NotFound(f"{label} {name!r} does not exist")
        return self._topic(row)

    async def find(self, name: str, kind: str | None = None) -> Topic | None:
        async with self._db.read() as conn:
            row = await topic_store.get(conn, name, kind)
        return None if row is None else self._topic(row)

    async def list(self, kind: str = "custom") -> list[Topic]:
        async with self._db.read() as conn:
            rows = await topic_store.list_topics(conn, kind)
        return [self._topic(r) for r in rows]

    async def put(
        self, name: str, spec: TopicSpec, *, if_match: str | None = None, creator: str | None = None
    ) -> tuple[Topic, bool]:
        """Create or replace a custom topic; returns (topic, created)."""
        check_name(name, "topicName")
        now = self._clock()
        async with self._db.write() as conn:
            existing = await topic_store.get(conn, name)
            if existing is not None and existing.kind != "custom":
                raise BadRequest(f"{name!r} is a system topic; manage it through its workspace")
            current = existing.etag if existing is not None else None
            require_match(if_match, current, "If-Match does not match the topic's current etag")
            mapping_json = (
                orjson.dumps(mapping_to_json(spec.mapping)).decode() if spec.mapping is not None else None
            )
            if existing is None:
                row = TopicRow(
                    name=name,
                    kind="custom",
                    resource_group=spec.resource_group,
                    input_schema=spec.input_schema,
                    input_schema_mapping=mapping_json,
                    retention_days=spec.retention_days,
                    key1_sealed=self._box.seal(new_topic_key()),
                    key2_sealed=self._box.seal(new_topic_key()),
                    etag=new_etag(),
                    created_at=now,
                    updated_at=now,
                )
                await topic_store.insert(conn, row)
                if creator is not None:
                    await principal_store.assign_role(conn, "topic", name, creator, "Owner", now)
                created = True
            else:
                if existing.input_schema != spec.input_schema:
                    raise invalid(
                        "properties.inputSchema",
                        f"cannot change from {existing.input_schema} on an existing topic",
                    )
                row = replace(
                    existing,
                    resource_group=spec.resource_group,
                    input_schema_mapping=mapping_json,
                    retention_days=spec.retention_days,
                    etag=new_etag(),
                    updated_at=now,
                )
                await topic_store.update(conn, row)
                created = False
        self._key_cache.pop(row.key, None)
        return self._topic(row), created

    async def create_system_topic(self, conn: Any, workspace: str, resource_group: str) -> TopicRow:
        """Called by the workspace service inside its own transaction."""
        now = self._clock()
        row = TopicRow(
            name=workspace,
            kind="system",
            resource_group=resource_group,
            input_schema=EventSchema.EVENT_GRID,
            input_schema_mapping=None,
            retention_days=1,
            key1_sealed=self._box.seal(new_topic_key()),
            key2_sealed=self._box.seal(new_topic_key()),
            etag=new_etag(),
            created_at=now,
            updated_at=now,
        )
        await topic_store.insert(conn, row)
        return row

    async def delete(self, name: str, kind: str = "custom") -> None:
        async with self._db.write() as conn:
            row = await topic_store.get(conn, name, kind)
            if row is None:
                raise NotFound(f"topic {name!r} does not exist")
            await self._delete_rows(conn, row)
        self._key_cache.pop(name.lower(), None)
        await self._announce()

    def forget_keys(self) -> None:
        """Another node changed keys or topics: read them again at the next use."""
        self._key_cache.clear()

    async def _announce(self) -> None:
        if self.announce is not None:
            try:
                await self.announce()
            except Exception as exc:  # committed; the others' caches expire by themselves
                log.warning("could not notify the other nodes: %s", exc, extra={"action": "notify_failed"})

    async def _delete_rows(self, conn: Any, row: TopicRow) -> None:
        await subscription_store.delete_for_topic(conn, row.key)
        await event_store.delete_topic_events(conn, row.key)
        await principal_store.delete_scope(conn, "topic", row.name)
        await topic_store.delete_topic(conn, row.name)

    async def keys(self, name: str, kind: str | None = "custom") -> tuple[Topic, TopicKeys]:
        """The topic and its plaintext keys, cached briefly for the publish path."""
        cache_key = name.lower()
        hit = self._key_cache.get(cache_key)
        now = time.monotonic()
        if hit is not None and hit[0] > now and (kind is None or hit[2].kind == kind):
            return hit[2], hit[1]
        async with self._db.read() as conn:
            row = await topic_store.get(conn, name, kind)
        if row is None:
            raise NotFound(f"topic {name!r} does not exist")
        keys = TopicKeys(self._box.open(row.key1_sealed), self._box.open(row.key2_sealed))
        topic = self._topic(row)
        self._key_cache[cache_key] = (now + KEY_CACHE_SECONDS, keys, topic)
        return topic, keys

    async def regenerate_key(self, name: str, key_name: object, kind: str = "custom") -> TopicKeys:
        if key_name not in ("key1", "key2"):
            raise invalid("keyName", "must be 'key1' or 'key2'")
        async with self._db.write() as conn:
            row = await topic_store.get(conn, name, kind)
            if row is None:
                raise NotFound(f"topic {name!r} does not exist")
            sealed = self._box.seal(new_topic_key())
            row = replace(
                row,
                key1_sealed=sealed if key_name == "key1" else row.key1_sealed,
                key2_sealed=sealed if key_name == "key2" else row.key2_sealed,
                etag=new_etag(),
                updated_at=self._clock(),
            )
            await topic_store.update(conn, row)
        self._key_cache.pop(row.key, None)
        await self._announce()
        return TopicKeys(self._box.open(row.key1_sealed), self._box.open(row.key2_sealed))

    async def list_events(
        self,
        topic: Topic,
        *,
        since: datetime | None,
        until: datetime | None,
        event_type: str | None,
        after: EventCursor | None,
        limit: int,
    ) -> builtins.list[StoredEvent]:
        """Retained events of the topic, oldest first, continuing after the cursor ``after``."""
        async with self._db.read() as conn:
            return await event_store.list_page(
                conn, topic.key, since=since, until=until, event_type=event_type,
                after=after, limit=limit,
            )

    def endpoint(self, topic: Topic) -> str:
        prefix = "topics" if topic.kind == "custom" else "systemTopics"
        return f"{self._settings.base_url}/{prefix}/{topic.name}/api/events"

    def as_json(self, topic: Topic) -> dict[str, Any]:
        row = topic.row
        if topic.kind == "custom":
            arm_id, arm_type = topic.resource_id, "Microsoft.EventGrid/topics"
        else:
            arm_id = system_topic_arm_id(self.subscription_id, row.resource_group, row.name)
            arm_type = "Microsoft.EventGrid/systemTopics"
        properties: dict[str, Any] = {
            "provisioningState": "Succeeded",
            "endpoint": self.endpoint(topic),
            "inputSchema": row.input_schema,
            "resourceGroup": row.resource_group,
            "retentionInDays": row.retention_days,
        }
        if topic.mapping is not None:
            properties["inputSchemaMapping"] = mapping_to_json(topic.mapping)
        if topic.kind == "system":
            properties["source"] = topic.resource_id
            properties["topicType"] = "Microsoft.MachineLearningServices.Workspaces"
        return {
            "id": arm_id,
            "name": row.name,
            "type": arm_type,
            "location": "local",
            "etag": row.etag,
            "properties": properties,
        }
