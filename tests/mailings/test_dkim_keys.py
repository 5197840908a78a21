"""DKIM keys through the screens and the CLI: add, show the DNS record, activate, delete —
operation-logged, and the private key never shown or logged."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import translation

from okuru.accounts.models import OperationLog
from okuru.mailings import dkim_keys
from okuru.mailings.models import DkimKey

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def english():
    with translation.override("en"):
        yield


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def assert_no_private_key_anywhere(text: str) -> None:
    for key in DkimKey.objects.all():
        body = "".join(key.private_key.splitlines()[1:-1])
        assert body[:40] not in text.replace("\n", "")
    assert "PRIVATE KEY" not in text


def test_the_cli_adds_lists_and_prints_dns_records():
    out = run("dkim", "add", "Shop.Example", "--algorithm", "ed25519", "--selector", "s1")
    assert "DKIM key s1._domainkey.shop.example added (active)" in out
    assert 's1._domainkey.shop.example. IN TXT ( "v=DKIM1; k=ed25519; p=' in out
    out = run("dkim", "add", "shop.example")
    assert "okuru-rsa-" in out and "(active)" in out
    dns = run("dkim", "dns", "shop.example")
    rsa_line = next(line for line in dns.splitlines() if "k=rsa" in line)
    strings = rsa_line.split("( ", 1)[1].rsplit(" )", 1)[0]
    assert strings.count('"') == 4 and all(len(s) <= 255 for s in strings.strip('"').split('" "'))
    listing = run("dkim", "list")
    assert "shop.example\ts1\ted25519\tactive\ts1._domainkey.shop.example" in listing
    assert_no_private_key_anywhere(out + dns + listing)
    entries = OperationLog.objects.filter(action="dkim.create")
    assert entries.count() == 2
    assert_no_private_key_anywhere(str(list(entries.values_list("detail", flat=True))))


def test_the_cli_rotates_and_deletes_keys():
    run("dkim", "add", "shop.example", "--algorithm", "ed25519", "--selector", "old")
    out = run("dkim", "add", "shop.example", "--algorithm", "ed25519", "--selector", "new")
    assert "(inactive until activated)" in out
    assert "new._domainkey.shop.example is now active" in run(
        "dkim", "activate", "shop.example", "new"
    )
    assert list(DkimKey.objects.filter(active=True).values_list("selector", flat=True)) == ["new"]
    assert OperationLog.objects.get(action="dkim.activate").detail["replaced"] == "old"
    run("dkim", "delete", "shop.example", "old")
    assert not DkimKey.objects.filter(selector="old").exists()
    assert OperationLog.objects.filter(action="dkim.delete").count() == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["add", "not a domain"], "Not a domain name: not a domain"),
        (["add", "shop.example", "--selector", "bad_sel!"], "A selector is letters, digits"),
        (["dns", "nothing.example"], "nothing.example has no DKIM key."),
        (["activate", "shop.example", "nope"], "No DKIM key nope for shop.example"),
    ],
)
def test_the_cli_says_what_is_wrong(args, message):
    with pytest.raises(CommandError) as e:
        run("dkim", *args)
    assert message in str(e.value)


def test_a_selector_cannot_be_used_twice_for_a_domain():
    run("dkim", "add", "shop.example", "--algorithm", "ed25519", "--selector", "s1")
    with pytest.raises(CommandError) as e:
        run("dkim", "add", "shop.example", "--algorithm", "ed25519", "--selector", "S1")
    assert "shop.example already has a key with the selector s1." in str(e.value)


def test_an_international_domain_is_stored_as_its_a_label():
    key = dkim_keys.add_key("ドメイン.example", "ed25519", None)
    assert key.domain == "xn--eckwd4c7c.example"


def test_the_screens_add_show_activate_and_delete(owner):
    client = Client()
    client.force_login(owner)
    r = client.post(
        "/mails/dkim/", {"domain": "shop.example", "algorithm": "rsa", "selector": "sel1"}
    )
    key = DkimKey.objects.get()
    assert r.status_code == 302 and r["Location"] == f"/mails/dkim/{key.pk}/"
    page = client.get(r["Location"]).content.decode()
    assert "sel1._domainkey.shop.example" in page
    for s in dkim_keys.dns_strings(key):
        assert f'"{s}"' in page
    assert_no_private_key_anywhere(page)
    assert_no_private_key_anywhere(client.get("/mails/dkim/").content.decode())
    r = client.post("/mails/dkim/", {"domain": "x y", "algorithm": "rsa"})
    assert r.status_code == 400 and "Not a domain name: x y" in r.content.decode()
    second = dkim_keys.add_key("shop.example", "rsa", None, selector="sel2")
    client.post(f"/mails/dkim/{second.pk}/activate/")
    assert list(DkimKey.objects.filter(active=True).values_list("selector", flat=True)) == ["sel2"]
    client.post(f"/mails/dkim/{key.pk}/delete/")
    assert list(DkimKey.objects.values_list("selector", flat=True)) == ["sel2"]


def test_operators_without_the_sending_right_cannot_see_keys(outsider):
    client = Client()
    client.force_login(outsider)
    assert client.get("/mails/dkim/").status_code == 403
