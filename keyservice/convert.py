"""Store rows to protobuf messages (and the few enums both sides name)."""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp

from byok.keys.v1 import key_service_pb2 as pb
from keyservice.derive import AwsSession
from keyservice.store import AuditRow, BindingRow, CredentialRow

HEALTH_TO_PB = {
    "unverified": pb.CREDENTIAL_HEALTH_UNSPECIFIED,
    "active": pb.CREDENTIAL_HEALTH_ACTIVE,
    "invalid": pb.CREDENTIAL_HEALTH_INVALID,
    "rate_limited": pb.CREDENTIAL_HEALTH_RATE_LIMITED,
    "unreachable": pb.CREDENTIAL_HEALTH_UNREACHABLE,
}
REASON_TO_PB = {
    "deactivated": pb.REVOCATION_REASON_DEACTIVATED,
    "rotated": pb.REVOCATION_REASON_ROTATED,
    "deleted": pb.REVOCATION_REASON_DELETED,
    "caller_unbound": pb.REVOCATION_REASON_CALLER_UNBOUND,
    "invalid": pb.REVOCATION_REASON_INVALID,
    "scope_changed": pb.REVOCATION_REASON_SCOPE_CHANGED,
    "budget_exhausted": pb.REVOCATION_REASON_BUDGET_EXHAUSTED,
}


def timestamp(value: dt.datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value if value.tzinfo else value.replace(tzinfo=dt.UTC))
    return ts


def credential(row: CredentialRow) -> pb.Credential:
    return pb.Credential(
        credential_id=row.credential_id, provider=row.provider,
        scope=pb.Scope(org_id=row.org_id, project_id=row.project_id, user_id=row.user_id),
        name=row.name, api_base=row.api_base, default_model=row.default_model, active=row.active,
        primary=row.primary, health=HEALTH_TO_PB.get(row.health, pb.CREDENTIAL_HEALTH_UNSPECIFIED),
        key_hint=row.key_hint, fingerprint=row.fingerprint,
        secret_ref=pb.SecretReference(mount=row.vault_mount, path=row.vault_path, version=row.secret_version,
                                      transit_key=row.transit_key, transit_key_version=row.transit_key_version),
        create_time=timestamp(row.created_at), update_time=timestamp(row.updated_at),
        last_verify_time=timestamp(row.last_verified_at), last_rotate_time=timestamp(row.last_rotated_at),
        settings=dict(row.settings), last_use_time=timestamp(row.last_used_at),
    )


def aws_session(session: AwsSession | None) -> pb.AwsSessionCredentials | None:
    if session is None:
        return None
    return pb.AwsSessionCredentials(access_key_id=session.access_key_id, secret_access_key=session.secret_access_key,
                                    session_token=session.session_token, expire_time=timestamp(session.expires_at))


def audit_event(row: AuditRow) -> pb.AuditEvent:
    return pb.AuditEvent(event_id=row.event_id, time=timestamp(row.time), actor=row.actor, action=row.action,
                         credential_id=row.credential_id, org_id=row.org_id, project_id=row.project_id,
                         user_id=row.user_id, outcome=row.outcome, details_json=row.details_json)


def binding(row: BindingRow) -> pb.CallerBinding:
    return pb.CallerBinding(caller_identity=row.caller_identity, org_id=row.org_id, project_id=row.project_id,
                            create_time=timestamp(row.created_at))
