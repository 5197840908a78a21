"""User-authored templates: subject, text body and HTML body with merge fields.

Templates are Jinja in a sandbox stricter than Jinja's own: no attribute or item access, no
calls, no globals (so no ``range``, no ``lipsum``), no includes, a small allow-list of filters,
and size checks on ``*`` and ``**``. Merge fields are plain values: the customer's fields by
key, ``customer_id``, ``unsubscribe_url`` and ``view_in_browser_url``.

``validate_templates(mail)`` runs when a mail is saved, so an unknown merge field is an error the
operator sees then, not a blank in 100,000 sent messages. ``compile_content`` compiles a
delivery's frozen content once; ``CompiledMail.render`` renders one recipient.

Tracking is woven into the template source at compile time: tracked ``href``s and text URLs
become placeholders (``OKURU_LINK_<id>``) and the open pixel ``OKURU_OPEN``; upper-case names
cannot clash with field keys, which are lower-case. The URLs themselves come from a
``UrlBuilder`` — by default ``okuru.lib.signing.url_for`` — the seam where tracking plugs in.
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext as _
from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from okuru.lib import signing

UrlBuilder = Callable[[str, int, int | None], str]  # (kind, recipient_id, link_id) -> URL
EXTRA_FIELDS = ("customer_id", "unsubscribe_url", "view_in_browser_url")
PARTS = ("subject", "text_body", "html_body")
MAX_REPEAT = 10_000

SAFE_FILTERS = (
    "abs capitalize center d default e escape first float format int join last length lower "
    "replace round string striptags title trim truncate upper urlencode wordwrap"
).split()

# Tracked links: <a href> / <area href> with an http(s) URL and no merge field in it (a URL
# built per customer cannot be checked against the mail's own links at click time).
HREF_RE = re.compile(r"""(<(?:a|area)\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.I | re.S)
TEXT_URL_RE = re.compile(r"https?://[A-Za-z0-9\-._~:/?#\[\]@!$&()*+,;=%]+")
TRAILING_PUNCT = ".,;:!?)]"
BODY_END_RE = re.compile(r"</body\s*>", re.I)
PIXEL = (
    '<img src="{{ OKURU_OPEN }}" width="1" height="1" alt="" '
    'style="display:block;border:0;width:1px;height:1px">'
)


class Sandbox(SandboxedEnvironment):
    """Merge fields and filters only: every attribute is unsafe, nothing is callable."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, autoescape: bool):
        super().__init__(
            autoescape=autoescape,
            undefined=StrictUndefined,
            finalize=_finalize,
            auto_reload=False,
            keep_trailing_newline=True,
            cache_size=0,
        )
        self.globals.clear()
        self.filters = {k: v for k, v in self.filters.items() if k in SAFE_FILTERS}
        self.tests = {k: self.tests[k] for k in ("defined", "undefined", "none", "number")}

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        return False

    def is_safe_callable(self, obj: Any) -> bool:
        return False

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and (abs(right) > 64 if isinstance(right, int | float) else True):
            raise SecurityError("exponent too large")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(n, int):
                    if len(seq) * n > MAX_REPEAT:
                        raise SecurityError("result too large")
        return super().call_binop(context, operator, left, right)


def _finalize(value: Any) -> Any:
    return "" if value is None else value


_envs: dict[bool, Sandbox] = {}


def environment(html: bool) -> Sandbox:
    if html not in _envs:
        _envs[html] = Sandbox(autoescape=html)
    return _envs[html]


# ---------------------------------------------------------------------------------------------
# Validation at save time


def part_label(part: str) -> str:
    return {"subject": _("subject"), "text_body": _("text body"), "html_body": _("HTML body")}[part]


FORBIDDEN_NODES = (
    nodes.Getattr,
    nodes.Getitem,
    nodes.Call,
    nodes.Include,
    nodes.Import,
    nodes.FromImport,
    nodes.Extends,
    nodes.Macro,
    nodes.CallBlock,
    nodes.Block,
)


def parse_part(part: str, source: str) -> nodes.Template:
    env = environment(part == "html_body")
    try:
        ast = env.parse(source)
    except TemplateSyntaxError as e:
        raise ValidationError(
            {
                part: _("Template error in %(part)s at line %(line)s: %(error)s")
                % {"part": part_label(part), "line": e.lineno, "error": e.message}
            }
        ) from None
    for node in ast.find_all(FORBIDDEN_NODES):
        raise ValidationError(
            {
                part: _(
                    "The %(part)s may use merge fields and filters only (no attributes, "
                    "calls, includes or macros): line %(line)s."
                )
                % {"part": part_label(part), "line": node.lineno}
            }
        )
    for node in ast.find_all(nodes.Filter):
        if node.name not in SAFE_FILTERS:
            raise ValidationError(
                {
                    part: _("Unknown filter in %(part)s: %(name)s")
                    % {"part": part_label(part), "name": node.name}
                }
            )
    return ast


def merge_field_names(specs: Iterable[str]) -> frozenset[str]:
    return frozenset(specs) | frozenset(EXTRA_FIELDS)


def validate_templates(mail: Any, specs: Iterable[str] | None = None) -> None:
    """Raise ValidationError (keyed by part) for a syntax error, a forbidden construct or an
    unknown merge field in the mail's subject or bodies."""
    if specs is None:
        from okuru.customers.fields import catalogue

        specs = catalogue().keys()
    allowed = merge_field_names(specs)
    if not (mail.subject or "").strip():
        raise ValidationError({"subject": _("A mail needs a subject.")})
    if not (mail.text_body or "").strip() and not (mail.html_body or "").strip():
        raise ValidationError({"text_body": _("A mail needs a text body or an HTML body.")})
    for part in PARTS:
        source = getattr(mail, part) or ""
        ast = parse_part(part, source)
        unknown = sorted(meta.find_undeclared_variables(ast) - allowed)
        if unknown:
            raise ValidationError(
                {
                    part: _("Unknown merge field in %(part)s: %(name)s")
                    % {"part": part_label(part), "name": unknown[0]}
                }
            )


# ---------------------------------------------------------------------------------------------
# Links


def _clean_text_url(url: str) -> str:
    while url and url[-1] in TRAILING_PUNCT:
        url = url[:-1]
    return url


def _trackable(url: str) -> bool:
    return url.startswith(("http://", "https://")) and "{{" not in url and "{%" not in url


def find_links(html_body: str, text_body: str) -> list[str]:
    """Trackable URLs in order of first appearance (HTML first), each once."""
    seen: dict[str, None] = {}
    for m in HREF_RE.finditer(html_body or ""):
        url = htmllib.unescape(m.group(3)).strip()
        if _trackable(url):
            seen.setdefault(url)
    for url in _text_urls(text_body or ""):
        seen.setdefault(url)
    return [u for u in seen if len(u) <= 2000]


def _text_urls(text: str) -> Iterable[str]:
    for m in TEXT_URL_RE.finditer(text):
        url = _clean_text_url(m.group(0))
        following = text[m.start() + len(url) : m.start() + len(url) + 1]
        if following != "{" and _trackable(url):
            yield url


def rewrite_html(source: str, links: dict[str, int]) -> str:
    def sub(m: re.Match) -> str:
        url = htmllib.unescape(m.group(3)).strip()
        link_id = links.get(url)
        if link_id is None:
            return m.group(0)
        return f"{m.group(1)}{m.group(2)}{{{{ OKURU_LINK_{link_id} }}}}{m.group(2)}"

    return HREF_RE.sub(sub, source)


def rewrite_text(source: str, links: dict[str, int]) -> str:
    def sub(m: re.Match) -> str:
        url = _clean_text_url(m.group(0))
        following = source[m.start() + len(url) : m.start() + len(url) + 1]
        link_id = links.get(url)
        if link_id is None or following == "{":
            return m.group(0)
        return f"{{{{ OKURU_LINK_{link_id} }}}}" + m.group(0)[len(url) :]

    return TEXT_URL_RE.sub(sub, source)


def insert_pixel(source: str) -> str:
    ends = list(BODY_END_RE.finditer(source))
    if not ends:
        return source + PIXEL
    at = ends[-1].start()
    return source[:at] + PIXEL + source[at:]


# ---------------------------------------------------------------------------------------------
# Compiling and rendering


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str | None
    html: str | None
    unsubscribe_url: str = ""  # for the List-Unsubscribe header


def display_value(value: Any) -> Any:
    """A stored value as a merge field shows it."""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, datetime):
        return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bool):
        return "1" if value else "0"
    return value


class CompiledMail:
    """A delivery's templates, compiled once; ``render`` is the per-recipient hot path."""

    def __init__(
        self,
        content: dict[str, Any],
        specs: dict[str, Any],
        urls: UrlBuilder = signing.url_for,
    ):
        links = {url: int(link_id) for link_id, url in content.get("links", [])}
        self.link_ids = sorted(links.values()) if content.get("click_tracking") else []
        tracked = {u: i for u, i in links.items() if i in set(self.link_ids)}
        text = content.get("text_body") or ""
        html = content.get("html_body") or ""
        if tracked:
            text = rewrite_text(text, tracked)
            html = rewrite_html(html, tracked)
        self.open_tracking = bool(html.strip()) and bool(content.get("open_tracking"))
        if self.open_tracking:
            html = insert_pixel(html)
        self.urls = urls
        self.subject = environment(False).from_string(content.get("subject") or "")
        self.text = environment(False).from_string(text) if text.strip() else None
        self.html = environment(True).from_string(html) if html.strip() else None
        names: set[str] = set()
        for part in PARTS:
            ast = environment(part == "html_body").parse(content.get(part) or "")
            names |= meta.find_undeclared_variables(ast)
        # Only what the templates use is computed per recipient (fields, the browser URL).
        self.fields = [(key, specs[key]) for key in sorted(names) if key in specs]
        self.wants_view_url = "view_in_browser_url" in names

    def context(self, recipient_id: int, customer: dict[str, Any]) -> dict[str, Any]:
        data = customer.get("data") or {}
        ctx: dict[str, Any] = {}
        for key, spec in self.fields:
            raw = customer.get(spec.column) if spec.standard else data.get(key)
            ctx[key] = display_value(raw)
        ctx["customer_id"] = customer["id"]
        urls = self.urls
        ctx["unsubscribe_url"] = urls("unsubscribe", recipient_id, None)
        if self.wants_view_url:
            ctx["view_in_browser_url"] = urls("view", recipient_id, None)
        if self.open_tracking:
            ctx["OKURU_OPEN"] = urls("open", recipient_id, None)
        for link_id in self.link_ids:
            ctx[f"OKURU_LINK_{link_id}"] = urls("click", recipient_id, link_id)
        return ctx

    def render(self, recipient_id: int, customer: dict[str, Any]) -> Rendered:
        ctx = self.context(recipient_id, customer)
        return Rendered(
            subject=header_safe(self.subject.render(ctx)),
            text=self.text.render(ctx) if self.text else None,
            html=self.html.render(ctx) if self.html else None,
            unsubscribe_url=ctx["unsubscribe_url"],
        )


_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]+")


def header_safe(value: str) -> str:
    """One line: CR, LF and other control characters become a space, so a merge field can
    never start a new header."""
    return _CONTROL_RE.sub(" ", value).strip()
