"""Every screen in Japanese: no label (button, heading, label, table header, option, legend,
aria-label, title) left in English. The browser walk (tests/browser/test_screens_japanese.py)
adds what scripts draw; this one reads the server's HTML of every screen, fast."""

from __future__ import annotations

import pytest
from django.test import override_settings

from tests.conftest import client_for
from tests.screen_walk import english_only, label_texts, plant, planted_data, screens

pytestmark = pytest.mark.django_db


def test_no_screen_shows_an_english_label_in_japanese(owner, tmp_path):
    owner.language = "ja"
    owner.save(update_fields=["language"])
    with override_settings(MEDIA_ROOT=tmp_path):
        world = plant(owner, tmp_path)
        data = planted_data()
        client = client_for(owner, "ja")
        found, walked = [], 0
        for name, path in screens(world):
            r = client.get(path)
            if r.status_code in (302, 405) or "text/html" not in r.get("Content-Type", ""):
                continue
            assert r.status_code == 200, (name, path, r.status_code)
            walked += 1
            html = r.content.decode()
            found += [
                f"{path} <{tag}> {text.strip()!r}"
                for tag, text in label_texts(html)
                if english_only(text, data)
            ]
    assert walked >= 40
    assert found == [], "English labels on Japanese screens:\n" + "\n".join(sorted(set(found)))


def test_the_design_screen_names_every_type_in_japanese(owner):
    from okuru.customers import design

    design.add_field("memo", "メモ", "text")
    page = client_for(owner, "ja").get("/design/").content.decode()
    for word in ("文字型", "整数", "フラグ", "メールアドレス", "日時"):
        assert f"<td>{word}</td>" in page, word
    for code in ("integer", "flag", "multiselect", "datetime"):
        assert f"<td>{code}</td>" not in page, code


def test_the_administrators_group_is_shown_in_japanese(owner):
    from django.contrib.auth.models import Group

    from okuru.accounts.models import ADMIN_GROUP

    owner.groups.add(Group.objects.get_or_create(name=ADMIN_GROUP)[0])
    client = client_for(owner, "ja")
    for url in ("/accounts/groups/", "/accounts/operators/", "/accounts/profile/"):
        page = client.get(url).content.decode()
        assert "管理者" in page, url
        assert ">Administrators<" not in page, url
    assert "Administrators" in client_for(owner, "en").get("/accounts/groups/").content.decode()


def test_filter_words_are_synergys(owner):
    import json
    import re

    page = client_for(owner, "ja").get("/").content.decode()
    config = json.loads(re.search(r'id="fb-config"[^>]*>(.*?)</script>', page, re.S)[1])
    assert (config["ops"]["has_value"], config["ops"]["no_value"]) == ("値を持つ", "値を持たない")
