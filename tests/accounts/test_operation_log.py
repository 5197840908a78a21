from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from okuru.accounts import audit
from okuru.accounts.models import OperationLog
from tests.conftest import client_for


def at(day: str) -> datetime:
    return timezone.make_aware(datetime.fromisoformat(day + " 12:00"))


def make_entries(owner, member) -> None:
    audit.log(owner, "customer_update", "customer 1")
    audit.log(member, "customer_update", "customer 2")
    audit.log(member, "export", "all customers")
    OperationLog.objects.filter(target="customer 1").update(created=at("2026-01-10"))
    OperationLog.objects.filter(target="customer 2").update(created=at("2026-01-20"))
    OperationLog.objects.filter(target="all customers").update(created=at("2026-02-01"))


def targets(response) -> list[str]:
    return [e.target for e in response.context["page"]]


def test_it_lists_entries_newest_first(owner, member, owner_client):
    make_entries(owner, member)
    r = owner_client.get("/accounts/log/")
    assert targets(r) == ["all customers", "customer 2", "customer 1"]
    page = r.content.decode()
    assert "customer_update" in page
    assert "Marketing" in page


def test_it_filters_by_operator(owner, member, owner_client):
    make_entries(owner, member)
    r = owner_client.get("/accounts/log/", {"operator": "member"})
    assert targets(r) == ["all customers", "customer 2"]


def test_it_filters_by_action(owner, member, owner_client):
    make_entries(owner, member)
    r = owner_client.get("/accounts/log/", {"action": "export"})
    assert targets(r) == ["all customers"]


def test_it_filters_by_date_range_inclusive(owner, member, owner_client):
    make_entries(owner, member)
    r = owner_client.get("/accounts/log/", {"date_from": "2026-01-10", "date_to": "2026-01-20"})
    assert targets(r) == ["customer 2", "customer 1"]


def test_it_filters_by_target_text(owner, member, owner_client):
    make_entries(owner, member)
    r = owner_client.get("/accounts/log/", {"target": "CUSTOMER 2"})
    assert targets(r) == ["customer 2"]


def test_it_combines_filters(owner, member, owner_client):
    make_entries(owner, member)
    r = owner_client.get(
        "/accounts/log/", {"operator": "member", "action": "customer_update", "target": "customer"}
    )
    assert targets(r) == ["customer 2"]


def test_it_rejects_a_reversed_date_range(owner_client):
    r = owner_client.get("/accounts/log/", {"date_from": "2026-02-01", "date_to": "2026-01-01"})
    assert "The start date is after the end date." in r.content.decode()
    assert targets(r) == []


def test_it_rejects_a_bad_date(owner_client):
    r = owner_client.get("/accounts/log/", {"date_from": "yesterday"})
    assert "Enter a valid date." in r.content.decode()


def test_it_pages_without_a_query_per_row(owner, owner_client, django_assert_max_num_queries):
    for i in range(120):
        audit.log(owner, "customer_update", f"customer {i}")
    # session, operator, rights (2), unread notices, count, page, operator names, actions
    with django_assert_max_num_queries(9):
        r = owner_client.get("/accounts/log/", {"action": "customer_update", "page": "3"})
    assert len(r.context["page"]) == 20
    assert "action=customer_update&amp;page=2" in r.content.decode()


def test_the_date_filter_uses_the_local_day(owner, owner_client):
    audit.log(owner, "export", "late")
    # 23:30 in Tokyo on Jan 10 is 14:30 UTC on Jan 10; 00:30 on Jan 11 is still Jan 10 in UTC.
    local_late = timezone.make_aware(datetime(2026, 1, 11, 0, 30))
    OperationLog.objects.filter(target="late").update(created=local_late)
    r = owner_client.get("/accounts/log/", {"date_from": "2026-01-11", "date_to": "2026-01-11"})
    assert targets(r) == ["late"]
    r = owner_client.get("/accounts/log/", {"date_to": "2026-01-10"})
    assert targets(r) == []


def test_every_logged_action_has_words():
    # Action codes written as literals anywhere in the code; codes passed in variables are
    # caught at run time (UnlabelledAction is an error in the test settings).
    import ast
    from pathlib import Path

    from django.conf import settings

    from okuru.accounts.logwords import ACTIONS

    missing = []
    for path in (Path(settings.BASE_DIR) / "okuru").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "log"
                and getattr(node.func.value, "id", None) == "audit"
                and len(node.args) >= 2
            ):
                for const in ast.walk(node.args[1]):
                    if isinstance(const, ast.Constant) and const.value not in ACTIONS:
                        missing.append(f"{path.name}: {const.value}")
    assert missing == []


def test_the_log_shows_actions_and_details_in_japanese_words(owner):
    from okuru.accounts import audit

    audit.log(owner, "import_dry_run", "customers.csv", {"inserted": 3, "dry_run": True})
    body = client_for(owner, "ja").get("/accounts/log/").content.decode()
    assert "インポート（テスト実行）" in body
    # (PostgreSQL's jsonb keeps its own key order: each pair is checked on its own.)
    assert "新規登録: 3" in body and "テスト実行: はい" in body
    assert "import_dry_run</td>" not in body


def test_an_import_start_logs_no_server_path(owner):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from okuru.customers import jobs

    class Request:
        user = owner
        META = {"REMOTE_ADDR": "192.0.2.9"}

    upload = SimpleUploadedFile("list.csv", b"email\na@example.com\n")
    jobs.start_import(
        Request(),
        {"file": upload, "mode": "insert", "key": "id", "encoding": "auto", "dry_run": True},
    )
    from okuru.accounts.models import OperationLog

    detail = OperationLog.objects.get(action="import_start").detail
    assert "path" not in detail and detail["filename"] == "list.csv"


def test_a_logged_target_or_detail_with_unstorable_characters_is_kept_readable(owner):
    # A log-in name is whatever a visitor typed: PostgreSQL refuses NUL in text and JSON.
    entry = audit.log(owner, "login_failed", "a\x00b\ud800", {"name": "x\x00", "list": ["\x00"]})
    entry.refresh_from_db()
    assert entry.target == "a\\x00b\\ud800"
    assert entry.detail == {"name": "x\\x00", "list": ["\\x00"]}
