"""Use of measurement results (route 4): who an extraction holds for each condition and AND/OR
combination, the 3-month rule, deleted customers, exclusions at send time, discard, purge,
the ready notice and e-mail (real SMTP, both languages), the screens and their rights."""

from __future__ import annotations

import time
from datetime import timedelta
from email import message_from_bytes, policy

import pytest
from django.core import mail as django_mail
from django.core.exceptions import ValidationError
from django.test import override_settings
from django.utils import timezone, translation
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from okuru.accounts import jobs
from okuru.accounts.models import Job, Notification
from okuru.customers.models import Customer, Topic, View
from okuru.mailings import actions, extraction, reports, sending
from okuru.mailings.models import (
    Delivery,
    Extraction,
    FrozenList,
    FrozenListMember,
    Mail,
    Recipient,
)
from okuru.mailings.testing import Sink, drain, make_mail, make_relay, start
from tests.conftest import client_for, make_operator
from tests.extraction_setup import ELIGIBLE, extract, ledger, make_source, members

pytestmark = pytest.mark.django_db


@pytest.fixture
def relay():
    from okuru.mailings.models import Relay

    return Relay.objects.get() if Relay.objects.exists() else make_relay(2525)


@pytest.fixture
def source():
    return make_source()


@pytest.fixture
def view(db) -> View:
    return View.objects.create(name="Everyone", fields=ELIGIBLE)


@pytest.mark.parametrize(
    "conditions,match,expected",
    [
        ((), "all", "abcdef"),
        (("opened",), "all", "abe"),
        (("not_opened",), "all", "cf"),
        (("clicked",), "all", "ae"),
        (("not_clicked",), "all", "bcf"),
        (("errored",), "all", "df"),
        (("not_errored",), "all", "abce"),
        (("opened", "not_clicked"), "all", "b"),
        (("not_opened", "not_errored"), "all", "c"),
        (("opened", "errored"), "any", "abdef"),
        (("clicked", "errored"), "any", "adef"),
        (("opened", "not_opened"), "all", ""),
        (("opened", "not_opened"), "any", "abcef"),
    ],
)
def test_it_extracts_exactly_the_customers_of_the_conditions(
    source, view, conditions, match, expected
):
    e = extract([source["delivery"]], view, conditions, match)
    assert e.status == "ready"
    assert members(e) == list(expected)
    assert e.count == len(expected) == e.recipient_list.size


def test_a_chosen_link_narrows_clicked_and_not_clicked(source, view):
    d, sale = source["delivery"], source["sale"]
    assert members(extract([d], view, ["clicked"], link=sale.pk)) == ["a"]
    assert members(extract([d], view, ["not_clicked"], link=sale.pk)) == ["b", "c", "e", "f"]


def test_it_refuses_a_link_of_another_mail_or_without_a_click_condition(source, view, relay):
    other = make_mail(name="Other", text_body="", html_body='<a href="https://x.example/">x</a>')
    d = source["delivery"]
    with pytest.raises(ValidationError) as e:
        extraction.check([d.pk], view.pk, ["clicked"], "all", other.links.get().pk)
    assert e.value.messages == [
        f"Link {other.links.get().pk} is not in the mails of these deliveries."
    ]
    with pytest.raises(ValidationError) as e:
        extraction.check([d.pk], view.pk, ["opened"], "all", source["sale"].pk)
    assert e.value.messages == ["A link can only be chosen with clicked or did not click."]


def test_over_several_deliveries_a_negative_means_none_of_them(source, view):
    """c was sent the first without opening, then opened the second: not "did not open"."""
    people = source["people"]
    second = Delivery.objects.create(
        mail=make_mail(name="Summer"), status="completed",
        started_at=timezone.now() - timedelta(days=10),
    )  # fmt: skip
    ledger(second, people["c"], status="sent", first_open_at=timezone.now(), open_count=1)
    ledger(second, people["g"], status="sent")
    both = [source["delivery"], second]
    assert members(extract(both, view, ["not_opened"])) == ["f", "g"]
    assert members(extract(both, view, ["opened"])) == ["a", "b", "c", "e"]
    assert members(extract(both, view)) == list("abcdefg")


def test_the_view_narrows_the_list(source):
    narrow = View.objects.create(
        name="Not a",
        fields=ELIGIBLE,
        filter={"match": "all", "conditions": [{"field": "email", "op": "ne", "value": "a@example.com"}]},
    )  # fmt: skip
    assert members(extract([source["delivery"]], narrow, ["opened"])) == ["b", "e"]


def test_it_refuses_a_view_that_cannot_be_delivered_to(source):
    thin = View.objects.create(name="Thin", fields=["email"])
    with pytest.raises(ValidationError) as e:
        extraction.check([source["delivery"].pk], "Thin")
    assert e.value.message_dict["view"] == [
        f"The view {thin.name} cannot be used for delivery: it lacks an address, its error "
        "count, the refusal flag or the unsubscribe flags."
    ]
    with pytest.raises(ValidationError, match="No such database view: Nope"):
        extraction.check([source["delivery"].pk], "Nope")


def test_it_refuses_unknown_conditions_and_matches(source, view):
    with pytest.raises(ValidationError) as e:
        extraction.check([source["delivery"].pk], view.pk, ["bought"])
    assert e.value.messages == [
        "Unknown condition bought: use opened, not_opened, clicked, not_clicked, errored, "
        "not_errored."
    ]
    with pytest.raises(ValidationError, match="Unknown match both: use all or any."):
        extraction.check([source["delivery"].pk], view.pk, ["opened"], "both")


# -- the 3-month rule --------------------------------------------------------------------------


def test_a_source_older_than_3_months_is_refused_with_the_reason(source, view):
    d = source["delivery"]
    Delivery.objects.filter(pk=d.pk).update(started_at=timezone.now() - timedelta(days=95))
    with pytest.raises(ValidationError) as e:
        extraction.check([d.pk], view.pk, ["opened"])
    assert e.value.message_dict["deliveries"] == [
        f"Delivery #{d.pk} was sent more than 3 months ago and cannot be used as a source."
    ]
    with pytest.raises(ValidationError, match="Choose at least one past delivery."):
        extraction.check([], view.pk)
    with pytest.raises(ValidationError, match="No such delivery: 999999"):
        extraction.check([999999], view.pk)


def test_a_source_that_left_the_window_before_the_job_ran_fails_the_extraction(source, view):
    d = source["delivery"]
    choice = extraction.check([d.pk], view.pk, ["opened"])
    started = extraction.start_extraction(choice, None, enqueue=False)
    Delivery.objects.filter(pk=d.pk).update(started_at=timezone.now() - timedelta(days=95))
    jobs.run(started.job_id)
    started.refresh_from_db()
    assert started.status == "failed"
    assert "cannot be used as a source" in started.error
    assert started.recipient_list is None and not FrozenList.objects.exists()


# -- deleted customers, exclusions at send time, continue ---------------------------------------


@pytest.fixture
def sink():
    with Sink() as s:
        yield s


def test_deleted_customers_are_left_out_and_exclusions_apply_when_sent(source, view, sink):
    from okuru.mailings.models import Relay

    Relay.objects.update(port=sink.port)
    people = source["people"]
    news = Topic.objects.create(key="news", name="News")
    people["b"].delete()  # before the extraction: not in the list
    e = extract([source["delivery"]], view, ["opened", "not_opened"], "any")
    assert members(e) == ["a", "c", "e", "f"]
    # After the extraction: refusal, unsubscribe, deletion.
    Customer.objects.filter(pk=people["a"].pk).update(refused=True)
    Customer.objects.filter(pk=people["c"].pk).update(unsubscribed=["news"])
    people["e"].delete()
    spot = make_mail(
        name="Reminder", kind="spot", recipient_list=e.recipient_list, topic=news,
        duplicate_rule="ignore",
    )  # fmt: skip
    delivery = start(spot)
    assert delivery.matched_count == 4
    assert delivery.excluded["deleted"] == 1
    assert delivery.excluded["refused"] == 1 and delivery.excluded["unsubscribed"] == 1
    drain(sending.Worker(sending.Config(batch_size=50, idle_sleep=0.01)), delivery)
    assert sorted(sink.received) == ["f@example.com"]


def test_continue_opens_a_spot_delivery_on_the_list_with_duplicates_ignored(source, view, member):
    e = extract([source["delivery"]], view, ["opened"], operator=member)
    client = client_for(member)
    page = client.get(f"/mails/extractions/{e.pk}/continue/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "The duplicate rule is set to “Ignore duplicates and deliver”" in text
    assert f"the list of extraction #{e.pk} (3 customers)" in text
    r = client.post(
        f"/mails/extractions/{e.pk}/continue/",
        {
            "name": "Thanks for opening",
            "kind": "spot",
            "from_address": "news@shop.example",
            "subject": "Hello",
            "text_body": "Hi",
            "recipient_list": e.recipient_list_id,
            "duplicate_rule": "ignore",
            "error_threshold": 5,
            "address_field": "email",
            "cs-TOTAL_FORMS": 0,
            "cs-INITIAL_FORMS": 0,
        },
    )
    assert r.status_code == 302, r.content.decode()[:3000]
    created = Mail.objects.get(name="Thanks for opening")
    assert (created.kind, created.recipient_list_id, created.duplicate_rule) == (
        "spot",
        e.recipient_list_id,
        "ignore",
    )
    assert extraction.as_json(extraction.get(e.pk))["mails"] == [created.pk]
    assert targeting_count(created) == 3


def targeting_count(m: Mail) -> int:
    from okuru.mailings import targeting

    return targeting.preview(m)["after_duplicates"]


def test_after_reservation_the_targeting_is_shown_read_only(source, view, member):
    e = extract([source["delivery"]], view, ["opened"])
    spot = make_mail(name="Locked", kind="spot", recipient_list=e.recipient_list)
    delivery = actions.create_delivery(spot, None)
    actions.reserve(delivery, None, timezone.now() + timedelta(days=1))
    client = client_for(member)
    page = client.get(f"/mails/{spot.pk}/edit/").content.decode()
    assert "Fixed: a delivery of this mail is reserved or running." in page
    assert 'name="recipient_list" disabled' in page or 'disabled id="id_recipient_list"' in page
    other = extract([source["delivery"]], view, ["clicked"])
    r = client.post(
        f"/mails/{spot.pk}/edit/",
        {
            "name": "Locked, new subject",
            "from_address": "news@shop.example",
            "subject": "New subject",
            "text_body": "Hi",
            "recipient_list": other.recipient_list_id,  # ignored: the field is read-only
            "duplicate_rule": "newest",
            "error_threshold": 1,
            "address_field": "email",
            "cs-TOTAL_FORMS": 0,
            "cs-INITIAL_FORMS": 0,
        },
    )
    assert r.status_code == 302
    spot.refresh_from_db()
    assert spot.subject == "New subject"
    assert (spot.recipient_list_id, spot.duplicate_rule, spot.error_threshold) == (
        e.recipient_list_id,
        "ignore",
        5,
    )


def test_the_api_and_cli_mail_gets_the_extraction_defaults(source, view, owner):
    from okuru.mailings.api import MailIn, new_mail

    e = extract([source["delivery"]], view, ["opened"])
    payload = MailIn.model_validate(
        {"name": "x", "from_address": "a@shop.example", "subject": "s", "text_body": "t",
         "recipient_list_id": e.recipient_list_id}
    )  # fmt: skip
    made = actions.save_mail(new_mail(payload, owner), None)
    assert (made.kind, made.duplicate_rule, made.recipient_list_id) == (
        "spot",
        "ignore",
        e.recipient_list_id,
    )


# -- discard and purge -------------------------------------------------------------------------


def test_a_discarded_extraction_drops_its_list_and_cannot_be_targeted(source, view):
    e = extract([source["delivery"]], view, ["opened"])
    list_id = e.recipient_list_id
    extraction.discard_extraction(e, None)
    assert e.status == "discarded" and e.recipient_list_id is None
    assert not FrozenListMember.objects.filter(list_id=list_id).exists()
    assert not FrozenList.objects.filter(pk=list_id).exists()
    with pytest.raises(ValidationError, match="only a ready or failed one can be discarded"):
        extraction.discard_extraction(e, None)
    with pytest.raises(ValidationError, match="only a ready one can be continued"):
        extraction.new_mail_for(e, None)


def test_a_used_extraction_cannot_be_discarded(source, view):
    e = extract([source["delivery"]], view, ["opened"])
    make_mail(name="Uses it", kind="spot", recipient_list=e.recipient_list)
    with pytest.raises(ValidationError) as err:
        extraction.discard_extraction(e, None)
    assert err.value.messages == [
        f"Extraction #{e.pk} is used by a mail and cannot be discarded. Delete or change the "
        "mail first."
    ]


def test_a_mail_cannot_target_a_discarded_list(source, view):
    e = extract([source["delivery"]], view, ["opened"])
    frozen = e.recipient_list
    Extraction.objects.filter(pk=e.pk).update(status="purged")
    with pytest.raises(ValidationError) as err:
        make_mail(name="Late", kind="spot", recipient_list=frozen)
    assert err.value.message_dict["recipient_list"] == [
        f"The recipient list of extraction #{e.pk} is Purged and cannot be used."
    ]


def test_lists_past_retention_are_purged_with_the_ledger_detail(source, view):
    old = extract([source["delivery"]], view, ["opened"])
    young = extract([source["delivery"]], view, ["clicked"])
    Extraction.objects.filter(pk=old.pk).update(created=timezone.now() - timedelta(days=130))
    done = reports.purge_expired()
    assert done["lists"] == 1
    old.refresh_from_db()
    young.refresh_from_db()
    assert old.status == "purged" and young.status == "ready"
    assert not FrozenListMember.objects.filter(list_id=old.recipient_list_id).exists()
    assert FrozenListMember.objects.filter(list_id=young.recipient_list_id).count() == 2
    assert reports.purge_expired()["lists"] == 0


# -- the ready notice and e-mail ---------------------------------------------------------------


def test_the_operator_gets_a_notice_and_the_ready_e_mail(source, view, member, settings):
    settings.OKURU_SUPPORT_FROM = "support@okuru.example"
    member.first_name, member.last_name = "Hanako", "Sato"
    member.save()
    e = extract([source["delivery"]], view, ["opened", "not_clicked"], operator=member)
    notice = Notification.objects.get(operator=member)
    assert notice.text == f"Extraction #{e.pk} is ready: 1 customers."
    assert notice.link == f"/mails/extractions/{e.pk}/"
    (message,) = django_mail.outbox
    assert message.subject == "[Mail delivery using delivery results] Ready to use"
    assert message.from_email == "support@okuru.example"
    assert message.to == ["member@example.com"]
    d = source["delivery"]
    when = timezone.localtime(d.started_at).strftime("%Y-%m-%d %H:%M")
    created = timezone.localtime(e.created).strftime("%Y-%m-%d %H:%M")
    assert message.body == (
        "Dear Hanako Sato,\n\n"
        "The delivery list you extracted from delivery results is ready to use.\n\n"
        "Operator: Hanako Sato (member)\n"
        f"Operation time: {created}\n"
        "Source deliveries:\n"
        f"  - Spring sale (delivery #{d.pk}, {when})\n"
        "Database view: Everyone\n"
        "Conditions: All of: Opened, Did not click\n"
        "Count: 1\n\n"
        "Open the extraction and choose “Continue” to set up the spot delivery:\n"
        f"http://localhost:8000/mails/extractions/{e.pk}/\n"
    )
    assert Job.objects.get(pk=e.job_id).status == "succeeded"


def smtp_mailers(port: int) -> dict:
    return {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": port, "timeout": 5},
        }
    }


@pytest.mark.parametrize("language", ["ja", "en"])
def test_the_ready_e_mail_goes_over_real_smtp_in_the_operators_language(
    source, view, member, sink, language
):
    member.language = language
    member.save()
    with override_settings(MAILERS=smtp_mailers(sink.port), OKURU_SUPPORT_FROM="help@ok.example"):
        e = extract([source["delivery"]], view, ["not_opened"], operator=member)
    sink.wait_for(1, timeout=5)
    ((sender, rcpt, data),) = sink.handler.messages
    assert (sender, rcpt) == ("help@ok.example", "member@example.com")
    parsed = message_from_bytes(data, policy=policy.default)
    body = parsed.get_content()
    d = source["delivery"]
    if language == "ja":
        assert parsed["Subject"] == "【配信実績を利用したメール配信処理】 利用準備完了のお知らせ"
        assert "member 様" in body
        assert "操作ユーザ: member (member)" in body
        assert f"  - Spring sale (配信 #{d.pk}, " in body
        assert "抽出条件: 開封しなかった" in body
        assert "件数: 2" in body
        with translation.override("ja"):
            assert Notification.objects.get(operator=member).text == (
                f"抽出 #{e.pk} の準備ができました: 2 件。"
            )
    else:
        assert parsed["Subject"] == "[Mail delivery using delivery results] Ready to use"
        assert "Conditions: Did not open" in body and "Count: 2" in body
    assert f"http://localhost:8000/mails/extractions/{e.pk}/" in body


def test_a_failed_extraction_gives_the_plain_failure_notice(source, view, member):
    choice = extraction.check([source["delivery"].pk], view.pk, ["opened"])
    started = extraction.start_extraction(choice, member, enqueue=False)
    View.objects.filter(pk=view.pk).update(fields=["email"])
    jobs.run(started.job_id)
    notice = Notification.objects.get(operator=member)
    assert notice.text.startswith(f"Extraction #{started.job_id} failed: The view Everyone")


# -- a property: any outcomes, any conditions ---------------------------------------------------

OUTCOME = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["sent", "failed", "excluded", "stopped"]),
        "opened": st.booleans(),
        "clicked": st.booleans(),
        "bounced": st.booleans(),
        "in_second": st.booleans(),
        "second_opened": st.booleans(),
    }
)


def oracle(rows: list[dict], conditions: list[str], match: str) -> set[int]:
    def flags(r: dict, second: bool) -> dict[str, bool]:
        sent = r["status"] == "sent" if not second else True
        opened = (r["second_opened"] if second else r["opened"]) and sent
        return {
            "sent": sent,
            "opened": opened,
            "clicked": (not second) and sent and r["clicked"],
            "errored": (not second) and (r["status"] == "failed" or r["bounced"]),
        }

    out = set()
    for i, r in enumerate(rows):
        parts = [flags(r, False)] + ([flags(r, True)] if r["in_second"] else [])
        agg = {k: any(p[k] for p in parts) for k in ("sent", "opened", "clicked", "errored")}
        tests = [
            agg[c] if not c.startswith("not_") else agg["sent"] and not agg[c[4:]]
            for c in conditions
        ]
        if not tests or (all(tests) if match == "all" else any(tests)):
            out.add(i)
    return out


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(OUTCOME, min_size=1, max_size=8),
    conditions=st.lists(st.sampled_from(extraction.CONDITIONS), max_size=3, unique=True),
    match=st.sampled_from(["all", "any"]),
)
def test_membership_matches_a_plain_model_for_any_outcomes(relay, view, rows, conditions, match):
    try:
        m = make_mail(name="P")
        first = Delivery.objects.create(mail=m, status="completed", started_at=timezone.now())
        second = Delivery.objects.create(mail=m, status="completed", started_at=timezone.now())
        people = [Customer.objects.create(email=f"p{i}@example.com") for i in range(len(rows))]
        now = timezone.now()
        for person, r in zip(people, rows, strict=True):
            sent = r["status"] == "sent"
            ledger(
                first, person, status=r["status"],
                first_open_at=now if r["opened"] and sent else None,
                click_count=1 if r["clicked"] and sent else 0,
                error_kind="unknown_user" if r["status"] == "failed"
                else "mailbox_full" if r["bounced"] else "",
            )  # fmt: skip
            if r["in_second"]:
                ledger(
                    second, person, status="sent",
                    first_open_at=now if r["second_opened"] else None,
                )  # fmt: skip
        e = extract([first, second], view, conditions, match)
        got = set(FrozenListMember.objects.filter(list_id=e.recipient_list_id).values_list(
            "customer_id", flat=True
        ))  # fmt: skip
        want = {people[i].pk for i in oracle(rows, conditions, match)}
        assert got == want
        assert e.count == len(want) == extraction.expected(extraction.choice_of(e))["count"]
    finally:
        # Each example starts from an empty database (the test's transaction spans them all).
        Extraction.objects.all().delete()
        FrozenList.objects.all().delete()
        Job.objects.all().delete()
        Recipient.objects.all().delete()
        Delivery.objects.all().delete()
        Mail.objects.all().delete()
        Customer.objects.all().delete()


# -- screens and rights ------------------------------------------------------------------------


def test_the_wizard_walks_to_the_confirmation_and_extracts(source, view, member):
    client = client_for(member)
    d = source["delivery"]
    old = Delivery.objects.create(
        mail=d.mail, status="completed", started_at=timezone.now() - timedelta(days=120)
    )
    page = client.get("/mails/extractions/new/").content.decode()
    assert f'value="{old.pk}" id="src-{old.pk}" aria-label="delivery #{old.pk}" disabled' in page
    assert "Sent more than 3 months ago: cannot be used" in page
    r = client.get(f"/mails/extractions/new/?step=view&deliveries={old.pk}")
    assert r.status_code == 400
    assert "was sent more than 3 months ago" in r.content.decode()
    q = f"deliveries={d.pk}&view={view.pk}&conditions=opened&conditions=errored&match=any"
    confirm = client.get(f"/mails/extractions/new/?step=confirm&{q}")
    assert confirm.status_code == 200
    text = confirm.content.decode()
    assert '<b id="expected-count">5</b>' in text  # a b d e f
    assert "Extract delivery list" in text
    r = client.post("/mails/extractions/new/", {
        "deliveries": [d.pk], "view": view.pk, "conditions": ["opened", "errored"], "match": "any",
    })  # fmt: skip
    e = Extraction.objects.get()
    assert r.status_code == 302 and r["Location"] == f"/mails/extractions/{e.pk}/"
    # Under pytest the job ran at once (on commit).
    listing = client.get("/mails/extractions/").content.decode()
    assert f'href="/mails/extractions/{e.pk}/"' in listing
    assert "Any of: Opened, Had an error" in listing


def test_the_delivery_results_offer_the_wizard_for_ticked_deliveries(source, member):
    page = client_for(member).get("/mails/deliveries/").content.decode()
    assert 'action="/mails/extractions/new/"' in page
    assert f'name="deliveries" value="{source["delivery"].pk}"' in page


def test_an_extraction_page_polls_as_json(source, view, member):
    e = extract([source["delivery"]], view, ["opened"], operator=member)
    r = client_for(member).get(f"/mails/extractions/{e.pk}/?format=json")
    assert r.json()["status"] == "ready" and r.json()["count"] == 3


@pytest.mark.parametrize("missing", ["sending", "reports"])
def test_a_group_without_the_sending_or_reports_right_is_refused(source, view, missing):
    rights = [r for r in ("mails", "sending", "reports") if r != missing]
    who = make_operator(f"no-{missing}", rights)
    client = client_for(who)
    e = extract([source["delivery"]], view, ["opened"])
    assert client.get("/mails/extractions/new/").status_code == 403
    post = {"deliveries": [source["delivery"].pk], "view": view.pk}
    assert client.post("/mails/extractions/new/", post).status_code == 403
    if missing == "reports":
        assert client.get("/mails/extractions/").status_code == 403
        assert client.get(f"/mails/extractions/{e.pk}/").status_code == 403
    else:
        assert client.post(f"/mails/extractions/{e.pk}/discard/").status_code == 403
        assert client.post("/mails/extractions/purge/").status_code == 403
    assert Extraction.objects.count() == 1
    e.refresh_from_db()
    assert e.status == "ready"


def test_a_group_without_the_mails_right_cannot_continue(source, view):
    who = make_operator("no-mails", ["sending", "reports"])
    e = extract([source["delivery"]], view, ["opened"])
    assert client_for(who).get(f"/mails/extractions/{e.pk}/continue/").status_code == 403


def test_the_list_page_makes_no_query_per_row(source, view, member, django_assert_max_num_queries):
    for conds in (["opened"], ["clicked"], ["errored"], [], ["not_opened"]):
        e = extract([source["delivery"]], view, conds)
        make_mail(name=f"fed {e.pk}", kind="spot", recipient_list=e.recipient_list)
    client = client_for(member)
    client.get("/mails/extractions/")
    with django_assert_max_num_queries(12):
        assert client.get("/mails/extractions/").status_code == 200


def test_the_ready_notice_waits_for_the_commit(
    source, view, member, django_capture_on_commit_callbacks
):
    choice = extraction.check([source["delivery"].pk], view.pk, ["opened"])
    with django_capture_on_commit_callbacks(execute=True):
        e = extraction.start_extraction(choice, member)
    e.refresh_from_db()
    assert e.status == "ready"
    deadline = time.monotonic() + 1
    while not Notification.objects.filter(operator=member).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert Notification.objects.filter(operator=member).count() == 1
