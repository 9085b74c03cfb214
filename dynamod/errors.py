"""Errors that travel to clients: each has a stable code and a human message.

Every failure a client can cause ends as one of these, so the protocol layer
can turn it into an answer without knowing where it came from.
"""


class DynamoError(Exception):
    """Base class: `code` is stable (clients test it), `message` is for people."""

    code = "internal_error"

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = {k: v for k, v in details.items() if v is not None}

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, **self.details}


class InvalidRequest(DynamoError):
    """The request is not a well-formed call (not an object, no method, bad id)."""

    code = "invalid_request"


class ParseError(DynamoError):
    """The line is not JSON."""

    code = "parse_error"


class TooLarge(DynamoError):
    """A line longer than the configured limit; the connection closes after it."""

    code = "too_large"


class MethodNotFound(DynamoError):
    code = "method_not_found"


class InvalidParams(DynamoError):
    """A parameter is missing, unknown or of the wrong type."""

    code = "invalid_params"


class InvalidValue(DynamoError):
    """A field of an inventory object has a value it may not have."""

    code = "invalid_value"


class NotFound(DynamoError):
    """A named object does not exist (never silently created)."""

    code = "not_found"


class Conflict(DynamoError):
    """The request contradicts the inventory (mismatched sums, wrong parent, ...)."""

    code = "conflict"


class NotAuthorized(DynamoError):
    code = "not_authorized"


class Busy(DynamoError):
    """The daemon cannot take this request now (limits, shutting down)."""

    code = "busy"


class StoreError(DynamoError):
    """The database refused a commit; nothing of the request was kept."""

    code = "store_error"


class NotConfigured(DynamoError):
    """The daemon is not set up for this (X.509 without CA certificates)."""

    code = "not_configured"
