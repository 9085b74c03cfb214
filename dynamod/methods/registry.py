"""The table of protocol methods: name, access, parameters, handler.

Handlers are plain functions `handler(call, **params)`, sync for answers that
need nothing but memory, async for those that wait (commits).  Parameters and
their types come from the handler's signature, so the checks, the access
table and PROTOCOL.md cannot drift apart.
"""

import inspect
import types
import typing
from dataclasses import dataclass, field

from ..auth.policy import Access
from ..errors import InvalidParams, MethodNotFound

_MISSING = inspect.Parameter.empty


@dataclass(frozen=True)
class Method:
    name: str
    handler: typing.Callable
    access: Access
    params: dict          # name -> (allowed types, default or _MISSING)
    is_async: bool
    checks: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        """Resolve each parameter's types once into the exact types of the JSON values
        it takes, so that checking a request is a set lookup per parameter."""
        checks = tuple((name, frozenset(t for t, sample in _SAMPLES.items()
                                        if any(_is(sample, a) for a in allowed)),
                        default is _MISSING)
                       for name, (allowed, default) in self.params.items())
        object.__setattr__(self, "checks", checks)

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.handler) or ""

    def describe(self) -> dict:
        return {"name": self.name, "access": self.access.name.lower(), "description": self.doc,
                "params": {p: {"types": [_type_name(t) for t in allowed],
                               "required": default is _MISSING}
                           for p, (allowed, default) in self.params.items()}}

    def bind(self, params: dict) -> dict:
        """Check the request's params against the signature (in its order, so the first
        parameter at fault is the one reported)."""
        if not self.params.keys() >= params.keys():
            unknown = sorted(set(params) - set(self.params))[0]
            raise InvalidParams(f"{self.name}: unknown parameter {unknown!r} "
                                f"(accepted: {', '.join(self.params) or 'none'})",
                                field=unknown)
        for name, accepted, required in self.checks:
            value = params.get(name, _MISSING)
            if value is _MISSING:
                if required:
                    raise InvalidParams(f"{self.name}: missing parameter {name!r}", field=name)
            elif type(value) not in accepted:
                names = " or ".join(_type_name(t) for t in self.params[name][0])
                raise InvalidParams(f"{self.name}: parameter {name!r} must be {names}, "
                                    f"not {_json_type(value)}", field=name)
        return params


def _is(value, t) -> bool:
    """JSON's view of types: a bool is no integer, and `1` is as good a number as `1.0`."""
    if t is type(None):
        return value is None
    if t is int:
        return type(value) is int
    if t is float:
        return type(value) in (int, float)
    return isinstance(value, t)


# One value of each type a JSON parser gives: `_is` depends on a value's type alone.
_SAMPLES = {str: "", int: 0, float: 0.0, bool: False, dict: {}, list: [], type(None): None}


def _type_name(t) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            dict: "an object", list: "a list", type(None): "null"}.get(t, t.__name__)


def _json_type(value) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
            dict: "an object", list: "a list", type(None): "null"}.get(type(value), "a value")


METHODS: dict[str, Method] = {}


def strings(**lists):
    """Refuse a list parameter (`name=value`) that holds anything but strings."""
    for name, value in lists.items():
        if not all(isinstance(v, str) for v in value):
            raise InvalidParams(f"{name} must be a list of strings", field=name)


def method(name: str, access: Access):
    """Register a handler as protocol method `name`, callable with `access`."""
    def register(handler):
        hints = typing.get_type_hints(handler)
        params = {}
        for pname, p in list(inspect.signature(handler).parameters.items())[1:]:
            hint = hints[pname]
            allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
            params[pname] = (allowed, p.default)
        METHODS[name] = Method(name, handler, access, params,
                               inspect.iscoroutinefunction(handler))
        return handler
    return register


def lookup(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise MethodNotFound(f"unknown method {name!r}") from None


@dataclass(slots=True)
class Call:
    """What a handler knows of the call: who made it, and the daemon's parts."""
    server: typing.Any
    identity: typing.Any
    request_id: object = None
    connection: typing.Any = None

    @property
    def actor(self) -> str:
        """Who made the call, as the change log names it: request ids are the client's
        (every dynamo-inject's first is 1), the connection's number is the daemon's."""
        who = self.identity.name or f"uid{self.identity.peer.uid}"
        connection = f" connection={self.connection.number}" if self.connection else ""
        return f"{who}{connection} request={self.request_id}"

    @property
    def service(self):
        return self.server.service

    @property
    def inventory(self):
        return self.server.service.inventory
