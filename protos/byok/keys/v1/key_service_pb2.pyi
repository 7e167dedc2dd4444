import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CredentialHealth(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CREDENTIAL_HEALTH_UNSPECIFIED: _ClassVar[CredentialHealth]
    CREDENTIAL_HEALTH_ACTIVE: _ClassVar[CredentialHealth]
    CREDENTIAL_HEALTH_INVALID: _ClassVar[CredentialHealth]
    CREDENTIAL_HEALTH_RATE_LIMITED: _ClassVar[CredentialHealth]
    CREDENTIAL_HEALTH_UNREACHABLE: _ClassVar[CredentialHealth]

class KeySource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_SOURCE_UNSPECIFIED: _ClassVar[KeySource]
    KEY_SOURCE_TENANT: _ClassVar[KeySource]
    KEY_SOURCE_PLATFORM: _ClassVar[KeySource]

class RevocationReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVOCATION_REASON_UNSPECIFIED: _ClassVar[RevocationReason]
    REVOCATION_REASON_DEACTIVATED: _ClassVar[RevocationReason]
    REVOCATION_REASON_ROTATED: _ClassVar[RevocationReason]
    REVOCATION_REASON_DELETED: _ClassVar[RevocationReason]
    REVOCATION_REASON_CALLER_UNBOUND: _ClassVar[RevocationReason]
    REVOCATION_REASON_INVALID: _ClassVar[RevocationReason]
    REVOCATION_REASON_SCOPE_CHANGED: _ClassVar[RevocationReason]
    REVOCATION_REASON_BUDGET_EXHAUSTED: _ClassVar[RevocationReason]

class UsageGrouping(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USAGE_GROUPING_UNSPECIFIED: _ClassVar[UsageGrouping]
    USAGE_GROUPING_HOUR: _ClassVar[UsageGrouping]
    USAGE_GROUPING_DAY: _ClassVar[UsageGrouping]
    USAGE_GROUPING_TOTAL: _ClassVar[UsageGrouping]

class UsageDimension(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USAGE_DIMENSION_UNSPECIFIED: _ClassVar[UsageDimension]
    USAGE_DIMENSION_PROJECT: _ClassVar[UsageDimension]
    USAGE_DIMENSION_USER: _ClassVar[UsageDimension]
    USAGE_DIMENSION_CREDENTIAL: _ClassVar[UsageDimension]
    USAGE_DIMENSION_PROVIDER: _ClassVar[UsageDimension]
    USAGE_DIMENSION_MODEL: _ClassVar[UsageDimension]
    USAGE_DIMENSION_KEY_SOURCE: _ClassVar[UsageDimension]
    USAGE_DIMENSION_ORG: _ClassVar[UsageDimension]

class BudgetPeriod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUDGET_PERIOD_UNSPECIFIED: _ClassVar[BudgetPeriod]
    BUDGET_PERIOD_DAY: _ClassVar[BudgetPeriod]
    BUDGET_PERIOD_MONTH: _ClassVar[BudgetPeriod]
CREDENTIAL_HEALTH_UNSPECIFIED: CredentialHealth
CREDENTIAL_HEALTH_ACTIVE: CredentialHealth
CREDENTIAL_HEALTH_INVALID: CredentialHealth
CREDENTIAL_HEALTH_RATE_LIMITED: CredentialHealth
CREDENTIAL_HEALTH_UNREACHABLE: CredentialHealth
KEY_SOURCE_UNSPECIFIED: KeySource
KEY_SOURCE_TENANT: KeySource
KEY_SOURCE_PLATFORM: KeySource
REVOCATION_REASON_UNSPECIFIED: RevocationReason
REVOCATION_REASON_DEACTIVATED: RevocationReason
REVOCATION_REASON_ROTATED: RevocationReason
REVOCATION_REASON_DELETED: RevocationReason
REVOCATION_REASON_CALLER_UNBOUND: RevocationReason
REVOCATION_REASON_INVALID: RevocationReason
REVOCATION_REASON_SCOPE_CHANGED: RevocationReason
REVOCATION_REASON_BUDGET_EXHAUSTED: RevocationReason
USAGE_GROUPING_UNSPECIFIED: UsageGrouping
USAGE_GROUPING_HOUR: UsageGrouping
USAGE_GROUPING_DAY: UsageGrouping
USAGE_GROUPING_TOTAL: UsageGrouping
USAGE_DIMENSION_UNSPECIFIED: UsageDimension
USAGE_DIMENSION_PROJECT: UsageDimension
USAGE_DIMENSION_USER: UsageDimension
USAGE_DIMENSION_CREDENTIAL: UsageDimension
USAGE_DIMENSION_PROVIDER: UsageDimension
USAGE_DIMENSION_MODEL: UsageDimension
USAGE_DIMENSION_KEY_SOURCE: UsageDimension
USAGE_DIMENSION_ORG: UsageDimension
BUDGET_PERIOD_UNSPECIFIED: BudgetPeriod
BUDGET_PERIOD_DAY: BudgetPeriod
BUDGET_PERIOD_MONTH: BudgetPeriod

class Scope(_message.Message):
    __slots__ = ("org_id", "project_id", "user_id")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    project_id: str
    user_id: str
    def __init__(self, org_id: _Optional[str] = ..., project_id: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class SecretReference(_message.Message):
    __slots__ = ("mount", "path", "version", "transit_key", "transit_key_version")
    MOUNT_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TRANSIT_KEY_FIELD_NUMBER: _ClassVar[int]
    TRANSIT_KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    mount: str
    path: str
    version: int
    transit_key: str
    transit_key_version: int
    def __init__(self, mount: _Optional[str] = ..., path: _Optional[str] = ..., version: _Optional[int] = ..., transit_key: _Optional[str] = ..., transit_key_version: _Optional[int] = ...) -> None: ...

class Credential(_message.Message):
    __slots__ = ("credential_id", "provider", "scope", "name", "api_base", "default_model", "active", "primary", "health", "key_hint", "fingerprint", "secret_ref", "create_time", "update_time", "last_verify_time", "last_rotate_time", "settings", "last_use_time")
    class SettingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    API_BASE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    KEY_HINT_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    SECRET_REF_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_VERIFY_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_ROTATE_TIME_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    LAST_USE_TIME_FIELD_NUMBER: _ClassVar[int]
    credential_id: str
    provider: str
    scope: Scope
    name: str
    api_base: str
    default_model: str
    active: bool
    primary: bool
    health: CredentialHealth
    key_hint: str
    fingerprint: str
    secret_ref: SecretReference
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    last_verify_time: _timestamp_pb2.Timestamp
    last_rotate_time: _timestamp_pb2.Timestamp
    settings: _containers.ScalarMap[str, str]
    last_use_time: _timestamp_pb2.Timestamp
    def __init__(self, credential_id: _Optional[str] = ..., provider: _Optional[str] = ..., scope: _Optional[_Union[Scope, _Mapping]] = ..., name: _Optional[str] = ..., api_base: _Optional[str] = ..., default_model: _Optional[str] = ..., active: _Optional[bool] = ..., primary: _Optional[bool] = ..., health: _Optional[_Union[CredentialHealth, str]] = ..., key_hint: _Optional[str] = ..., fingerprint: _Optional[str] = ..., secret_ref: _Optional[_Union[SecretReference, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_verify_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_rotate_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., settings: _Optional[_Mapping[str, str]] = ..., last_use_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateCredentialRequest(_message.Message):
    __slots__ = ("provider", "scope", "name", "api_key", "api_base", "default_model", "primary", "secret_fields", "settings")
    class SecretFieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class SettingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    API_BASE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELDS_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    provider: str
    scope: Scope
    name: str
    api_key: str
    api_base: str
    default_model: str
    primary: bool
    secret_fields: _containers.ScalarMap[str, str]
    settings: _containers.ScalarMap[str, str]
    def __init__(self, provider: _Optional[str] = ..., scope: _Optional[_Union[Scope, _Mapping]] = ..., name: _Optional[str] = ..., api_key: _Optional[str] = ..., api_base: _Optional[str] = ..., default_model: _Optional[str] = ..., primary: _Optional[bool] = ..., secret_fields: _Optional[_Mapping[str, str]] = ..., settings: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CreateCredentialResponse(_message.Message):
    __slots__ = ("credential",)
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    credential: Credential
    def __init__(self, credential: _Optional[_Union[Credential, _Mapping]] = ...) -> None: ...

class GetCredentialRequest(_message.Message):
    __slots__ = ("credential_id",)
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    credential_id: str
    def __init__(self, credential_id: _Optional[str] = ...) -> None: ...

class GetCredentialResponse(_message.Message):
    __slots__ = ("credential",)
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    credential: Credential
    def __init__(self, credential: _Optional[_Union[Credential, _Mapping]] = ...) -> None: ...

class ListCredentialsRequest(_message.Message):
    __slots__ = ("org_id", "project_id", "user_id", "provider", "active", "page_size", "page_token")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    project_id: str
    user_id: str
    provider: str
    active: bool
    page_size: int
    page_token: str
    def __init__(self, org_id: _Optional[str] = ..., project_id: _Optional[str] = ..., user_id: _Optional[str] = ..., provider: _Optional[str] = ..., active: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCredentialsResponse(_message.Message):
    __slots__ = ("credentials", "next_page_token")
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    credentials: _containers.RepeatedCompositeFieldContainer[Credential]
    next_page_token: str
    def __init__(self, credentials: _Optional[_Iterable[_Union[Credential, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateCredentialRequest(_message.Message):
    __slots__ = ("credential_id", "name", "api_base", "default_model", "primary")
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    API_BASE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_FIELD_NUMBER: _ClassVar[int]
    credential_id: str
    name: str
    api_base: str
    default_model: str
    primary: bool
    def __init__(self, credential_id: _Optional[str] = ..., name: _Optional[str] = ..., api_base: _Optional[str] = ..., default_model: _Optional[str] = ..., primary: _Optional[bool] = ...) -> None: ...

class UpdateCredentialResponse(_message.Message):
    __slots__ = ("credential",)
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    credential: Credential
    def __init__(self, credential: _Optional[_Union[Credential, _Mapping]] = ...) -> None: ...

class RotateCredentialSecretRequest(_message.Message):
    __slots__ = ("credential_id", "api_key", "expected_version", "secret_fields")
    class SecretFieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELDS_FIELD_NUMBER: _ClassVar[int]
    credential_id: str
    api_key: str
    expected_version: int
    secret_fields: _containers.ScalarMap[str, str]
    def __init__(self, credential_id: _Optional[str] = ..., api_key: _Optional[str] = ..., expected_version: _Optional[int] = ..., secret_fields: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RotateCredentialSecretResponse(_message.Message):
    __slots__ = ("credential",)
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    credential: Credential
    def __init__(self, credential: _Optional[_Union[Credential, _Mapping]] = ...) -> None: ...

class ActivateCredentialRequest(_message.Message):
    __slots__ = ("credential_id",)
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    credential_id: str
    def __init__(self, credential_id: _Optional[str] = ...) -> None: ...

class ActivateCredentialResponse(_message.Message):
    __slots__ = ("credential",)
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    credential: Credential
    def __init__(self, credential: _Optional[_Union[Credential, _Mapping]] = ...) -> None: ...

class DeactivateCredentialRequest(_message.Message):
    __slots__ = ("credential_id",)
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    credential_id: str
    def __init__(self, credential_id: _Optional[str] = ...) -> None: ...

class DeactivateCredentialResponse(_message.Message):
    __slots__ = ("credential",)
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    credential: Credential
    def __init__(self, credential: _Optional[_Union[Credential, _Mapping]] = ...) -> None: ...

class DeleteCredentialRequest(_message.Message):
    __slots__ = ("credential_id",)
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    credential_id: str
    def __init__(self, credential_id: _Optional[str] = ...) -> None: ...

class DeleteCredentialResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RegisterCredentialRequest(_message.Message):
    __slots__ = ("provider", "scope", "name", "vault_path", "api_base", "default_model", "primary", "settings")
    class SettingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VAULT_PATH_FIELD_NUMBER: _ClassVar[int]
    API_BASE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    provider: str
    scope: Scope
    name: str
    vault_path: str
    api_base: str
    default_model: str
    primary: bool
    settings: _containers.ScalarMap[str, str]
    def __init__(self, provider: _Optional[str] = ..., scope: _Optional[_Union[Scope, _Mapping]] = ..., name: _Optional[str] = ..., vault_path: _Optional[str] = ..., api_base: _Optional[str] = ..., default_model: _Optional[str] = ..., primary: _Optional[bool] = ..., settings: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RegisterCredentialResponse(_message.Message):
    __slots__ = ("credential",)
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    credential: Credential
    def __init__(self, credential: _Optional[_Union[Credential, _Mapping]] = ...) -> None: ...

class VerifyCredentialRequest(_message.Message):
    __slots__ = ("credential_id",)
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    credential_id: str
    def __init__(self, credential_id: _Optional[str] = ...) -> None: ...

class VerifyCredentialResponse(_message.Message):
    __slots__ = ("credential", "http_status")
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    credential: Credential
    http_status: int
    def __init__(self, credential: _Optional[_Union[Credential, _Mapping]] = ..., http_status: _Optional[int] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("event_id", "time", "actor", "action", "credential_id", "org_id", "outcome", "details_json", "project_id", "user_id")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    time: _timestamp_pb2.Timestamp
    actor: str
    action: str
    credential_id: str
    org_id: str
    outcome: str
    details_json: str
    project_id: str
    user_id: str
    def __init__(self, event_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., action: _Optional[str] = ..., credential_id: _Optional[str] = ..., org_id: _Optional[str] = ..., outcome: _Optional[str] = ..., details_json: _Optional[str] = ..., project_id: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class ListAuditEventsRequest(_message.Message):
    __slots__ = ("org_id", "credential_id", "action", "actor", "since", "page_size", "page_token", "project_id", "user_id")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    credential_id: str
    action: str
    actor: str
    since: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    project_id: str
    user_id: str
    def __init__(self, org_id: _Optional[str] = ..., credential_id: _Optional[str] = ..., action: _Optional[str] = ..., actor: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., project_id: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class ListAuditEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Provider(_message.Message):
    __slots__ = ("name", "default_api_base", "default_model", "model_pattern", "key_format", "platform_key_env", "api_family", "display_name", "fields")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_API_BASE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_PATTERN_FIELD_NUMBER: _ClassVar[int]
    KEY_FORMAT_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_KEY_ENV_FIELD_NUMBER: _ClassVar[int]
    API_FAMILY_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    default_api_base: str
    default_model: str
    model_pattern: str
    key_format: str
    platform_key_env: str
    api_family: str
    display_name: str
    fields: _containers.RepeatedCompositeFieldContainer[ProviderField]
    def __init__(self, name: _Optional[str] = ..., default_api_base: _Optional[str] = ..., default_model: _Optional[str] = ..., model_pattern: _Optional[str] = ..., key_format: _Optional[str] = ..., platform_key_env: _Optional[str] = ..., api_family: _Optional[str] = ..., display_name: _Optional[str] = ..., fields: _Optional[_Iterable[_Union[ProviderField, _Mapping]]] = ...) -> None: ...

class ProviderField(_message.Message):
    __slots__ = ("name", "secret", "required", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    secret: bool
    required: bool
    description: str
    def __init__(self, name: _Optional[str] = ..., secret: _Optional[bool] = ..., required: _Optional[bool] = ..., description: _Optional[str] = ...) -> None: ...

class ListProvidersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListProvidersResponse(_message.Message):
    __slots__ = ("providers",)
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    providers: _containers.RepeatedCompositeFieldContainer[Provider]
    def __init__(self, providers: _Optional[_Iterable[_Union[Provider, _Mapping]]] = ...) -> None: ...

class OrgPolicy(_message.Message):
    __slots__ = ("org_id", "allow_platform_fallback")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    ALLOW_PLATFORM_FALLBACK_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    allow_platform_fallback: bool
    def __init__(self, org_id: _Optional[str] = ..., allow_platform_fallback: _Optional[bool] = ...) -> None: ...

class SetOrgPolicyRequest(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: OrgPolicy
    def __init__(self, policy: _Optional[_Union[OrgPolicy, _Mapping]] = ...) -> None: ...

class SetOrgPolicyResponse(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: OrgPolicy
    def __init__(self, policy: _Optional[_Union[OrgPolicy, _Mapping]] = ...) -> None: ...

class GetOrgPolicyRequest(_message.Message):
    __slots__ = ("org_id",)
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    def __init__(self, org_id: _Optional[str] = ...) -> None: ...

class GetOrgPolicyResponse(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: OrgPolicy
    def __init__(self, policy: _Optional[_Union[OrgPolicy, _Mapping]] = ...) -> None: ...

class CallerBinding(_message.Message):
    __slots__ = ("caller_identity", "org_id", "project_id", "create_time")
    CALLER_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    caller_identity: str
    org_id: str
    project_id: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, caller_identity: _Optional[str] = ..., org_id: _Optional[str] = ..., project_id: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateCallerBindingRequest(_message.Message):
    __slots__ = ("binding",)
    BINDING_FIELD_NUMBER: _ClassVar[int]
    binding: CallerBinding
    def __init__(self, binding: _Optional[_Union[CallerBinding, _Mapping]] = ...) -> None: ...

class CreateCallerBindingResponse(_message.Message):
    __slots__ = ("binding",)
    BINDING_FIELD_NUMBER: _ClassVar[int]
    binding: CallerBinding
    def __init__(self, binding: _Optional[_Union[CallerBinding, _Mapping]] = ...) -> None: ...

class DeleteCallerBindingRequest(_message.Message):
    __slots__ = ("caller_identity", "org_id", "project_id")
    CALLER_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    caller_identity: str
    org_id: str
    project_id: str
    def __init__(self, caller_identity: _Optional[str] = ..., org_id: _Optional[str] = ..., project_id: _Optional[str] = ...) -> None: ...

class DeleteCallerBindingResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCallerBindingsRequest(_message.Message):
    __slots__ = ("caller_identity", "org_id")
    CALLER_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    caller_identity: str
    org_id: str
    def __init__(self, caller_identity: _Optional[str] = ..., org_id: _Optional[str] = ...) -> None: ...

class ListCallerBindingsResponse(_message.Message):
    __slots__ = ("bindings",)
    BINDINGS_FIELD_NUMBER: _ClassVar[int]
    bindings: _containers.RepeatedCompositeFieldContainer[CallerBinding]
    def __init__(self, bindings: _Optional[_Iterable[_Union[CallerBinding, _Mapping]]] = ...) -> None: ...

class RevokeOrgRequest(_message.Message):
    __slots__ = ("org_id",)
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    def __init__(self, org_id: _Optional[str] = ...) -> None: ...

class RevokeOrgResponse(_message.Message):
    __slots__ = ("deactivated_count",)
    DEACTIVATED_COUNT_FIELD_NUMBER: _ClassVar[int]
    deactivated_count: int
    def __init__(self, deactivated_count: _Optional[int] = ...) -> None: ...

class RewrapSecretsRequest(_message.Message):
    __slots__ = ("org_id",)
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    def __init__(self, org_id: _Optional[str] = ...) -> None: ...

class RewrapSecretsResponse(_message.Message):
    __slots__ = ("rewrapped_count", "min_transit_key_version")
    REWRAPPED_COUNT_FIELD_NUMBER: _ClassVar[int]
    MIN_TRANSIT_KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    rewrapped_count: int
    min_transit_key_version: int
    def __init__(self, rewrapped_count: _Optional[int] = ..., min_transit_key_version: _Optional[int] = ...) -> None: ...

class IssueKeyLeaseRequest(_message.Message):
    __slots__ = ("scope", "provider", "model", "credential_id", "caller_identity", "exclude_credential_ids")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    CALLER_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_CREDENTIAL_IDS_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    provider: str
    model: str
    credential_id: str
    caller_identity: str
    exclude_credential_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., credential_id: _Optional[str] = ..., caller_identity: _Optional[str] = ..., exclude_credential_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class IssueKeyLeaseResponse(_message.Message):
    __slots__ = ("lease_id", "expire_time", "key_source", "credential_id", "provider", "api_key", "api_base", "default_model", "secret_version", "api_family", "auth_scheme", "aws_credentials", "settings", "rate_limits")
    class SettingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    KEY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    API_BASE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    SECRET_VERSION_FIELD_NUMBER: _ClassVar[int]
    API_FAMILY_FIELD_NUMBER: _ClassVar[int]
    AUTH_SCHEME_FIELD_NUMBER: _ClassVar[int]
    AWS_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMITS_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    expire_time: _timestamp_pb2.Timestamp
    key_source: KeySource
    credential_id: str
    provider: str
    api_key: str
    api_base: str
    default_model: str
    secret_version: int
    api_family: str
    auth_scheme: str
    aws_credentials: AwsSessionCredentials
    settings: _containers.ScalarMap[str, str]
    rate_limits: _containers.RepeatedCompositeFieldContainer[RateLimitUsage]
    def __init__(self, lease_id: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., key_source: _Optional[_Union[KeySource, str]] = ..., credential_id: _Optional[str] = ..., provider: _Optional[str] = ..., api_key: _Optional[str] = ..., api_base: _Optional[str] = ..., default_model: _Optional[str] = ..., secret_version: _Optional[int] = ..., api_family: _Optional[str] = ..., auth_scheme: _Optional[str] = ..., aws_credentials: _Optional[_Union[AwsSessionCredentials, _Mapping]] = ..., settings: _Optional[_Mapping[str, str]] = ..., rate_limits: _Optional[_Iterable[_Union[RateLimitUsage, _Mapping]]] = ...) -> None: ...

class AwsSessionCredentials(_message.Message):
    __slots__ = ("access_key_id", "secret_access_key", "session_token", "expire_time")
    ACCESS_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SECRET_ACCESS_KEY_FIELD_NUMBER: _ClassVar[int]
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    access_key_id: str
    secret_access_key: str
    session_token: str
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, access_key_id: _Optional[str] = ..., secret_access_key: _Optional[str] = ..., session_token: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListTenantModelsRequest(_message.Message):
    __slots__ = ("scope", "caller_identity")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    CALLER_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    caller_identity: str
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., caller_identity: _Optional[str] = ...) -> None: ...

class TenantModel(_message.Message):
    __slots__ = ("provider", "model", "key_source", "credential_id")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    KEY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    key_source: KeySource
    credential_id: str
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., key_source: _Optional[_Union[KeySource, str]] = ..., credential_id: _Optional[str] = ...) -> None: ...

class ListTenantModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[TenantModel]
    def __init__(self, models: _Optional[_Iterable[_Union[TenantModel, _Mapping]]] = ...) -> None: ...

class WatchRevocationsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchRevocationsResponse(_message.Message):
    __slots__ = ("sequence", "reason", "credential_id", "org_id", "caller_identity", "time", "ready")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    CALLER_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    reason: RevocationReason
    credential_id: str
    org_id: str
    caller_identity: str
    time: _timestamp_pb2.Timestamp
    ready: bool
    def __init__(self, sequence: _Optional[int] = ..., reason: _Optional[_Union[RevocationReason, str]] = ..., credential_id: _Optional[str] = ..., org_id: _Optional[str] = ..., caller_identity: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ready: _Optional[bool] = ...) -> None: ...

class ReportKeyFailureRequest(_message.Message):
    __slots__ = ("lease_id", "credential_id", "http_status", "provider_reason")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_REASON_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    credential_id: str
    http_status: int
    provider_reason: str
    def __init__(self, lease_id: _Optional[str] = ..., credential_id: _Optional[str] = ..., http_status: _Optional[int] = ..., provider_reason: _Optional[str] = ...) -> None: ...

class ReportKeyFailureResponse(_message.Message):
    __slots__ = ("health",)
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    health: CredentialHealth
    def __init__(self, health: _Optional[_Union[CredentialHealth, str]] = ...) -> None: ...

class UsageRecord(_message.Message):
    __slots__ = ("time", "scope", "caller_identity", "provider", "model", "credential_id", "key_source", "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "status", "duration_ms", "surface")
    TIME_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    CALLER_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REASONING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    SURFACE_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    scope: Scope
    caller_identity: str
    provider: str
    model: str
    credential_id: str
    key_source: KeySource
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    status: str
    duration_ms: int
    surface: str
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scope: _Optional[_Union[Scope, _Mapping]] = ..., caller_identity: _Optional[str] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., credential_id: _Optional[str] = ..., key_source: _Optional[_Union[KeySource, str]] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cached_input_tokens: _Optional[int] = ..., cache_write_tokens: _Optional[int] = ..., reasoning_tokens: _Optional[int] = ..., status: _Optional[str] = ..., duration_ms: _Optional[int] = ..., surface: _Optional[str] = ...) -> None: ...

class ReportUsageRequest(_message.Message):
    __slots__ = ("batch_id", "records")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    records: _containers.RepeatedCompositeFieldContainer[UsageRecord]
    def __init__(self, batch_id: _Optional[str] = ..., records: _Optional[_Iterable[_Union[UsageRecord, _Mapping]]] = ...) -> None: ...

class ReportUsageResponse(_message.Message):
    __slots__ = ("accepted_count", "duplicate", "rate_limits", "org_ids")
    ACCEPTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMITS_FIELD_NUMBER: _ClassVar[int]
    ORG_IDS_FIELD_NUMBER: _ClassVar[int]
    accepted_count: int
    duplicate: bool
    rate_limits: _containers.RepeatedCompositeFieldContainer[RateLimitUsage]
    org_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, accepted_count: _Optional[int] = ..., duplicate: _Optional[bool] = ..., rate_limits: _Optional[_Iterable[_Union[RateLimitUsage, _Mapping]]] = ..., org_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class QueryUsageRequest(_message.Message):
    __slots__ = ("org_id", "project_id", "user_id", "credential_id", "provider", "model", "key_source", "start_time", "end_time", "grouping", "dimensions")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    KEY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    GROUPING_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    project_id: str
    user_id: str
    credential_id: str
    provider: str
    model: str
    key_source: KeySource
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    grouping: UsageGrouping
    dimensions: _containers.RepeatedScalarFieldContainer[UsageDimension]
    def __init__(self, org_id: _Optional[str] = ..., project_id: _Optional[str] = ..., user_id: _Optional[str] = ..., credential_id: _Optional[str] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., key_source: _Optional[_Union[KeySource, str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., grouping: _Optional[_Union[UsageGrouping, str]] = ..., dimensions: _Optional[_Iterable[_Union[UsageDimension, str]]] = ...) -> None: ...

class UsageRow(_message.Message):
    __slots__ = ("bucket_start_time", "org_id", "project_id", "user_id", "credential_id", "provider", "model", "key_source", "requests", "failed_requests", "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "spend_micros", "unpriced_requests")
    BUCKET_START_TIME_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    KEY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    FAILED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REASONING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SPEND_MICROS_FIELD_NUMBER: _ClassVar[int]
    UNPRICED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    bucket_start_time: _timestamp_pb2.Timestamp
    org_id: str
    project_id: str
    user_id: str
    credential_id: str
    provider: str
    model: str
    key_source: KeySource
    requests: int
    failed_requests: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    spend_micros: int
    unpriced_requests: int
    def __init__(self, bucket_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., org_id: _Optional[str] = ..., project_id: _Optional[str] = ..., user_id: _Optional[str] = ..., credential_id: _Optional[str] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., key_source: _Optional[_Union[KeySource, str]] = ..., requests: _Optional[int] = ..., failed_requests: _Optional[int] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cached_input_tokens: _Optional[int] = ..., cache_write_tokens: _Optional[int] = ..., reasoning_tokens: _Optional[int] = ..., spend_micros: _Optional[int] = ..., unpriced_requests: _Optional[int] = ...) -> None: ...

class QueryUsageResponse(_message.Message):
    __slots__ = ("rows", "start_time", "end_time")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[UsageRow]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, rows: _Optional[_Iterable[_Union[UsageRow, _Mapping]]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Price(_message.Message):
    __slots__ = ("provider", "model", "effective_time", "input_micros", "output_micros", "cached_input_micros", "cache_write_micros", "reasoning_micros", "source")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    INPUT_MICROS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_MICROS_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_MICROS_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_MICROS_FIELD_NUMBER: _ClassVar[int]
    REASONING_MICROS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    effective_time: _timestamp_pb2.Timestamp
    input_micros: int
    output_micros: int
    cached_input_micros: int
    cache_write_micros: int
    reasoning_micros: int
    source: str
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., effective_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., input_micros: _Optional[int] = ..., output_micros: _Optional[int] = ..., cached_input_micros: _Optional[int] = ..., cache_write_micros: _Optional[int] = ..., reasoning_micros: _Optional[int] = ..., source: _Optional[str] = ...) -> None: ...

class ListPricesRequest(_message.Message):
    __slots__ = ("provider", "model")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class ListPricesResponse(_message.Message):
    __slots__ = ("prices",)
    PRICES_FIELD_NUMBER: _ClassVar[int]
    prices: _containers.RepeatedCompositeFieldContainer[Price]
    def __init__(self, prices: _Optional[_Iterable[_Union[Price, _Mapping]]] = ...) -> None: ...

class SetPriceRequest(_message.Message):
    __slots__ = ("price",)
    PRICE_FIELD_NUMBER: _ClassVar[int]
    price: Price
    def __init__(self, price: _Optional[_Union[Price, _Mapping]] = ...) -> None: ...

class SetPriceResponse(_message.Message):
    __slots__ = ("price",)
    PRICE_FIELD_NUMBER: _ClassVar[int]
    price: Price
    def __init__(self, price: _Optional[_Union[Price, _Mapping]] = ...) -> None: ...

class RepriceUsageRequest(_message.Message):
    __slots__ = ("provider", "model", "start_time")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    start_time: _timestamp_pb2.Timestamp
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RepriceUsageResponse(_message.Message):
    __slots__ = ("hourly_rows", "daily_rows", "straddled_hours", "spend_micros_before", "spend_micros_after", "start_time")
    HOURLY_ROWS_FIELD_NUMBER: _ClassVar[int]
    DAILY_ROWS_FIELD_NUMBER: _ClassVar[int]
    STRADDLED_HOURS_FIELD_NUMBER: _ClassVar[int]
    SPEND_MICROS_BEFORE_FIELD_NUMBER: _ClassVar[int]
    SPEND_MICROS_AFTER_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    hourly_rows: int
    daily_rows: int
    straddled_hours: int
    spend_micros_before: int
    spend_micros_after: int
    start_time: _timestamp_pb2.Timestamp
    def __init__(self, hourly_rows: _Optional[int] = ..., daily_rows: _Optional[int] = ..., straddled_hours: _Optional[int] = ..., spend_micros_before: _Optional[int] = ..., spend_micros_after: _Optional[int] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Budget(_message.Message):
    __slots__ = ("budget_id", "scope", "key_source", "period", "limit_micros", "soft_limit_micros", "spend_micros", "period_start_time", "exhausted", "create_time", "update_time")
    BUDGET_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    KEY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    LIMIT_MICROS_FIELD_NUMBER: _ClassVar[int]
    SOFT_LIMIT_MICROS_FIELD_NUMBER: _ClassVar[int]
    SPEND_MICROS_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_TIME_FIELD_NUMBER: _ClassVar[int]
    EXHAUSTED_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    budget_id: str
    scope: Scope
    key_source: KeySource
    period: BudgetPeriod
    limit_micros: int
    soft_limit_micros: int
    spend_micros: int
    period_start_time: _timestamp_pb2.Timestamp
    exhausted: bool
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, budget_id: _Optional[str] = ..., scope: _Optional[_Union[Scope, _Mapping]] = ..., key_source: _Optional[_Union[KeySource, str]] = ..., period: _Optional[_Union[BudgetPeriod, str]] = ..., limit_micros: _Optional[int] = ..., soft_limit_micros: _Optional[int] = ..., spend_micros: _Optional[int] = ..., period_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., exhausted: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SetBudgetRequest(_message.Message):
    __slots__ = ("budget",)
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    budget: Budget
    def __init__(self, budget: _Optional[_Union[Budget, _Mapping]] = ...) -> None: ...

class SetBudgetResponse(_message.Message):
    __slots__ = ("budget",)
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    budget: Budget
    def __init__(self, budget: _Optional[_Union[Budget, _Mapping]] = ...) -> None: ...

class ListBudgetsRequest(_message.Message):
    __slots__ = ("org_id",)
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    def __init__(self, org_id: _Optional[str] = ...) -> None: ...

class ListBudgetsResponse(_message.Message):
    __slots__ = ("budgets",)
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    budgets: _containers.RepeatedCompositeFieldContainer[Budget]
    def __init__(self, budgets: _Optional[_Iterable[_Union[Budget, _Mapping]]] = ...) -> None: ...

class DeleteBudgetRequest(_message.Message):
    __slots__ = ("budget_id",)
    BUDGET_ID_FIELD_NUMBER: _ClassVar[int]
    budget_id: str
    def __init__(self, budget_id: _Optional[str] = ...) -> None: ...

class DeleteBudgetResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RateLimit(_message.Message):
    __slots__ = ("rate_limit_id", "scope", "requests_per_minute", "tokens_per_minute", "create_time", "update_time")
    RATE_LIMIT_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    rate_limit_id: str
    scope: Scope
    requests_per_minute: int
    tokens_per_minute: int
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, rate_limit_id: _Optional[str] = ..., scope: _Optional[_Union[Scope, _Mapping]] = ..., requests_per_minute: _Optional[int] = ..., tokens_per_minute: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RateLimitUsage(_message.Message):
    __slots__ = ("limit", "minute_start_time", "requests", "tokens")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    MINUTE_START_TIME_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    limit: RateLimit
    minute_start_time: _timestamp_pb2.Timestamp
    requests: int
    tokens: int
    def __init__(self, limit: _Optional[_Union[RateLimit, _Mapping]] = ..., minute_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., requests: _Optional[int] = ..., tokens: _Optional[int] = ...) -> None: ...

class SetRateLimitRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: RateLimit
    def __init__(self, limit: _Optional[_Union[RateLimit, _Mapping]] = ...) -> None: ...

class SetRateLimitResponse(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: RateLimit
    def __init__(self, limit: _Optional[_Union[RateLimit, _Mapping]] = ...) -> None: ...

class ListRateLimitsRequest(_message.Message):
    __slots__ = ("org_id",)
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    def __init__(self, org_id: _Optional[str] = ...) -> None: ...

class ListRateLimitsResponse(_message.Message):
    __slots__ = ("limits",)
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    limits: _containers.RepeatedCompositeFieldContainer[RateLimitUsage]
    def __init__(self, limits: _Optional[_Iterable[_Union[RateLimitUsage, _Mapping]]] = ...) -> None: ...

class DeleteRateLimitRequest(_message.Message):
    __slots__ = ("rate_limit_id",)
    RATE_LIMIT_ID_FIELD_NUMBER: _ClassVar[int]
    rate_limit_id: str
    def __init__(self, rate_limit_id: _Optional[str] = ...) -> None: ...

class DeleteRateLimitResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
