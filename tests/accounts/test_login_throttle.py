"""Per-source and per-account log-in limits through the Django test client: which address
counts, what a success gives back, what the operator reads, and the forms that must not
write a stale operator row back over a lock."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.forms import SetPasswordForm
from django.test import Client, override_settings
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from okuru.accounts.forms import OperatorForm, ProfileForm
from okuru.accounts.models import LoginSource, OperationLog, Operator, source_key
from tests.conftest import PASSWORD

SOURCE_LOCKED = (
    "Too many failed log-in attempts from your network address. Try again in 15 minutes."
)
LOCKED = "Too many failed log-in attempts. Try again in 15 minutes."
WRONG = "Wrong user name or password."


def from_address(ip: str) -> Client:
    return Client(headers={"accept-language": "en"}, REMOTE_ADDR=ip)


def post_login(client: Client, username: str, password: str):
    return client.post("/accounts/login/", {"username": username, "password": password})


@override_settings(LOGIN_IP_MAX_FAILURES=4)
def test_it_locks_an_address_that_tries_many_user_names(member):
    client = from_address("198.51.100.9")
    for name in ("alice", "bob", "carol"):
        assert WRONG in post_login(client, name, "a guess!").content.decode()
    assert SOURCE_LOCKED in post_login(client, "dave", "a guess!").content.decode()

    # Locked: even the right password of a real operator is refused, unchecked and uncounted.
    r = post_login(client, "member", PASSWORD)
    assert SOURCE_LOCKED in r.content.decode()
    assert "_auth_user_id" not in client.session
    member.refresh_from_db()
    assert member.failed_logins == 0
    assert OperationLog.objects.filter(action="login_refused_source").count() == 1
    assert OperationLog.objects.filter(action="source_locked").count() == 1

    # Another address is not affected.
    assert post_login(from_address("198.51.100.10"), "member", PASSWORD).status_code == 302


@override_settings(LOGIN_IP_MAX_FAILURES=3)
def test_an_ipv6_subscriber_counts_as_one_source_per_64(member):
    for host in ("1", "2", "3"):
        post_login(from_address(f"2001:db8:5:6::{host}"), "nobody", "a guess!")
    r = post_login(from_address("2001:db8:5:6:ffff::9"), "member", PASSWORD)
    assert SOURCE_LOCKED in r.content.decode()
    assert post_login(from_address("2001:db8:5:7::1"), "member", PASSWORD).status_code == 302


@pytest.mark.parametrize(
    "ip, key",
    [
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("2001:db8::1", "2001:db8::/64"),
        ("unix:/run/okuru.sock", "unix:/run/okuru.sock"),
    ],
)
def test_the_source_key_groups_what_one_client_holds(ip, key):
    assert source_key(ip) == key


@override_settings(LOGIN_IP_MAX_FAILURES=3)
def test_a_successful_log_in_is_not_a_failure_of_its_address(member):
    client = from_address("198.51.100.20")
    for _ in range(5):
        assert post_login(client, "member", PASSWORD).status_code == 302
    post_login(client, "nobody", "a guess!")
    assert LoginSource.objects.get(source="198.51.100.20").failed_logins == 1


@override_settings(LOGIN_IP_MAX_FAILURES=3, LOGIN_IP_WINDOW_MINUTES=15)
def test_failures_of_an_address_count_within_the_window_only(db):
    client = from_address("198.51.100.30")
    post_login(client, "nobody", "a guess!")
    post_login(client, "nobody", "a guess!")
    LoginSource.objects.update(window_start=timezone.now() - timedelta(minutes=16))
    assert WRONG in post_login(client, "nobody", "a guess!").content.decode()
    assert LoginSource.objects.get().failed_logins == 1


@override_settings(LOGIN_IP_MAX_FAILURES=2, LOGIN_IP_LOCKOUT_MINUTES=15)
def test_an_address_may_try_again_when_its_lock_runs_out(member):
    client = from_address("198.51.100.40")
    post_login(client, "nobody", "a guess!")
    assert SOURCE_LOCKED in post_login(client, "nobody", "a guess!").content.decode()
    LoginSource.objects.update(locked_until=timezone.now() - timedelta(seconds=1))
    assert post_login(client, "member", PASSWORD).status_code == 302
    LoginSource.prune()
    assert LoginSource.objects.count() == 1  # its window has not run out yet


def test_prune_forgets_sources_whose_window_and_lock_ran_out(db):
    old = timezone.now() - timedelta(hours=1)
    LoginSource.objects.create(source="192.0.2.1", failed_logins=3, window_start=old)
    LoginSource.objects.create(
        source="192.0.2.2", window_start=old, locked_until=timezone.now() + timedelta(minutes=5)
    )
    LoginSource.objects.create(source="192.0.2.3", failed_logins=1)
    assert LoginSource.prune() == 1
    assert set(LoginSource.objects.values_list("source", flat=True)) == {"192.0.2.2", "192.0.2.3"}


@override_settings(LOGIN_MAX_FAILURES=3)
def test_the_attempt_that_reaches_the_limit_with_the_right_password_logs_in(member):
    client = from_address("192.0.2.50")
    post_login(client, "member", "a guess!")
    post_login(client, "member", "a guess!")
    assert post_login(client, "member", PASSWORD).status_code == 302
    member.refresh_from_db()
    assert (member.failed_logins, member.locked_until) == (0, None)


def test_a_success_does_not_forget_attempts_counted_after_its_own(member):
    claim = Operator.claim_login_attempt(member.pk)
    Operator.claim_login_attempt(member.pk)  # a guess racing the owner
    Operator.release_login_claim(member.pk, claim)
    member.refresh_from_db()
    assert member.failed_logins == 2


@override_settings(LOGIN_MAX_FAILURES=2)
def test_a_locked_account_is_refused_without_counting(member):
    assert Operator.claim_login_attempt(member.pk).allowed
    locking = Operator.claim_login_attempt(member.pk)
    assert locking.allowed and locking.locked_until is not None
    refused = Operator.claim_login_attempt(member.pk)
    assert not refused.allowed
    assert refused.locked_until == locking.locked_until
    member.refresh_from_db()
    assert member.failed_logins == 2


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(username=st.text(max_size=300), password=st.text(max_size=300))
def test_no_user_name_or_password_makes_the_log_in_fail_with_an_error(member, username, password):
    LoginSource.objects.all().delete()
    r = post_login(from_address("192.0.2.60"), username, password)
    assert r.status_code == 200
    assert WRONG in r.content.decode() or LOCKED in r.content.decode()


def lock(operator: Operator) -> None:
    Operator.objects.filter(pk=operator.pk).update(
        failed_logins=0, locked_until=timezone.now() + timedelta(minutes=10)
    )


def test_saving_the_profile_keeps_a_lock_set_meanwhile(member):
    stale = Operator.objects.get(pk=member.pk)
    lock(member)
    form = ProfileForm({"first_name": "Mem", "last_name": "", "email": ""}, instance=stale)
    assert form.is_valid(), form.errors
    form.save()
    member.refresh_from_db()
    assert member.first_name == "Mem"
    assert member.is_locked()


def test_saving_an_operator_keeps_a_lock_and_a_password_set_meanwhile(owner, member):
    stale = Operator.objects.get(pk=member.pk)
    lock(member)
    fresh = Operator.objects.get(pk=member.pk)
    fresh.set_password("a new long passphrase")
    fresh.save(update_fields=["password"])
    data = {"username": "member", "first_name": "", "last_name": "", "email": "", "language": ""}
    form = OperatorForm(data, instance=stale, actor=owner)
    assert form.is_valid(), form.errors
    form.save()
    member.refresh_from_db()
    assert member.is_locked()
    assert member.check_password("a new long passphrase")


def test_changing_the_own_password_keeps_a_lock_set_meanwhile(member, monkeypatch):
    client = from_address("192.0.2.70")
    client.force_login(member)
    # The lock lands while the request is under way: after request.user was read.
    real_save = SetPasswordForm.save

    def save_after_a_lock(form, commit=True):
        lock(member)
        return real_save(form, commit)

    monkeypatch.setattr(SetPasswordForm, "save", save_after_a_lock)
    r = client.post(
        "/accounts/profile/password/",
        {
            "old_password": PASSWORD,
            "new_password1": "an entirely new passphrase",
            "new_password2": "an entirely new passphrase",
        },
    )
    assert r.status_code == 302
    member.refresh_from_db()
    assert member.check_password("an entirely new passphrase")
    assert member.is_locked()
