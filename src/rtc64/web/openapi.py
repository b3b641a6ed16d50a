# The OpenAPI 3.0 document of the REST API (served at /api/openapi.json). Hand-written
# next to the handlers; tests run schemathesis against it and the running app.
"""OpenAPI document."""

from __future__ import annotations

from typing import Any

from rtc64 import __version__

Schema = dict[str, Any]

STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer", "minimum": 0}
NUM: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}
FAMILY: Schema = {"type": "string", "enum": ["IPv4", "IPv6", "unknown"]}


def _nullable(schema: Schema) -> Schema:
    return {**schema, "nullable": True}


def _obj(props: dict[str, Schema], required: bool = True) -> Schema:
    out: Schema = {"type": "object", "properties": props}
    if required:
        out["required"] = sorted(props)
    return out


def _arr(item: Schema) -> Schema:
    return {"type": "array", "items": item}


ERROR = _obj({"error": STR})
_PACKETS = _obj({"packets": INT, "bytes": INT})
TUNNEL = {
    **_obj(
        {
            "enabled": BOOL,
            "listen": STR,
            "prefix": STR,
            "backend": {"type": "string", "enum": ["tun", "routed"]},
            "device": STR,
            "upstream": _PACKETS,
            "downstream": _PACKETS,
            "client_to_client": INT,
            "keepalives": INT,
            "ignored_multicast": INT,
            "signalling": _obj({"datagrams": INT, "errors": INT, "tunnels_created": INT}),
            "icmp": _obj({"sent": INT, "rate_limited": INT}),
            "dropped": {"type": "object", "additionalProperties": INT},
            "send_errors": _obj({"udp": INT, "device": INT}),
        },
        required=False,
    ),
    "required": ["enabled"],
}
SESSION = _obj({"authenticated": BOOL, "open": BOOL, "csrf": _nullable(STR)})
CONTACT = _obj(
    {
        "contact": STR,
        "family": FAMILY,
        "transport": {"type": "string", "enum": ["udp", "tcp", "tls", "ws", "wss"]},
        "received": _nullable(STR),
        "listener": STR,
        "expires_in": INT,
        "user_agent": STR,
        "instance": _nullable(STR),
        "reg_id": _nullable(INT),
        "keepalive": _nullable(STR),
        "keepalive_failures": _nullable(INT),
        "last_keepalive": _nullable(NUM),
        "rtt_ms": _nullable(NUM),
    }
)
REGISTRATIONS = _obj({"aors": _arr(_obj({"aor": STR, "contacts": _arr(CONTACT)}))})
STREAM = _obj(
    {
        "media": INT,
        "kind": STR,
        "component": {"type": "string", "enum": ["rtp", "rtcp"]},
        "family": FAMILY,
        "relay_address": STR,
        "relay_port": INT,
        "remote": _nullable(STR),
        "latched": _nullable(STR),
        "held": BOOL,
        "packets": INT,
        "octets": INT,
        "forwarded": INT,
        "dropped": INT,
        "lost": {"type": "integer"},
        "jitter_ms": NUM,
    }
)
PARTY = _nullable(_obj({"family": FAMILY, "transport": _nullable(STR), "address": _nullable(STR)}))
RELAY_CALL = {
    "call_id": STR,
    "session": STR,
    "age": NUM,
    "answered": BOOL,
    "families": _arr(FAMILY),
    "packets": INT,
    "octets": INT,
    "legs": _arr(_obj({"tag": STR, "family": FAMILY, "streams": _arr(STREAM)})),
}
CALL = _obj(
    {
        **RELAY_CALL,
        "session": _nullable(STR),
        "from": _nullable(STR),
        "to": _nullable(STR),
        "state": {"type": "string", "enum": ["early", "confirmed", "relay"]},
        "talk": _nullable(NUM),
        "caller": PARTY,
        "callee": PARTY,
        "relayed": BOOL,
    }
)
ALLOCATION = _obj(
    {
        "client": _obj({"transport": STR, "address": STR, "family": FAMILY}),
        "username": STR,
        "relays": _arr(_obj({"family": FAMILY, "address": STR})),
        "peers": _arr(STR),
        "channels": INT,
        "expires_in": NUM,
        "to_peer_packets": INT,
        "to_peer_bytes": INT,
        "from_peer_packets": INT,
        "from_peer_bytes": INT,
    }
)
TRAFFIC = _obj(
    {
        "client_family": FAMILY,
        "relay_family": FAMILY,
        "relays": INT,
        "to_peer_packets": INT,
        "to_peer_bytes": INT,
        "from_peer_packets": INT,
        "from_peer_bytes": INT,
    }
)
STATUS = _obj(
    {
        "version": STR,
        "uptime": NUM,
        "services": _arr(STR),
        "listeners": _arr(STR),
        "relay_addresses": _arr(STR),
        "turn_listeners": _arr(STR),
        "tunnel": _arr(STR),
        "nat64_prefixes": _arr(STR),
        "config": _arr(_obj({"key": STR, "value": STR})),
    }
)
BLOCK = _obj(
    {
        "kind": {"type": "string", "enum": ["source", "user-at-source", "user"]},
        "source": _nullable(STR),
        "user": _nullable(STR),
        "seconds_left": NUM,
    }
)
OVERVIEW = _obj(
    {
        "registrations": _obj(
            {
                "aors": INT,
                "contacts": INT,
                "by_family": {"type": "object", "additionalProperties": INT},
            }
        ),
        "calls": _obj(
            {"total": INT, "by_families": {"type": "object", "additionalProperties": INT}}
        ),
        "turn_allocations": INT,
        "errors": _arr(_obj({"time": NUM, "level": STR, "logger": STR, "message": STR})),
    }
)
SAMPLE = _obj(
    {
        "time": NUM,
        "calls": INT,
        "relay_packets": INT,
        "relay_bytes": INT,
        "turn_bytes": INT,
        "sip_requests": INT,
    }
)
PROBE_RUN = _obj(
    {
        "id": STR,
        "targets": _arr(STR),
        "families": _arr({"type": "integer", "enum": [4, 6]}),
        "status": {"type": "string", "enum": ["running", "done", "failed"]},
        "started": NUM,
        "finished": _nullable(NUM),
        "exit_code": _nullable(INT),
        "error": _nullable(STR),
    }
)
PROBE_START = {
    "type": "object",
    "required": ["targets"],
    "properties": {
        "targets": {
            "type": "array",
            "minItems": 1,
            "maxItems": 8,
            "items": {"type": "string", "pattern": "^[!-~]{1,256}$"},
        },
        "families": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "integer", "enum": [4, 6]},
        },
    },
}
CREDENTIALS = _obj({"username": STR, "password": STR, "ttl": INT, "uris": _arr(STR)})


def _response(schema: Schema, description: str = "OK") -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Schema]:
    text = {
        400: "bad input",
        401: "no or invalid credentials",
        403: "not allowed (wrong token, missing CSRF header)",
        404: "not configured",
        413: "body too large",
        409: "a probe run is in progress, or the run is not finished",
        415: "body is not JSON",
        429: "too many failed logins",
        501: "not supported by this gateway",
        503: "busy",
    }
    return {str(c): _response(ERROR, text[c]) for c in codes}


def _get(summary: str, schema: Schema, *codes: int, params: list[Schema] | None = None) -> Schema:
    op: Schema = {
        "summary": summary,
        "responses": {"200": _response(schema), **_errors(401, 403, *codes)},
    }
    if params:
        op["parameters"] = params
    return {"get": op}


def _post(summary: str, body: Schema | None, schema: Schema, *codes: int, ok: int = 200) -> Schema:
    op: Schema = {
        "summary": summary,
        "parameters": [
            {
                "name": "X-CSRF-Token",
                "in": "header",
                "required": False,
                "schema": STR,
                "description": "the session's CSRF token (not with a Bearer token)",
            }
        ],
        "responses": {str(ok): _response(schema), **_errors(401, 403, *codes)},
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return {"post": op}


def document() -> Schema:
    """The OpenAPI 3.0.3 document."""
    query = {"in": "query", "required": False}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "rtc64 gateway API",
            "version": __version__,
            "description": "Registrations, calls, TURN allocations, status and blocks of a "
            "running rtc64 gateway. Authenticate with an admin session (cookie + "
            "X-CSRF-Token on POST) or Authorization: Bearer <web.token>.",
        },
        "security": [{"bearer": []}, {"session": []}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "rtc64_session"},
            }
        },
        "paths": {
            "/api/session": {
                "get": {
                    "summary": "whether this browser is logged in, and its CSRF token",
                    "security": [],
                    "responses": {"200": _response(SESSION)},
                }
            },
            "/api/login": {
                "post": {
                    "summary": "log in as the admin (sets the session cookie)",
                    "security": [],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": _obj({"user": STR, "password": STR}),
                            }
                        },
                    },
                    "responses": {
                        "200": _response(SESSION),
                        **_errors(400, 401, 403, 413, 415, 429),
                    },
                }
            },
            "/api/logout": _post("end the session", None, SESSION),
            "/api/overview": _get("counts by family and recent errors", OVERVIEW),
            "/api/history": _get(
                "traffic samples (one per second)", _obj({"samples": _arr(SAMPLE)})
            ),
            "/api/registrations": _get(
                "registered contacts per AOR",
                REGISTRATIONS,
                400,
                params=[
                    {
                        **query,
                        "name": "aor",
                        "schema": STR,
                        "description": "only this address-of-record (a SIP URI; else 400)",
                    }
                ],
            ),
            "/api/calls": _get(
                "calls in progress: every call through the proxy (relayed or not, each "
                "side's family, transport and address; relay legs when relayed), then relay "
                "sessions no proxy call owns (state relay)",
                _obj({"calls": _arr(CALL)}),
            ),
            "/api/turn": _get(
                "TURN allocations and traffic",
                _obj({"enabled": BOOL, "allocations": _arr(ALLOCATION), "traffic": _arr(TRAFFIC)}),
            ),
            "/api/tunnel": _get("the tunnel server's prefix, backend and counters", TUNNEL),
            "/api/status": _get("listeners, NAT64 prefixes, configuration", STATUS),
            "/api/blocks": _get("failed-authentication blocks", _obj({"blocks": _arr(BLOCK)})),
            "/api/blocks/unblock": _post(
                "lift the blocks of an address, prefix or user",
                _obj({"target": {"type": "string", "minLength": 1, "maxLength": 256}}),
                _obj({"target": STR, "lifted": INT}),
                400,
                413,
                415,
            ),
            "/api/turn-credentials": _get(
                "TURN REST credentials (draft-uberti-behave-turn-rest); web.turn_token allowed",
                CREDENTIALS,
                400,
                404,
                params=[
                    {
                        **query,
                        "name": "username",
                        "required": True,
                        "schema": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 128,
                            "pattern": "^[!-9;-~]+$",
                        },
                    },
                    {
                        **query,
                        "name": "ttl",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 86400},
                    },
                ],
            ),
            "/api/probes": {
                **_post(
                    "start a probe run (rtc64 probe)",
                    PROBE_START,
                    PROBE_RUN,
                    400,
                    409,
                    413,
                    415,
                    501,
                    ok=202,
                ),
                **_get("probe runs, newest first", _obj({"runs": _arr(PROBE_RUN)}), 501),
            },
            "/api/probes/{id}": _get(
                "one probe run with its JSON report (docs/probe-schema.md) once done",
                {
                    **PROBE_RUN,
                    "properties": {
                        **PROBE_RUN["properties"],
                        "report": {"type": "object", "nullable": True},
                    },
                },
                404,
                501,
                params=[{"in": "path", "name": "id", "required": True, "schema": STR}],
            ),
            "/api/probes/{id}/html": {
                "get": {
                    "summary": "the run's self-contained HTML report",
                    "parameters": [{"in": "path", "name": "id", "required": True, "schema": STR}],
                    "responses": {
                        "200": {"description": "HTML", "content": {"text/html": {"schema": STR}}},
                        **_errors(401, 403, 404, 409, 501),
                    },
                }
            },
            "/api/reload": _post(
                "reload the configuration (SIGHUP)", None, _obj({"reloading": BOOL}), 501, ok=202
            ),
        },
    }
