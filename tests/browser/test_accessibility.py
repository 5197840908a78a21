"""Every screen in Chromium, in Japanese (ja-JP), at 1280 and 390 px: axe-core finds no critical
or serious violation, and no label is left in English (what scripts draw included).

The screens come from the URL resolver, filled with the rights matrix's planted world
(tests/screen_walk.py). axe-core is vendored from npm (tests/browser/vendor/)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import override_settings

from tests.browser.conftest import log_in
from tests.conftest import client_for
from tests.screen_walk import english_only, label_texts, plant, planted_data, screens

pytestmark = [pytest.mark.browser, pytest.mark.slow]

AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text(encoding="utf-8")
WIDTHS = (1280, 390)
BLOCKING = ("critical", "serious")
# Rules that were broken once, held at zero whatever axe calls their impact.
ALWAYS = {"empty-table-header", "aria-allowed-role", "link-in-text-block", "select-name", "label"}


def run_axe(page) -> list[dict]:
    # evaluate() runs outside the page's Content-Security-Policy, which refuses inline scripts.
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE + "\n;true")
    return page.evaluate(
        """async () => {
          const r = await axe.run(document, {resultTypes: ["violations"]});
          return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map(n => n.target.join(" ") + " :: " + n.failureSummary)}));
        }"""
    )


@pytest.fixture
def walk(transactional_db, owner, live_server, page, tmp_path):
    owner.language = "ja"
    owner.save(update_fields=["language"])
    with override_settings(MEDIA_ROOT=tmp_path):
        world = plant(owner, tmp_path)
        data = planted_data()
        client = client_for(owner, "ja")
        walked = []
        for name, path in screens(world):
            r = client.get(path)
            if r.status_code == 200 and "text/html" in r.get("Content-Type", ""):
                walked.append((name, path))  # screens (not actions that answer GET with 405)
        log_in(page, live_server, owner)
        yield page, live_server.url, walked, data


def test_every_screen_passes_axe_and_is_in_japanese(walk):
    page, base, walked, data = walk
    problems: list[str] = []
    english: set[str] = set()
    seen = 0
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        for _name, path in walked:
            response = page.goto(base + path)
            assert response is not None and response.status == 200, (path, response)
            seen += 1
            page.wait_for_load_state("load")
            for v in run_axe(page):
                if v["impact"] in BLOCKING or v["id"] in ALWAYS:
                    problems.append(
                        f"{width}px {path} [{v['impact']}] {v['id']}: {v['help']}\n    "
                        + "\n    ".join(v["nodes"][:5])
                    )
            if width == WIDTHS[0]:
                html = page.content()
                english |= {
                    f"{path} <{tag}> {text.strip()!r}"
                    for tag, text in label_texts(html)
                    if english_only(text, data)
                }
    assert seen >= 2 * 40
    assert not problems, f"{len(problems)} axe violations:\n" + "\n".join(problems)
    assert not english, "English labels on Japanese screens:\n" + "\n".join(sorted(english))


def test_axe_is_the_vendored_4_x():
    assert AXE.startswith("/*! axe v4.")


def contrast(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    def lum(rgb):
        c = [x / 255 for x in rgb[:3]]
        c = [x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4 for x in c]
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]

    high, low = sorted([lum(a), lum(b)], reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_focus_ring_stands_out_and_a_skip_link_leads_to_the_content(
    transactional_db, owner, live_server, page
):
    owner.language = "ja"
    owner.save(update_fields=["language"])
    log_in(page, live_server, owner)
    page.goto(f"{live_server.url}/customers/new/")
    page.keyboard.press("Tab")
    skip = page.locator("a.skip-link")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    assert skip.inner_text() == "本文へ移動"
    assert skip.is_visible()
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    for selector in ("main input[type=text]", "main button[type=submit]", "main a"):
        page.locator(selector).first.focus()
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Tab")  # focus by keyboard: :focus-visible
        ring = page.evaluate(
            """() => { const s = getComputedStyle(document.activeElement);
              return [s.outlineStyle, s.outlineColor, s.outlineWidth]; }"""
        )
        assert ring[0] != "none", selector
        rgb = tuple(float(x) for x in ring[1][ring[1].index("(") + 1 : -1].split(",")[:3])
        for background in ((255, 255, 255), (0xF4, 0xF6, 0xF8)):
            assert contrast(rgb, background) >= 3, (selector, ring)


def test_the_filter_builders_comparison_is_named_as_a_comparison(
    transactional_db, owner, live_server, page
):
    owner.language = "ja"
    owner.save(update_fields=["language"])
    log_in(page, live_server, owner)
    page.goto(f"{live_server.url}/")
    page.locator(".fb-add button").first.click()
    op = page.locator("select.fb-op").first
    assert op.get_attribute("aria-label") == "比較条件"
