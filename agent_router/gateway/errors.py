"""Errors the gateway answers with: an HTTP status and OpenAI's error shape (or Anthropic's on /v1/messages)."""

from __future__ import annotations

from typing import Any

from ..errors import AgentRouterError
from ..secrets import redact


class GatewayError(AgentRouterError):
    """`status`, OpenAI's error `type` and `code`, and the JSON path of the bad parameter if any."""

    status = 400
    type = "invalid_request_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 status: int | None = None, headers: dict[str, str] | None = None):
        super().__init__(redact(message))
        self.param = param
        self.code = code or self.code
        self.status = status or self.status
        self.headers = headers or {}

    def openai(self) -> dict[str, Any]:
        return {"error": {"message": str(self), "type": self.type, "param": self.param, "code": self.code}}

    def anthropic(self) -> dict[str, Any]:
        kind = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}.get(self.status)
        if kind is None:
            kind = "invalid_request_error" if self.status < 500 else "api_error"
        return {"type": "error", "error": {"type": kind, "message": str(self)}}


class BadRequest(GatewayError):
    code = "invalid_request"


class Unauthorized(GatewayError):
    status = 401
    code = "invalid_api_key"


class Forbidden(GatewayError):
    status = 403
    type = "permission_error"
    code = "forbidden"


class NotFound(GatewayError):
    status = 404
    code = "model_not_found"


class TooLarge(GatewayError):
    status = 413
    code = "request_too_large"


class OverBudget(GatewayError):
    status = 429
    type = "insufficient_quota"
    code = "budget_exceeded"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class Upstream(GatewayError):
    """Every model of the chain failed: 502 (or the upstream's own 4xx kind when no other model can help)."""

    status = 502
    type = "api_error"
    code = "upstream_error"
