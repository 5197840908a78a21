"""The Japanese catalogue: every entry translated and not fuzzy, placeholders kept, the committed
.mo in step with the .po, and pages answering in the language the browser asks for."""

from __future__ import annotations

import ast
import gettext
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.db.models.fields import BLANK_CHOICE_LABEL
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext_noop

from tests.conftest import client_for

LC_MESSAGES = Path(__file__).resolve().parent.parent / "okuru" / "locale" / "ja" / "LC_MESSAGES"
PO = LC_MESSAGES / "django.po"
MO = LC_MESSAGES / "django.mo"
# Django 6.1's own Japanese catalogue lacks these; ours carries them. Naming them here is what
# keeps makemessages (which reads tests/ too) from dropping them from our catalogue.
DJANGO_STRINGS_MISSING_IN_JA = [gettext_noop("- Select an option -")]
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|%[sd]|\{\{ ?\w+ ?\}\}|\{\w*\}|<[^>]+>")


@dataclass
class Entry:
    line: int
    flags: set[str] = field(default_factory=set)
    ctx: str | None = None
    msgid: str = ""
    plural: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)


def read_po(path: Path) -> list[Entry]:
    """A small .po reader: enough for Django's makemessages output (no obsolete entries)."""
    entries: list[Entry] = []
    entry: Entry | None = None
    target: tuple[str, int] = ("msgid", 0)
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line:
            entry = None
            continue
        if entry is None:
            entry = Entry(line=n)
            entries.append(entry)
        if line.startswith("#,"):
            entry.flags |= {f.strip() for f in line[2:].split(",")}
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            _append(entry, target, ast.literal_eval(line))
        else:
            keyword, _sep, value = line.partition(" ")
            match = re.fullmatch(r"msgstr\[(\d+)\]", keyword)
            target = ("msgstr", int(match[1])) if match else (keyword, 0)
            if target[0] == "msgstr":
                entry.msgstr[target[1]] = ""
            _append(entry, target, ast.literal_eval(value))
    return entries


def _append(entry: Entry, target: tuple[str, int], text: str) -> None:
    name, index = target
    if name == "msgstr":
        entry.msgstr[index] += text
    elif name == "msgctxt":
        entry.ctx = (entry.ctx or "") + text
    elif name == "msgid_plural":
        entry.plural = (entry.plural or "") + text
    else:
        entry.msgid += text


def messages() -> list[Entry]:
    return [e for e in read_po(PO) if e.msgid]


def test_the_catalogue_has_no_untranslated_or_fuzzy_entries():
    entries = messages()
    assert len(entries) > 500
    untranslated = [e.msgid for e in entries if not all(e.msgstr.values())]
    fuzzy = [e.msgid for e in entries if "fuzzy" in e.flags]
    assert untranslated == []
    assert fuzzy == []
    header = read_po(PO)[0]
    assert "fuzzy" not in header.flags
    assert "Language: ja\n" in header.msgstr[0]


def test_translations_keep_their_placeholders_and_tags():
    wrong = []
    for e in messages():
        wanted = sorted(PLACEHOLDER.findall(e.msgid))
        for text in e.msgstr.values():
            if sorted(PLACEHOLDER.findall(text)) != wanted:
                wrong.append((e.msgid, text))
    assert wrong == []


def test_the_glossary_terms_are_used():
    ja = {(e.ctx, e.msgid): e.msgstr[0] for e in messages()}
    assert ja[(None, "Customer ID")] == "顧客ID"
    assert ja[(None, "Update key")] == "更新キー"
    assert ja[(None, "Database views")] == "データベース・ビュー"
    assert ja[(None, "Delivery results")] == "配信実績"
    assert ja[(None, "Bad format")] == "書式不正"
    assert ja[(None, "refusal flag")] == "受信拒否フラグ"
    assert ja[(None, "unsubscribe flags")] == "メルマガ解除フラグ"
    assert ja[(None, "Operation log")] == "操作ログ"
    assert ja[("filter conditions", "or")] == "または"


def test_the_committed_mo_holds_every_translation_of_the_po():
    with MO.open("rb") as f:
        catalog = gettext.GNUTranslations(f)
    stale = []
    for e in messages():
        if e.plural is not None and e.ctx is not None:
            got = catalog.npgettext(e.ctx, e.msgid, e.plural, 1)
        elif e.plural is not None:
            got = catalog.ngettext(e.msgid, e.plural, 1)
        elif e.ctx is not None:
            got = catalog.pgettext(e.ctx, e.msgid)
        else:
            got = catalog.gettext(e.msgid)
        if got != e.msgstr[0]:
            stale.append(e.msgid)
    assert stale == [], "django.mo is older than django.po: run scripts/i18n"


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="gettext's msgfmt is not installed")
def test_the_po_compiles_cleanly_with_msgfmt(tmp_path):
    out = subprocess.run(
        ["msgfmt", "--check", "-o", str(tmp_path / "django.mo"), str(PO)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    with (tmp_path / "django.mo").open("rb") as fresh, MO.open("rb") as committed:
        fresh_catalog = gettext.GNUTranslations(fresh)._catalog  # type: ignore[attr-defined]
        committed_catalog = gettext.GNUTranslations(committed)._catalog  # type: ignore[attr-defined]
    assert committed_catalog == fresh_catalog


def test_django_strings_missing_from_its_japanese_catalogue_are_translated(db):
    with translation.override("ja"):
        assert str(BLANK_CHOICE_LABEL) == "- 選択してください -"
        for text in DJANGO_STRINGS_MISSING_IN_JA:
            assert translation.gettext(text) != text


def test_the_login_page_follows_the_browser_language(client, db):
    ja = client.get(reverse("accounts:login"), headers={"accept-language": "ja"})
    en = client.get(reverse("accounts:login"), headers={"accept-language": "en"})
    assert ja.status_code == en.status_code == 200
    assert "ログイン" in ja.content.decode()
    assert '<html lang="ja">' in ja.content.decode()
    assert "Log in" in en.content.decode()
    assert "ログイン" not in en.content.decode()


def test_the_customer_list_is_in_japanese_for_a_japanese_browser(owner):
    body = client_for(owner, "ja").get(reverse("customers:list")).content.decode()
    assert "<h1>顧客</h1>" in body
    assert "顧客ID" in body
    assert "データベース・ビュー" in body
    assert "絞り込む" in body
    # The filter builder script takes its words from the page, translated.
    config = re.search(r'<script id="fb-config" type="application/json">(.*?)</script>', body, re.S)
    builder = json.loads(config[1])
    assert builder["ops"]["contains"] == "次を含む"
    assert builder["words"]["addCondition"] == "+ 条件"
    assert builder["words"]["or"] == "または"


def test_the_customer_list_stays_english_for_an_english_browser(owner):
    body = client_for(owner, "en").get(reverse("customers:list")).content.decode()
    assert "<h1>Customers</h1>" in body
    assert "Customer ID" in body
    assert "顧客" not in body


def _fresh_catalogue(tmp_path: Path) -> list[Entry]:
    """Our catalogue merged with every msgid the code and templates have today, as
    ``scripts/i18n`` would make it, in a copy of the project (the real one is left alone)."""
    root = Path(__file__).resolve().parent.parent
    copy = tmp_path / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.mo", "static", "media")
    for name in ("okuru", "tests"):
        shutil.copytree(root / name, copy / name, ignore=ignore)
    shutil.copy(root / "manage.py", copy / "manage.py")
    subprocess.run(
        [sys.executable, "manage.py", "makemessages", "-l", "ja", "--no-obsolete"],
        cwd=copy,
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(copy)},
    )
    return read_po(copy / "okuru" / "locale" / "ja" / "LC_MESSAGES" / "django.po")


@pytest.mark.skipif(not shutil.which("xgettext"), reason="gettext tools are not installed")
def test_every_user_visible_string_is_in_the_catalogue(tmp_path):
    missing = [
        (e.ctx, e.msgid)
        for e in _fresh_catalogue(tmp_path)
        if e.msgid and ("fuzzy" in e.flags or not all(e.msgstr.values()))
    ]
    assert missing == [], "strings without a Japanese translation (add them to django.po)"
