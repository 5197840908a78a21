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

import functools
import html as htmllib
import inspect
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from jinja2 import StrictUndefined, Template, TemplateSyntaxError, meta, nodes
from jinja2.compiler import CodeGenerator
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from okuru.customers.fields import catalogue
from okuru.lib import signing

UrlBuilder = Callable[[str, int, int | None], str]  # (kind, recipient_id, link_id) -> URL
EXTRA_FIELDS = ("customer_id", "unsubscribe_url", "view_in_browser_url")
PARTS = ("subject", "text_body", "html_body")
# What one render may cost. A template over any of these fails: at save time against sample
# data, at send time for the one recipient whose data takes it over.
MAX_REPEAT = 10_000  # characters or items made by one `*` repetition
MAX_TEXT = 1_000_000  # characters of any one value
MAX_OUTPUT = 2_000_000  # characters a part renders to
MAX_WORK = 20_000_000  # characters produced in all, per message
MAX_ITEMS = 100_000  # items walked when a list is sized
MAX_ITERATIONS = 10_000  # loop iterations per message
MAX_INT_BITS = 1024
MAX_FORMAT_WIDTH = 1000
MAX_DEPTH = 50  # nesting of the template's syntax tree
RENDER_SECONDS = 1.0
LOOP_FILTER = "okuru_loop"  # added to loops by the compiler; not a filter authors may use

SAFE_FILTERS = (
    "abs capitalize center d default e escape first float format int join last length lower "
    "replace round string striptags title trim truncate upper urlencode wordwrap"
).split()
SAFE_TESTS = ("defined", "undefined", "none", "number")

# Tracked links: <a href> / <area href> with an http(s) URL and no merge field in it (a URL
# built per customer cannot be checked against the mail's own links at click time).
HREF_RE = re.compile(r"""(<(?:a|area)\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.I | re.S)
TEXT_URL_RE = re.compile(r"https?://[A-Za-z0-9\-._~:/?#\[\]@!$&()*+,;=%]+")
TRAILING_PUNCT = ".,;:!?)]"
BODY_END_RE = re.compile(r"</body\s*>", re.I)
# The open pixel: a 1×1 transparent GIF, which is not content. In a mail whose author put an
# image in the HTML it is an <img>, read by every mail program that shows images. In a mail
# without one it is the background of a 1×1 table cell, read by the programs that show
# background images (Gmail, Apple Mail, Outlook on the web, the new Outlook, Outlook for Mac,
# Thunderbird). Classic Outlook for Windows draws no such background, so the cell also holds
# the pixel as an <img> inside an Outlook conditional comment ([if mso]), the usual way to
# give Outlook's Word engine markup of its own; every other program reads a comment, as
# SpamAssassin does (untested here: no Outlook).
# A background is how HTML marks an image as decoration rather than content, and spam filters
# judge the content: SpamAssassin's HTML_IMAGE_ONLY_*
# fires on any <img> in HTML of under 3,200 bytes, so an <img> pixel made a short text mail
# score as an image-only one. With this choice the pixel never changes that verdict: a mail
# without images stays one, and a mail of the author's images is judged as it was written.
# The URL is in plain sight either way (SpamAssassin reads <td background> URLs too).
PIXEL_IMG = (
    '<img src="{{ OKURU_OPEN }}" width="1" height="1" alt="" '
    'style="display:block;border:0;width:1px;height:1px">'
)
PIXEL_BACKGROUND = (
    '<table role="presentation" border="0" cellpadding="0" cellspacing="0"><tr>'
    '<td background="{{ OKURU_OPEN }}" width="1" height="1">'
    '<!--[if mso]><img src="{{ OKURU_OPEN }}" width="1" height="1" alt="" border="0">'
    "<![endif]--></td></tr></table>"
)
# An <img> element as SpamAssassin's HTML parser (and a browser) sees one. Matched anywhere in
# the source, so one in a comment or an untaken {% if %} branch keeps the <img> pixel.
IMG_TAG_RE = re.compile(r"<img[\s/>]", re.I)


class LimitExceeded(SecurityError):
    """A template went over what one render may cost; the message says which limit."""


@dataclass
class Budget:
    """What one render (a message's subject and bodies) has left to spend.

    Limits on sizes and counts make the cost of a template deterministic, so the render
    against sample data at save time sees what sending will see; the deadline is the backstop
    for what the counts do not capture (a slow machine, a merge field much longer than the
    sample)."""

    deadline: float
    work: int = 0  # characters of text produced by operators, filters and output
    iterations: int = 0
    output: int = 0

    def spend(self, chars: int = 0, iterations: int = 0) -> None:
        self.work += chars
        self.iterations += iterations
        if self.iterations > MAX_ITERATIONS:
            raise LimitExceeded(
                _("The template repeats its loops more than %(n)s times in one message.")
                % {"n": f"{MAX_ITERATIONS:,}"}
            )
        if self.work > MAX_WORK:
            raise LimitExceeded(
                _("The template builds more than %(n)s characters of text for one message.")
                % {"n": f"{MAX_WORK:,}"}
            )
        if time.monotonic() > self.deadline:
            raise LimitExceeded(
                _("The template takes longer than %(s)s seconds to render one message.")
                % {"s": RENDER_SECONDS}
            )


_budget: ContextVar[Budget | None] = ContextVar("okuru_render_budget", default=None)


@contextmanager
def budget() -> Iterator[Budget]:
    """The render budget of one message: the one already running, or a new one."""
    current = _budget.get()
    if current is not None:
        yield current
        return
    token = _budget.set(Budget(deadline=time.monotonic() + RENDER_SECONDS))
    try:
        yield _budget.get()  # type: ignore[misc]
    finally:
        _budget.reset(token)


def _spend(chars: int = 0, iterations: int = 0) -> None:
    # Filters also run at compile time (constant folding), outside any render: only the size
    # checks apply there.
    b = _budget.get()
    if b is not None:
        b.spend(chars, iterations)


def _too_long(n: int) -> LimitExceeded:
    return LimitExceeded(
        _("The template makes a text of more than %(n)s characters.") % {"n": f"{MAX_TEXT:,}"}
    )


def _text_size(value: Any) -> int:
    """How many characters ``str(value)`` has, at most: strings and numbers exactly enough,
    containers walked (without recursion, visiting a bounded number of items), so that a list
    holding the same long text many times is refused before it is turned into text."""
    size, seen, stack = 0, 0, [value]
    while stack:
        v = stack.pop()
        seen += 1
        if seen > MAX_ITEMS:
            raise LimitExceeded(
                _("The template makes a list of more than %(n)s items.") % {"n": f"{MAX_ITEMS:,}"}
            )
        if isinstance(v, str):
            size += len(v) + 2
        elif isinstance(v, bool) or v is None or isinstance(v, float):
            size += 24
        elif isinstance(v, int):
            size += v.bit_length() // 3 + 2
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
            size += 2
        elif isinstance(v, list | tuple | set | frozenset):
            stack.extend(v)
            size += 2
        else:
            size += 100  # a loop object, an undefined value: a short repr
        if size > MAX_TEXT:
            raise _too_long(size)
    return size


def _check_result(value: Any) -> Any:
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise _too_long(len(value))
        _spend(len(value))
    elif isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > MAX_INT_BITS:
            raise _too_big()
    elif isinstance(value, list | tuple | dict):
        _spend(_text_size(value))
    return value


def _too_big() -> LimitExceeded:
    return LimitExceeded(
        _("The template makes a number larger than %(bits)s bits.") % {"bits": MAX_INT_BITS}
    )


def _bits(value: Any) -> int:
    return value.bit_length() if isinstance(value, int) else 0


# A printf conversion ("%-10.3f", "%(name)s"): its width and precision decide the output size.
_PRINTF_RE = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?.")


def _check_printf(fmt: str) -> None:
    for m in _PRINTF_RE.finditer(fmt):
        for n in m.groups():
            if n == "*" or (n and int(n) > MAX_FORMAT_WIDTH):
                raise LimitExceeded(
                    _("A format in the template asks for a width or precision over %(n)s.")
                    % {"n": MAX_FORMAT_WIDTH}
                )


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse an operation whose result would be too large before Python computes it: one
    big-number or string operation runs in C and cannot be interrupted."""
    if operator == "**":
        if not isinstance(right, int | float) or abs(right) > 64:
            raise LimitExceeded(_("An exponent in the template is larger than 64."))
        if isinstance(left, int) and right > 0 and _bits(left) * right > MAX_INT_BITS:
            raise _too_big()
    elif operator == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(n, int):
                if len(seq) * n > MAX_REPEAT or _text_size(seq) * n > MAX_TEXT:
                    raise LimitExceeded(
                        _(
                            "The template repeats a text or list into more than %(n)s characters or items."
                        )
                        % {"n": f"{MAX_REPEAT:,}"}
                    )
        if isinstance(left, int) and isinstance(right, int):
            if _bits(left) + _bits(right) > MAX_INT_BITS:
                raise _too_big()
    elif operator == "+":
        if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            _text_size(left)
            if len(left) + len(right) > MAX_TEXT or _text_size(left) + _text_size(right) > MAX_TEXT:
                raise _too_long(len(left) + len(right))
    elif operator == "%" and isinstance(left, str):
        _check_printf(left)
        _text_size(right)


def _checked_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` with its arguments checked before it runs and its result after."""
    skip = 1 if getattr(func, "jinja_pass_arg", None) else 0  # context/environment first
    signature = inspect.signature(func)

    @functools.wraps(func)
    def checked(*args: Any, **kwargs: Any) -> Any:
        values = [*args[skip:], *kwargs.values()]
        for v in values:
            _text_size(v)
        bound = signature.bind(*args, **kwargs).arguments
        check = _FILTER_CHECKS.get(name)
        if check is not None:
            check(bound)
        return _check_result(func(*args, **kwargs))

    return checked


def _cap(*names: str) -> Callable[[dict[str, Any]], None]:
    def check(bound: dict[str, Any]) -> None:
        for n in names:
            v = bound.get(n)
            if isinstance(v, int | float) and abs(v) > MAX_TEXT:
                raise LimitExceeded(
                    _("A filter in the template asks for a size over %(n)s.")
                    % {"n": f"{MAX_TEXT:,}"}
                )

    return check


def _check_wordwrap(bound: dict[str, Any]) -> None:
    _cap("width")(bound)
    wrap = bound.get("wrapstring") or "\n"
    if len(str(bound.get("s", ""))) * (1 + len(str(wrap))) > MAX_TEXT:
        raise _too_long(MAX_TEXT + 1)


def _check_join(bound: dict[str, Any]) -> None:
    value, sep = bound.get("value"), str(bound.get("d", ""))
    n = len(value) if isinstance(value, str | list | tuple | dict) else 0
    if _text_size(value) + n * len(sep) > MAX_TEXT:
        raise _too_long(MAX_TEXT + 1)


def _check_replace(bound: dict[str, Any]) -> None:
    s, old, new = str(bound.get("s", "")), str(bound.get("old", "")), str(bound.get("new", ""))
    count = s.count(old) if old else len(s) + 1
    limit = bound.get("count")
    if isinstance(limit, int) and limit >= 0:
        count = min(count, limit)
    if len(s) + count * max(0, len(new) - len(old)) > MAX_TEXT:
        raise _too_long(MAX_TEXT + 1)


def _check_format(bound: dict[str, Any]) -> None:
    _check_printf(str(bound.get("value", "")))


_FILTER_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "center": _cap("width"),
    "truncate": _cap("length", "leeway"),
    "wordwrap": _check_wordwrap,
    "join": _check_join,
    "replace": _check_replace,
    "format": _check_format,
}


def _loop(iterable: Any) -> Iterator[Any]:
    """Every ``for`` loop iterates through this: it counts the iterations of the render."""
    for item in iterable:
        _spend(iterations=1)
        yield item


def _join_checked(eval_ctx: Any, func: Callable[[Any], str], items: tuple) -> str:
    """The ``~`` operator, its parts' size checked before they are joined."""
    if sum(_text_size(x) for x in items) > MAX_TEXT:
        raise _too_long(MAX_TEXT + 1)
    return _check_result(func(items))


class _Generator(CodeGenerator):
    """Routes what Jinja compiles to plain Python through the sandbox's checks: every ``for``
    loop's iterable, and every ``~``."""

    def visit_Template(self, node: nodes.Template, frame: Any = None) -> None:
        for loop in node.find_all(nodes.For):
            if not getattr(loop, "okuru_counted", False):
                loop.iter = nodes.Filter(loop.iter, LOOP_FILTER, [], [], None, None)
                loop.okuru_counted = True  # type: ignore[attr-defined]
        super().visit_Template(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Any) -> None:
        if frame.eval_ctx.volatile:
            func = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            func = "markup_join"
        else:
            func = "str_join"
        self.write(f"environment.join_checked(context.eval_ctx, {func}, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _Template(Template):
    def render(self, *args: Any, **kwargs: Any) -> str:
        with budget():
            return super().render(*args, **kwargs)


class Sandbox(SandboxedEnvironment):
    """Merge fields and filters only: every attribute is unsafe, nothing is callable, and
    what a render may cost is bounded (see ``Budget`` and the checks above)."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})
    code_generator_class = _Generator
    template_class = _Template

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
        self.filters = {
            k: _checked_filter(k, v) for k, v in self.filters.items() if k in SAFE_FILTERS
        }
        self.filters[LOOP_FILTER] = _loop
        self.tests = {k: self.tests[k] for k in SAFE_TESTS}
        self.join_checked = _join_checked

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        return False

    def is_safe_callable(self, obj: Any) -> bool:
        return False

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return _check_result(super().call_binop(context, operator, left, right))

    def concat(self, pieces: Iterable[str]) -> str:  # type: ignore[override]
        """The output of a render: its size is capped, and the budget is checked between
        pieces, so a template that loops without building anything still stops in time."""
        out: list[str] = []
        size = 0
        for piece in pieces:
            size += len(piece)
            if size > MAX_OUTPUT:
                raise LimitExceeded(
                    _("The template's output is longer than %(n)s characters.")
                    % {"n": f"{MAX_OUTPUT:,}"}
                )
            _spend(len(piece))
            out.append(piece)
        return "".join(out)


def _finalize(value: Any) -> Any:
    if value is None:
        return ""
    if not isinstance(value, str | int | float):
        _text_size(value)  # a list printed as text: refused before Python builds the text
    return value


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
    # Block set and filter blocks collect their output out of reach of the output size check.
    nodes.AssignBlock,
    nodes.FilterBlock,
)


def _depth(ast: nodes.Node) -> int | None:
    """The first line where ``ast`` nests deeper than ``MAX_DEPTH`` (None: it does not),
    walked without recursion."""
    over: int | None = None
    stack = [(ast, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            line = getattr(node, "lineno", None) or 1
            over = line if over is None else min(over, line)
            continue
        stack.extend((child, depth + 1) for child in node.iter_child_nodes())
    return over


def _bracket_depth(env: Sandbox, source: str) -> int | None:
    """The first line where brackets nest deeper than ``MAX_DEPTH`` (None: they do not).
    Brackets leave no node in the syntax tree, but Jinja's parser recurses on each: checked on
    the tokens, so the limit does not depend on how deep the caller's stack already is."""
    depth = 0
    for line, kind, value in env.lex(source):
        if kind == "operator" and value in "([{":
            depth += 1
            if depth > MAX_DEPTH:
                return line
        elif kind == "operator" and value in ")]}":
            depth -= 1
    return None


def parse_part(part: str, source: str) -> nodes.Template:
    env = environment(part == "html_body")
    try:
        line = _bracket_depth(env, source)
        if line is not None:
            raise _too_deep(part, line)
        ast = env.parse(source)
    except TemplateSyntaxError as e:
        raise ValidationError(
            {
                part: _("Template error in %(part)s at line %(line)s: %(error)s")
                % {"part": part_label(part), "line": e.lineno, "error": syntax_message(e.message)}
            }
        ) from None
    except (RecursionError, MemoryError):
        raise _too_deep(part, None) from None
    line = _depth(ast)
    if line is not None:
        raise _too_deep(part, line)
    for node in ast.find_all(FORBIDDEN_NODES):
        raise ValidationError(
            {
                part: _(
                    "The %(part)s may use merge fields and filters only (no attributes, "
                    "calls, includes, macros or block tags): line %(line)s."
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
    for node in ast.find_all(nodes.Test):
        if node.name not in SAFE_TESTS:
            raise ValidationError(
                {
                    part: _("Unknown test in %(part)s: %(name)s (use one of: %(known)s)")
                    % {"part": part_label(part), "name": node.name, "known": ", ".join(SAFE_TESTS)}
                }
            )
    return ast


# Jinja's syntax errors, in the operator's language: (pattern of Jinja's English message, ours).
# Tokens Jinja names by description ("end of print statement") are rendered as the characters an
# operator types.
TOKEN_WORDS = {
    "end of print statement": "}}",
    "end of statement block": "%}",
    "name": gettext_lazy("a name"),
}
SYNTAX_MESSAGES = [
    (
        re.compile(r"unexpected end of template, expected '(?P<token>[^']+)'\.?$", re.I),
        gettext_lazy("the template ends before %(token)s closes it"),
    ),
    (
        re.compile(
            r"unexpected end of template\. Jinja was looking for the following tags: .*"
            r"The innermost block that needs to be closed is '(?P<tag>\w+)'\.$",
            re.I,
        ),
        gettext_lazy("the block {%% %(tag)s %%} is never closed (add {%% end%(tag)s %%})"),
    ),
    (
        re.compile(r"unexpected '(?P<char>[^']+)', expected '(?P<token>[^']+)'$"),
        gettext_lazy("“%(char)s” where %(token)s was expected"),
    ),
    (re.compile(r"unexpected '(?P<char>[^']+)'$"), gettext_lazy("unexpected “%(char)s”")),
    (
        re.compile(r"unexpected char (?P<q>['\"])(?P<char>.+)(?P=q) at \d+$"),
        gettext_lazy("a character that is not allowed here: “%(char)s”"),
    ),
    (
        re.compile(r"expected token '(?P<token>[^']+)', got '(?P<got>[^']+)'$"),
        gettext_lazy("“%(got)s” where %(token)s was expected"),
    ),
    (
        re.compile(r"Expected an expression, got '(?P<got>[^']+)'$"),
        gettext_lazy("a merge field or value is missing before “%(got)s”"),
    ),
    (
        re.compile(r"Encountered unknown tag '(?P<tag>\w+)'\.?$"),
        gettext_lazy("unknown tag {%% %(tag)s %%}"),
    ),
    (re.compile(r"tag name expected$"), gettext_lazy("a tag name is missing after {%")),
    (
        re.compile(r"Missing end of comment tag$", re.I),
        gettext_lazy("a comment {# is never closed with #}"),
    ),
]


def syntax_message(message: str) -> str:
    """Jinja's syntax error message in the active language (as it is, if not a known one)."""
    for pattern, ours in SYNTAX_MESSAGES:
        m = pattern.search(message or "")
        if m:
            values = {k: TOKEN_WORDS.get(v, v) for k, v in m.groupdict().items()}
            return str(ours) % values if values else str(ours)
    return message


def _too_deep(part: str, line: int | None) -> ValidationError:
    message = _("The %(part)s is nested more than %(n)s levels deep") % {
        "part": part_label(part),
        "n": MAX_DEPTH,
    }
    if line is not None:
        message += _(" (line %(line)s)") % {"line": line}
    return ValidationError({part: message + "."})


def compile_part(part: str, source: str) -> Template:
    """The compiled template; ValidationError for anything Python's compiler refuses (it has
    nesting limits of its own)."""
    try:
        return environment(part == "html_body").from_string(source)
    except TemplateSyntaxError as e:
        raise ValidationError(
            {
                part: _("Template error in %(part)s at line %(line)s: %(error)s")
                % {"part": part_label(part), "line": e.lineno, "error": syntax_message(e.message)}
            }
        ) from None
    except (RecursionError, MemoryError, SyntaxError):
        raise _too_deep(part, None) from None


def merge_field_names(specs: Iterable[str]) -> frozenset[str]:
    return frozenset(specs) | frozenset(EXTRA_FIELDS)


def validate_templates(mail: Any, specs: Iterable[str] | None = None) -> None:
    """Raise ValidationError (keyed by part) for a syntax error, a forbidden construct, an
    unknown merge field in the mail's subject or bodies, or a template that goes over a render
    limit (or fails) when rendered with sample data. ``specs``: field keys, or the catalogue."""
    if specs is None or not isinstance(specs, Mapping):
        full = catalogue()
        specs = full.keys() if specs is None else specs
    else:
        full = specs
    allowed = merge_field_names(specs)
    # Every part is checked, so that one save reports every problem of the content at once.
    errors: dict[str, Any] = {}
    if not (mail.subject or "").strip():
        errors["subject"] = [_("A mail needs a subject.")]
    if not (mail.text_body or "").strip() and not (mail.html_body or "").strip():
        errors["text_body"] = [_("A mail needs a text body or an HTML body.")]
    for part in PARTS:
        source = getattr(mail, part) or ""
        try:
            ast = parse_part(part, source)
            unknown = sorted(meta.find_undeclared_variables(ast) - allowed)
            if unknown:
                raise ValidationError(
                    {
                        part: _("Unknown merge field in %(part)s: %(name)s")
                        % {"part": part_label(part), "name": ", ".join(unknown)}
                    }
                )
            compile_part(part, source)
        except ValidationError as e:
            e.update_error_dict(errors)
    if errors:
        raise ValidationError(errors)
    content = {part: getattr(mail, part) or "" for part in PARTS}
    try:
        CompiledMail(content, full).render(0, sample_customer(full))
    except RenderError as e:
        raise ValidationError({e.part: e.message}) from None


def sample_customer(specs: Mapping[str, Any]) -> dict[str, Any]:
    """A customer with a typical value in every field, for the render at save time."""
    samples = {
        "number": 12345,
        "date": "2025-04-01",
        "datetime": timezone.now(),
        "email": "sample@example.com",
        "multiselect": [],
    }
    row: dict[str, Any] = {"id": 1, "data": {}}
    for key, spec in specs.items():
        if spec.type == "select" or spec.type == "multiselect":
            value: Any = spec.choices[0] if spec.choices else "sample"
            value = [value] if spec.type == "multiselect" else value
        else:
            value = samples.get(spec.type, "Sample text")
        if spec.standard:
            row[spec.column] = value
        else:
            row["data"][key] = value
    return row


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
    """``source`` with the open pixel before its last ``</body>`` (or at its end): an ``<img>``
    when the author's HTML has an image, a table cell's background when it has none."""
    pixel = PIXEL_IMG if IMG_TAG_RE.search(source) else PIXEL_BACKGROUND
    ends = list(BODY_END_RE.finditer(source))
    if not ends:
        return source + pixel
    at = ends[-1].start()
    return source[:at] + pixel + source[at:]


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
        self.subject = _compile("subject", content.get("subject") or "")
        self.text = _compile("text_body", text) if text.strip() else None
        self.html = _compile("html_body", html) if html.strip() else None
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
        """Raises RenderError when a part fails or goes over the render budget, which the
        three parts share."""
        ctx = self.context(recipient_id, customer)
        with budget():
            return Rendered(
                subject=header_safe(_render("subject", self.subject, ctx)),
                text=_render("text_body", self.text, ctx),
                html=_render("html_body", self.html, ctx),
                unsubscribe_url=ctx["unsubscribe_url"],
            )


class RenderError(ValueError):
    """A part of a mail could not be rendered for one recipient; ``message`` says which part
    and why, for the operator."""

    def __init__(self, part: str, error: Exception):
        if isinstance(error, RecursionError):
            reason = _("it is nested too deeply")
        elif isinstance(error, ZeroDivisionError):
            reason = _("a division by zero")
        elif isinstance(error, TemplateSyntaxError):
            reason = syntax_message(error.message or "")
        else:
            reason = str(error) or type(error).__name__
        self.part = part
        self.message = _("Template error in %(part)s: %(error)s") % {
            "part": part_label(part),
            "error": reason,
        }
        super().__init__(self.message)


def _compile(part: str, source: str) -> Template:
    try:
        return environment(part == "html_body").from_string(source)
    except Exception as e:  # content saved before a check existed: a clear error, not a crash
        raise RenderError(part, e) from e


def _render(part: str, template: Template | None, ctx: dict[str, Any]) -> str | None:
    if template is None:
        return None
    try:
        return template.render(ctx)
    except Exception as e:
        # Anything a template does wrong is this recipient's render failing (a division by
        # zero, a merge field of the wrong type, a limit): the message cannot be sent.
        raise RenderError(part, e) from e


_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]+")


def header_safe(value: str) -> str:
    """One line: CR, LF and other control characters become a space, so a merge field can
    never start a new header."""
    return _CONTROL_RE.sub(" ", value).strip()
