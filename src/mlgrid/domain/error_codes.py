"""The error codes of mlgrid's JSON error envelope (SPEC §3), spelt once.

``error.code`` and each ``error.details[].code`` are one of these; clients match on them, so a
code is never renamed. Raise sites name a member (``code=ErrorCode.RUN_NOT_FOUND``) rather than
write the string, so a typo is a type error instead of a new code.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    ALREADY_EXISTS = "AlreadyExists"
    ARTIFACT_FILE_MISSING = "ArtifactFileMissing"
    ARTIFACT_NOT_FOUND = "ArtifactNotFound"
    BAD_REQUEST = "BadRequest"
    CONCURRENT_UPDATE = "ConcurrentUpdate"
    CONFLICT = "Conflict"
    DATA_DRIFT_CHANGED = "DataDriftChanged"
    DATA_DRIFT_EXISTS = "DataDriftExists"
    DATA_DRIFT_NOT_FOUND = "DataDriftNotFound"
    DATASET_FILE_MISSING = "DatasetFileMissing"
    DATASET_NOT_FOUND = "DatasetNotFound"
    ENDPOINT_NOT_FOUND = "EndpointNotFound"
    ENDPOINT_NOT_READY = "EndpointNotReady"
    FORBIDDEN = "Forbidden"
    INPUT_SCHEMA_MISMATCH = "InputSchemaMismatch"
    INTERNAL_ERROR = "InternalError"
    INVALID_EVENT = "InvalidEvent"
    INVALID_FIELD_NAME = "InvalidFieldName"
    INVALID_FIELD_TYPE = "InvalidFieldType"
    INVALID_FIELD_VALUE = "InvalidFieldValue"
    INVALID_JSON = "InvalidJson"
    INVALID_OPERATION = "InvalidOperation"
    INVALID_REQUEST = "InvalidRequest"
    INVALID_RUN_TRANSITION = "InvalidRunTransition"
    JOB_STATUS_MANAGED_BY_SERVER = "JobStatusManagedByServer"
    METHOD_NOT_ALLOWED = "MethodNotAllowed"
    MISSING_FIELD = "MissingField"
    MODEL_NOT_FOUND = "ModelNotFound"
    NOT_FOUND = "NotFound"
    PATH_CONFLICT = "PathConflict"
    PAYLOAD_TOO_LARGE = "PayloadTooLarge"
    PRECONDITION_FAILED = "PreconditionFailed"
    RUN_ALREADY_TERMINAL = "RunAlreadyTerminal"
    RUN_NOT_FOUND = "RunNotFound"
    SCORING_PROCESS_UNAVAILABLE = "ScoringProcessUnavailable"
    SCORING_TIMEOUT = "ScoringTimeout"
    SECRET_KEY_INVALID = "SecretKeyInvalid"
    SECRET_UNREADABLE = "SecretUnreadable"
    SERVICE_UNAVAILABLE = "ServiceUnavailable"
    TOO_MANY_EVENTS = "TooManyEvents"
    TOPIC_NAME_IN_USE = "TopicNameInUse"
    UNAUTHORIZED = "Unauthorized"
    UNKNOWN_FIELD = "UnknownField"
    UNSUPPORTED_DELIVERY_SCHEMA = "UnsupportedDeliverySchema"
    UNSUPPORTED_MEDIA_TYPE = "UnsupportedMediaType"
    VALIDATION_EXPIRED = "ValidationExpired"
    WEBHOOK_VALIDATION_FAILED = "WebhookValidationFailed"
    WORKSPACE_NOT_FOUND = "WorkspaceNotFound"
