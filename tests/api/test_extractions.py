"""The extractions REST API: create (then poll), preview, list, show, discard; errors and rights."""

from __future__ import annotations

import pytest
from django.test import Client

from okuru.customers.models import View
from okuru.mailings.models import Extraction
from tests.api.client import api_client
from tests.conftest import make_operator
from tests.mailings.extraction_setup import ELIGIBLE, make_source, members

pytestmark = pytest.mark.django_db


@pytest.fixture
def source():
    return make_source()


@pytest.fixture
def view(db) -> View:
    return View.objects.create(name="Everyone", fields=ELIGIBLE)


def post(client: Client, path: str, body: dict | None = None):
    return client.post(path, body or {}, content_type="application/json")


def test_create_preview_show_list_and_discard(
    source, view, member, django_capture_on_commit_callbacks
):
    api = api_client(member)
    d = source["delivery"]
    body = {"deliveries": [d.pk], "view": "Everyone", "conditions": ["not_opened"]}
    preview = post(api, "/api/extractions/preview", body)
    assert preview.status_code == 200
    assert preview.json() == {"count": 2, "excluded_now": {}, "deliverable_now": 2}
    with django_capture_on_commit_callbacks(execute=True):
        r = post(api, "/api/extractions", body)
    assert r.status_code == 202
    e = Extraction.objects.get()
    assert r.json()["id"] == e.pk and r.json()["status"] == "extracting"
    shown = api.get(f"/api/extractions/{e.pk}").json()
    assert shown["status"] == "ready" and shown["count"] == 2
    assert shown["recipient_list_id"] == e.recipient_list_id
    assert shown["conditions"] == ["not_opened"] and shown["operator"] == "member"
    assert members(e) == ["c", "f"]
    listed = api.get("/api/extractions?status=ready").json()["items"]
    assert [x["id"] for x in listed] == [e.pk]
    spot = post(api, "/api/mails", {
        "name": "Reminder", "from_address": "news@shop.example", "subject": "Hi",
        "text_body": "Hello", "recipient_list_id": e.recipient_list_id,
    })  # fmt: skip
    assert spot.status_code == 201, spot.json()
    assert (spot.json()["kind"], spot.json()["duplicate_rule"]) == ("spot", "ignore")
    refused = post(api, f"/api/extractions/{e.pk}/discard")
    assert refused.status_code == 409
    assert refused.json()["detail"].startswith(f"Extraction #{e.pk} is used by a mail")


def test_discard_an_unused_extraction(source, view, member, django_capture_on_commit_callbacks):
    api = api_client(member)
    with django_capture_on_commit_callbacks(execute=True):
        r = post(api, "/api/extractions", {"deliveries": [source["delivery"].pk], "view": view.pk})
    r = post(api, f"/api/extractions/{r.json()['id']}/discard")
    assert r.status_code == 200
    assert r.json()["status"] == "discarded" and r.json()["recipient_list_id"] is None


@pytest.mark.parametrize(
    "body,detail",
    [
        ({"deliveries": [], "view": 1}, "Choose at least one past delivery."),
        ({"deliveries": [999999], "view": "Everyone"}, "No such delivery: 999999"),
        ({"deliveries": None}, "Invalid request: payload.deliveries: Input should be a valid list"),
        ({"deliveries": ["x"]}, "Invalid request: payload.deliveries.0: Input should be a valid"),
        ({"conditions": ["maybe"]}, "Unknown condition maybe"),
        ({"match": "some", "conditions": ["opened"]}, "Unknown match some: use all or any."),
        ({"view": "Nope"}, "No such database view: Nope"),
        ({"link": 424242, "conditions": ["clicked"]}, "Link 424242 is not in the mails"),
    ],
)
def test_bad_requests_are_400_with_the_reason(source, view, member, body, detail):
    full = {"deliveries": [source["delivery"].pk], "view": "Everyone", **body}
    r = post(api_client(member), "/api/extractions", full)
    assert r.status_code == 400
    assert r.json()["detail"].startswith(detail)
    assert not Extraction.objects.exists()


def test_missing_extraction_is_404(member):
    r = api_client(member).get("/api/extractions/4242")
    assert r.status_code == 404 and r.json() == {"detail": "No extraction with id 4242."}


@pytest.mark.parametrize("missing", ["sending", "reports"])
def test_a_group_without_the_sending_or_reports_right_is_refused(source, view, missing):
    rights = [r for r in ("mails", "sending", "reports") if r != missing]
    api = api_client(make_operator("limited", rights))
    body = {"deliveries": [source["delivery"].pk], "view": "Everyone"}
    for path in ("/api/extractions", "/api/extractions/preview"):
        r = post(api, path, body)
        assert r.status_code == 403
        assert r.json()["detail"].startswith("You do not have the right to do this")
    assert not Extraction.objects.exists()
    owner = make_operator("boss", ["sending", "reports"])
    from okuru.mailings import extraction

    e = extraction.start_extraction(
        extraction.check([source["delivery"].pk], view.pk), owner, enqueue=False
    )
    if missing == "reports":
        assert api.get("/api/extractions").status_code == 403
        assert api.get(f"/api/extractions/{e.pk}").status_code == 403
    else:
        assert post(api, f"/api/extractions/{e.pk}/discard").status_code == 403
