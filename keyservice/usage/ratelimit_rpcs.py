"""The rate-limit RPCs of KeyServicer (SetRateLimit, ListRateLimits, DeleteRateLimit: admin), and the protobuf form
of a limit with its minute's counts, which ReportUsage answers and IssueKeyLease carry (docs/usage.md)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from byok.keys.v1 import key_service_pb2 as pb
from byokcommon.tls import peer_identity
from keyservice import convert, validation
from keyservice.errors import InvalidArgument
from keyservice.usage import UsageService
from keyservice.usage.ratelimits import RateLimitState

T = TypeVar("T")
_RATE_LIMIT_ID = re.compile(r"rl_[0-9a-f]{24}")


def rate_limit_usage_pb(states: Iterable[RateLimitState]) -> list[pb.RateLimitUsage]:
    return [pb.RateLimitUsage(
        limit=pb.RateLimit(
            rate_limit_id=s.limit.rate_limit_id,
            scope=pb.Scope(org_id=s.limit.org_id, project_id=s.limit.project_id, user_id=s.limit.user_id),
            requests_per_minute=s.limit.requests_per_minute, tokens_per_minute=s.limit.tokens_per_minute,
            create_time=convert.timestamp(s.limit.created_at), update_time=convert.timestamp(s.limit.updated_at)),
        minute_start_time=convert.timestamp(s.minute_start), requests=s.requests, tokens=s.tokens) for s in states]


class RateLimitRpcs:
    """Mixed into KeyServicer after UsageRpcs, which provides `_usage` and (through KeyServicer) `_run`."""

    if TYPE_CHECKING:
        def _usage(self) -> UsageService: ...  # UsageRpcs'

        async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...

    async def SetRateLimit(self, request: pb.SetRateLimitRequest, context: grpc.aio.ServicerContext
                           ) -> pb.SetRateLimitResponse:
        usage = self._usage()
        limit = request.limit
        row = await self._run(
            usage.rates.set, peer_identity(context),
            validation.scope_id(limit.scope.org_id, "limit.scope.org_id", required=True),
            validation.scope_id(limit.scope.project_id, "limit.scope.project_id"),
            validation.scope_id(limit.scope.user_id, "limit.scope.user_id"),
            limit.requests_per_minute, limit.tokens_per_minute)
        state = RateLimitState(row, row.updated_at, 0, 0)
        return pb.SetRateLimitResponse(limit=rate_limit_usage_pb([state])[0].limit)

    async def ListRateLimits(self, request: pb.ListRateLimitsRequest, context: grpc.aio.ServicerContext
                             ) -> pb.ListRateLimitsResponse:
        usage = self._usage()
        states = await self._run(usage.rates.list,
                                 validation.scope_id(request.org_id, "org_id"))
        return pb.ListRateLimitsResponse(limits=rate_limit_usage_pb(states))

    async def DeleteRateLimit(self, request: pb.DeleteRateLimitRequest, context: grpc.aio.ServicerContext
                              ) -> pb.DeleteRateLimitResponse:
        usage = self._usage()
        if not _RATE_LIMIT_ID.fullmatch(request.rate_limit_id):
            raise InvalidArgument("rate_limit_id", "must look like rl_ followed by 24 hex digits")
        await self._run(usage.rates.delete, peer_identity(context), request.rate_limit_id)
        return pb.DeleteRateLimitResponse()
