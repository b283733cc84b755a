"""The service's HTTP contract: response models, error answers and the OpenAPI document that describes them.

BentoML 1.4's ``/docs.json`` declares errors as ``{error, detail: string}``, yet validation errors list their
problems in ``detail`` and a raised ``InvalidArgument``/``NotFound`` is sent as a one-element list (a BentoML bug);
it omits the either/or rules and the 404/409/413/415/503 answers. `Contract` serves a corrected document and
unwraps those lists.
"""

from __future__ import annotations

import json
from http import HTTPStatus

from bentoml.exceptions import BentoMLException
from pydantic import BaseModel
from starlette.responses import JSONResponse


class Scored(BaseModel):
    item_id: str
    score: float | None  # None for the popularity fallback


class RecommendResponse(BaseModel):
    items: list[Scored]
    fallback: str | None  # "popularity" for a user with no history
    model: str


class SimilarResponse(BaseModel):
    items: list[Scored]


class UpsertResponse(BaseModel):
    added: int
    updated: int
    catalogue: int


class EventResponse(BaseModel):
    user_id: str
    history_length: int


class Conflict(BentoMLException):
    """409: the request is valid but contradicts itself or the served model (e.g. one item id twice)."""

    error_code = HTTPStatus.CONFLICT


def unavailable(message: str, retry_after: int = 1) -> JSONResponse:
    """A 503 answer with its message and ``Retry-After`` (BentoML would mask a raised 5xx's message)."""
    return JSONResponse({"error": message}, status_code=503, headers={"Retry-After": str(retry_after)})


ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
ERROR["properties"]["detail"] = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]}
# Per API: its 200 body (None: BentoML's schema is right) and its other answers besides 400 (invalid request), 413
# (body over the limit), 415 (not JSON) and 500 (a bug), which every API can send.
ANSWERS = {
    "recommend": (RecommendResponse, 404, 503),
    "recommend_batch": (None, 404),
    "similar_items": (SimilarResponse, 404),
    "upsert_items": (UpsertResponse, 409),
    "events": (EventResponse, 404, 503),
}
EITHER_OR = {"recommend": ("user_id", "history"), "similar_items": ("item_id", "text")}


def _exactly_one(a: str, b: str) -> list[dict]:
    """JSON Schema for "exactly one of ``a`` and ``b`` is given" (null counts as not given, as the API reads it)."""
    return [
        {"required": [x], "properties": {x: {"not": {"type": "null"}}, y: {"type": "null"}}}
        for x, y in ((a, b), (b, a))
    ]


def patch_openapi(doc: dict) -> dict:
    """``doc`` (BentoML's OpenAPI document) made true to what the service answers."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR
    for path in doc["paths"].values():
        operation = path.get("post", {})
        name = operation.get("x-bentoml-name")
        if name not in ANSWERS:
            continue
        ok, *statuses = ANSWERS[name]
        body = dict(schemas[f"{name}__Input"])  # pydantic's own schema: optional fields are nullable there
        if name in EITHER_OR:
            body["oneOf"] = _exactly_one(*EITHER_OR[name])
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        responses = {"200": operation["responses"]["200"]}
        if ok is not None:  # pydantic's schema: BentoML's copy drops the nullable fields' null
            schema = ok.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            responses["200"]["content"]["application/json"]["schema"] = schema
        for status in sorted((400, 413, 415, 500, *statuses)):
            answer = {"description": HTTPStatus(status).phrase}
            answer["content"] = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            if status == 503:
                answer["headers"] = {"Retry-After": {"description": "seconds", "schema": {"type": "integer"}}}
            responses[str(status)] = answer
        operation["responses"] = responses
    return doc


class Contract:
    """ASGI middleware: serves the corrected ``/docs.json``, unwraps BentoML's one-element error lists and answers
    415 for a POST body that is not JSON (BentoML's other decoders fail with 500 on a malformed multipart body)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("GET", "POST"):
            return await self.app(scope, receive, send)
        docs = scope["method"] == "GET" and scope["path"] == "/docs.json"
        media = dict(scope.get("headers") or []).get(b"content-type", b"application/json").split(b";")[0].strip()
        if scope["method"] == "POST" and media.lower() != b"application/json":
            answer = JSONResponse({"error": f"content-type {media.decode('latin-1')!r}: send application/json"}, 415)
            return await answer(scope, receive, send)
        start: dict = {}
        chunks: list[bytes] = []

        async def rewrite(message) -> None:
            if message["type"] == "http.response.start":
                if not (docs or message["status"] >= 400):  # successful API answers stream through untouched
                    return await send(message)
                start.update(message)
                return None
            if not start:
                return await send(message)
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return None
            body = b"".join(chunks)
            if docs and start["status"] == 200:
                body = json.dumps(patch_openapi(json.loads(body))).encode()
            elif body.startswith(b'[{"error"'):
                found = json.loads(body)
                body = json.dumps(found[0]).encode() if len(found) == 1 else body
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, rewrite)
