"""The service resource in the served OpenAPI document: the fields of the service
desk (priority, deadlines, overdue) are declared, the document stays valid, and real
answers of ``bulk_assign``, ``reassign`` and ``priority`` match their schemas."""
from openapi_spec_validator import validate

from .test_openapi import Schemas, spec  # noqa: F401 (fixture)
from .test_service import customer, ticket  # noqa: F401 (fixtures)


def test_service_desk_fields_and_bulk_assign_are_declared(spec):  # noqa: F811
    validate(spec)
    props = spec["components"]["schemas"]["Service"]["properties"]
    assert {"priority", "response_due", "resolution_due", "first_response_on", "resolved_on",
            "overdue"} <= set(props)
    op = spec["paths"]["/api/v1/service/bulk_assign"]["post"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"ids", "assignee_id"}
    for code in ("200", "400", "403"):
        assert code in op["responses"], code


def test_service_step_answers_match_the_document(spec, api, ticket, user_id):  # noqa: F811
    ck = Schemas(spec).check
    sup = api("supervisor")
    a, b = ticket("created"), ticket("created")
    ck("post", "/api/v1/service/bulk_assign", sup.post("/api/v1/service/bulk_assign", json={
        "ids": [a, 987654321], "assignee_id": user_id("manager1")}), 200)
    ck("post", "/api/v1/service/bulk_assign", sup.post("/api/v1/service/bulk_assign", json={
        "ids": "x", "assignee_id": user_id("manager1")}), 400)
    ck("post", "/api/v1/service/bulk_assign", api("manager1").post(
        "/api/v1/service/bulk_assign", json={"ids": [b], "assignee_id": 1}), 403)
    ck("post", "/api/v1/service/{pk}/priority", sup.post(
        f"/api/v1/service/{b}/priority", json={"priority": "紧急"}), 200)
    ck("post", "/api/v1/service/{pk}/reassign", sup.post(
        f"/api/v1/service/{a}/reassign", json={"assignee_id": user_id("manager2")}), 200)
