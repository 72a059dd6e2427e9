"""The OpenAPI document is complete: every operation says what it answers, with a typed schema."""

from __future__ import annotations

from typing import Any

from docker_manager.app import create_app
from docker_manager.config import Settings

# Answers whose shape is the Docker engine's own document, passed through on purpose.
ENGINE_DOCUMENTS = {("get", "/docker/containers/{id_or_name}")}


def _is_untyped(schema: dict[str, Any]) -> bool:
    return not schema or (
        schema.get("type") == "object" and "properties" not in schema and "$ref" not in schema
    )


def test_every_operation_documents_a_typed_answer(settings: Settings) -> None:
    document = create_app(settings).openapi()
    untyped = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if (method, path) in ENGINE_DOCUMENTS or path in ("/docs", "/openapi.json"):
                continue
            responses = operation["responses"]
            if "204" in responses:
                continue
            answer = responses.get("200") or responses.get("201") or responses.get("202") or {}
            content = answer.get("content", {})
            streams = [kind for kind in content if kind != "application/json"]
            schema = content.get("application/json", {}).get("schema", {})
            if not streams and _is_untyped(schema):
                untyped.append(f"{method.upper()} {path}")
    assert untyped == []


def test_request_bodies_refuse_unknown_fields(settings: Settings) -> None:
    components = create_app(settings).openapi()["components"]["schemas"]
    bodies = [name for name in components if name.endswith("Request")]
    assert len(bodies) > 15
    loose = [name for name in bodies if components[name].get("additionalProperties") is not False]
    assert loose == []
