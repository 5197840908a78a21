"""Applying received bounces to a real delivery: VERP matching, failed versus delayed, the error
counts, the report's errors and every audience built on them, idempotence, complaints."""

from __future__ import annotations

from okuru.accounts.models import OperationLog
from okuru.bounces import actions, verp
from okuru.bounces.models import Bounce
from okuru.customers import filters
from okuru.customers.models import Customer
from okuru.mailings import redelivery, reports
from okuru.mailings.models import Delivery, Event, ListCleaning, Recipient
from tests.bounces.inbound import UNRECOGNISED, arf, dsn, return_path, row_of


def receive(raw: bytes, **kw) -> Bounce:
    bounce, _new = actions.receive(raw, "file", **kw)
    return bounce


def test_a_hard_bounce_fails_the_sent_row_with_its_kind_and_counts_99(sent):
    row = row_of(sent, "gone@example.com")
    bounce = receive(dsn(row))
    assert (bounce.outcome, bounce.kind, bounce.status) == ("failed", "unknown_user", "5.1.1")
    assert (bounce.delivery_id, bounce.recipient_id, bounce.matched_by) == (sent.pk, row.pk, "verp")
    assert bounce.customer_id == row.customer_id
    row.refresh_from_db()
    assert (row.status, row.error_kind) == ("failed", "unknown_user")
    assert "5.1.1" in row.smtp_reply and row.note == "Bounced after sending (5.1.1)."
    assert Customer.objects.get(pk=row.customer_id).email_error_count == 99
    sent.refresh_from_db()
    assert (sent.sent_count, sent.failed_count) == (2, 1)
    assert ListCleaning.objects.filter(address="gone@example.com", reason="unknown_user").exists()
    event = Event.objects.get(kind="bounce")
    assert (event.recipient_id, event.detail["kind"]) == (row.pk, "unknown_user")
    assert OperationLog.objects.filter(action="bounce.apply").count() == 1


def test_a_soft_permanent_bounce_counts_one_and_is_not_list_cleaned(sent):
    row = row_of(sent, "full@example.com")
    bounce = receive(dsn(row, "5.2.2", diagnostic="552 5.2.2 Mailbox full"))
    assert (bounce.outcome, bounce.kind) == ("failed", "mailbox_full")
    assert Customer.objects.get(pk=row.customer_id).email_error_count == 1
    assert not ListCleaning.objects.exists()


def test_a_bounced_row_shows_in_the_errors_and_every_errored_audience(sent):
    row = row_of(sent, "gone@example.com")
    receive(dsn(row))
    assert [r.pk for r in reports.recipients(sent, "errors")] == [row.pk]
    assert reports.errors_by_kind(sent) == {"unknown_user": 1}
    errored = {"kind": "delivery_history", "delivery": sent.pk, "event": "errored"}
    tree = {"match": "all", "conditions": [errored]}
    assert list(filters.filtered(tree).values_list("email", flat=True)) == ["gone@example.com"]
    not_errored = {**errored, "event": "not_errored"}
    tree = {"match": "all", "conditions": [not_errored]}
    assert sorted(filters.filtered(tree).values_list("email", flat=True)) == [
        "fine@example.com",
        "full@example.com",
    ]
    assert redelivery.redeliver_preview(sent, "errored")["matched"] == 1
    assert redelivery.redeliver_preview(sent, "not_errored")["matched"] == 2
    assert redelivery.redeliver_preview(sent, "not_reached")["matched"] == 1


def test_the_same_bounce_twice_changes_nothing_the_second_time(sent):
    row = row_of(sent, "gone@example.com")
    first, new = actions.receive(dsn(row), "smtp")
    again, new_again = actions.receive(dsn(row), "imap")
    assert new and not new_again and again.pk == first.pk
    # Another message about the same row (another Message-ID) is stored but changes nothing.
    other = receive(dsn(row, unique="2"))
    assert other.outcome == "already"
    assert Customer.objects.get(pk=row.customer_id).email_error_count == 99
    sent.refresh_from_db()
    assert (sent.sent_count, sent.failed_count) == (2, 1)
    assert Event.objects.filter(kind="bounce").count() == 1


def test_a_delayed_dsn_is_recorded_and_changes_nothing(sent):
    row = row_of(sent, "full@example.com")
    bounce = receive(dsn(row, "4.2.2", "delayed", "452 4.2.2 Mailbox full, will retry"))
    assert bounce.outcome == "delayed" and bounce.status == "4.2.2"
    assert bounce.recipient_id == row.pk
    row.refresh_from_db()
    assert row.status == "sent"
    assert Customer.objects.get(pk=row.customer_id).email_error_count == 0


def test_a_forged_verp_signature_matches_nothing(sent):
    row = row_of(sent, "gone@example.com")
    real = return_path(row)
    local, domain = real.split("@")
    forged = local[:-1] + ("a" if local[-1] != "a" else "b") + "@" + domain
    assert verp.read(forged) is None
    bounce = receive(dsn(row, to=forged, message_id="<not-ours@example.net>"))
    assert bounce.outcome == "unmatched" and bounce.recipient_id is None
    assert Recipient.objects.get(pk=row.pk).status == "sent"


def test_an_old_unsigned_verp_address_matches_only_the_rows_own_address(sent):
    row = row_of(sent, "gone@example.com")
    legacy = f"bounce+{sent.pk}-{row.pk}@bounce.shop.example"
    other = receive(dsn(row, to=legacy, address="x@example.com", message_id="<n@x>", unique="a"))
    assert other.outcome == "unmatched"
    bounce = receive(dsn(row, to=legacy, message_id="<n@x>", unique="b"))
    assert (bounce.outcome, bounce.matched_by) == ("failed", "legacy_verp")


def test_a_bounce_without_verp_is_matched_by_the_original_message_id(sent):
    row = row_of(sent, "gone@example.com")
    bounce = receive(dsn(row, to="postmaster@shop.example"))
    assert (bounce.outcome, bounce.matched_by, bounce.recipient_id) == (
        "failed",
        "message_id",
        row.pk,
    )
    # A made-up Message-ID in Okuru's shape does not match: the random part must agree.
    fake = row.message_id.replace(row.message_id.split(".")[2][:4], "0000")
    unmatched = receive(dsn(row, to="postmaster@shop.example", message_id=fake, unique="z"))
    assert unmatched.outcome == "unmatched"


def test_an_unrecognised_message_is_kept_for_a_human(sent):
    bounce = receive(UNRECOGNISED)
    assert bounce.outcome == "unparsed" and bytes(bounce.raw) == UNRECOGNISED
    assert bounce.in_queue


def test_an_auto_reply_is_not_a_bounce(sent):
    raw = b"""From: Alice <fine@example.com>
To: news@shop.example
Subject: Out of office
Auto-Submitted: auto-replied
Message-ID: <ooo-1@example.com>

I am away until Monday.
"""
    bounce = receive(raw)
    assert bounce.outcome == "auto_reply" and not bounce.in_queue
    assert not Recipient.objects.filter(status="failed").exists()


def test_a_complaint_sets_the_refusal_flag_and_records_an_event(sent):
    row = row_of(sent, "fine@example.com")
    bounce = receive(arf(row))
    assert bounce.outcome == "complaint" and bounce.customer_id == row.customer_id
    assert Customer.objects.get(pk=row.customer_id).refused is True
    event = Event.objects.get(kind="complaint")
    assert (event.recipient_id, event.detail["feedback_type"]) == (row.pk, "abuse")
    assert OperationLog.objects.filter(action="bounce.apply").exists()


def test_reparse_applies_a_queued_message_once_it_can_be_matched(sent):
    row = row_of(sent, "gone@example.com")
    bounce = receive(dsn(row, to="nobody@example.net", message_id="<a@b>"))
    assert bounce.outcome == "unmatched"
    # Nothing changed; re-parsing the same bytes gives the same answer and keeps it queued.
    again = actions.reparse(None, bounce.pk)
    assert again.outcome == "unmatched" and again.in_queue
    assert OperationLog.objects.filter(action="bounce.reparse").count() == 1
    discarded = actions.discard(None, bounce.pk)
    assert discarded.outcome == "discarded" and not discarded.in_queue
    assert bytes(Bounce.objects.get(pk=bounce.pk).raw)  # kept


def test_a_bounce_for_a_row_not_sent_changes_nothing(sent):
    row = row_of(sent, "gone@example.com")
    Recipient.objects.filter(pk=row.pk).update(status="excluded", exclusion="refused")
    bounce = receive(dsn(row))
    assert bounce.outcome == "not_sent"
    assert Customer.objects.get(pk=row.customer_id).email_error_count == 0
    assert Delivery.objects.get(pk=sent.pk).failed_count == 0
