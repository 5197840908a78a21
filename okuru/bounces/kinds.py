"""Error kinds (エラー種別) and how a delivery failure is classified into one.

The eight code names are the ones the UI shows (``ErrorKind``, the choices of every stored error
kind) and their weights on an address's error count live here, and only here.
"Hard" means the address itself cannot receive mail (unknown user, unknown domain, moved, accepts
no mail); a permanent refusal for content, policy or reputation fails that one message but says
nothing against the address, so it is not hard.

Classification reads three things, strongest first: the diagnostic text (a "user unknown" behind a
generic 5.7.1 is still an unknown user; a "mailbox full" behind 5.1.1 is still a full mailbox), the
enhanced status code (RFC 3463), and last the SMTP reply code.
"""

from __future__ import annotations

import re

from django.db import models
from django.utils.translation import gettext_lazy as _

BAD_FORMAT = "bad_format"
UNKNOWN_USER = "unknown_user"
REFUSED = "refused"
NO_DOMAIN = "no_domain"
SPAM = "spam"
MAILBOX_FULL = "mailbox_full"
LIST_CLEANING = "list_cleaning"
OTHER = "other"

KINDS = (
    BAD_FORMAT,
    UNKNOWN_USER,
    REFUSED,
    NO_DOMAIN,
    SPAM,
    MAILBOX_FULL,
    LIST_CLEANING,
    OTHER,
)


class ErrorKind(models.TextChoices):
    BAD_FORMAT = BAD_FORMAT, _("Bad format")
    UNKNOWN_USER = UNKNOWN_USER, _("Unknown user")
    REFUSED = REFUSED, _("Refused")
    NO_DOMAIN = NO_DOMAIN, _("Domain not found")
    SPAM = SPAM, _("Treated as spam")
    MAILBOX_FULL = MAILBOX_FULL, _("Mailbox full")
    LIST_CLEANING = LIST_CLEANING, _("Excluded by list cleaning")
    OTHER = OTHER, _("Other error")


# Error count weights (エラーカウント): the kinds that say the address is dead end delivery to it
# at once (an error threshold is far below 99); the others count one each.
HARD_ERROR_KINDS = frozenset({BAD_FORMAT, UNKNOWN_USER, LIST_CLEANING})
HARD_ERROR_WEIGHT = 99
SOFT_ERROR_WEIGHT = 1


def error_weight(kind: str) -> int:
    """What a permanent failure of ``kind`` adds to the address's error count."""
    return HARD_ERROR_WEIGHT if kind in HARD_ERROR_KINDS else SOFT_ERROR_WEIGHT


# Finer causes than the kinds; each maps onto one kind. Kept because "hard" does not follow from
# the kind alone: an address that accepts no mail (null MX) is refused, and hard.
REASON_KINDS = {
    "badformat": BAD_FORMAT,
    "userunknown": UNKNOWN_USER,
    "hasmoved": UNKNOWN_USER,
    "hostunknown": NO_DOMAIN,
    "notaccept": REFUSED,
    "mailboxfull": MAILBOX_FULL,
    "exceedlimit": MAILBOX_FULL,
    "mesgtoobig": OTHER,  # the message is over a size limit; the mailbox may be empty
    "spamdetected": SPAM,
    "virusdetected": SPAM,
    "badreputation": SPAM,
    "rejected": REFUSED,
    "filtered": REFUSED,
    "blocked": REFUSED,
    "policyviolation": REFUSED,
    "norelaying": REFUSED,
    "securityerror": REFUSED,
    "authfailure": REFUSED,
    "requireptr": REFUSED,
    "suspend": REFUSED,
    "toomanyconn": REFUSED,
    "expired": OTHER,
    "networkerror": OTHER,
    "systemerror": OTHER,
    "mailererror": OTHER,
    "contenterror": OTHER,
    "syntaxerror": OTHER,
    "undefined": OTHER,
}
HARD_REASONS = frozenset({"badformat", "userunknown", "hasmoved", "hostunknown", "notaccept"})

ENHANCED_RE = re.compile(r"(?<![\w.\-])([245])\.([0-7])\.(\d{1,3})(?!\.?\d)(?![\w\-])")


def _patterns(*phrases: str) -> re.Pattern[str]:
    return re.compile("|".join(phrases))


# Phrases per cause, tried in this order on the lower-cased diagnostic text. Specific causes come
# before the generic refusals, because refusals of an unknown user often say "rejected" too.
TEXT_REASONS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        # A DNS answer "try again" is a lookup that failed for now, not a domain that is gone.
        "networkerror",
        _patterns(r"not found, try again", r"name service error.{0,200}try again"),
    ),
    (
        "mesgtoobig",
        _patterns(
            r"message (?:size )?exceeds? (?:the )?(?:fixed |maximum )?(?:message )?size",
            r"message too (?:big|large)",
            r"message is too (?:big|large)",
            r"size (?:limit )?exceeded",
            r"exceeds? (?:the )?(?:maximum|max) (?:allowed )?(?:message )?size",
            r"message size exceeds",
            r"mail size limit",
        ),
    ),
    (
        "mailboxfull",
        _patterns(
            r"mailbox (?:is )?full",
            r"mail ?box (?:is )?(?:over|at) (?:its )?(?:quota|capacity|limit)",
            r"over ?quota",
            r"quota (?:exceeded|full|violation)",
            r"exceeded (?:storage|quota|the quota)",
            r"exceeds? (?:its |the )?(?:storage |disk )?quota",
            r"insufficient (?:disk )?(?:space|storage)",
            r"not enough (?:disk )?space",
            r"mailbox size limit",
            r"mailfolder is full",
            r"user(?:'s)? (?:mailbox|disk quota) (?:is )?(?:full|exceeded)",
            r"account is (?:full|over quota)",
            r"inbox is (?:out of storage|full)",
            r"recipient(?:'s)? (?:mailbox|inbox) (?:is )?full",
            r"(?:mailbox|account) (?:has )?exceeded",
            r"too much mail data",
            r"out of storage space",
            r"user is over (?:the )?quota",
            r"(?:mailbox|account) exceeds (?:the )?(?:allowed|maximum) size",
        ),
    ),
    (
        "exceedlimit",
        _patterns(r"message header size exceeds limit", r"exceeds? (?:the )?limit"),
    ),
    (
        "hasmoved",
        _patterns(r"has been replaced by", r"address has (?:moved|changed)", r"user has moved"),
    ),
    (
        "notaccept",
        _patterns(
            r"does not accept (?:any )?(?:e-?)?mail",
            r"accepts no (?:e-?)?mail",
            r"null mx",
            r"no mail service",
            r"indicated no smtp service",
            r"not accepting (?:any )?(?:e-?)?mail",
        ),
    ),
    (
        "rejected",
        _patterns(
            r"sender address rejected",
            r"sender (?:domain |address )?(?:is )?(?:invalid|rejected|unknown|denied|not allowed)",
            r"sender verify failed",
            r"domain of sender address",
            r"(?:bad|invalid) sender",
        ),
    ),
    (
        "suspend",
        _patterns(
            r"(?:account|mailbox|recipient|user|address)(?: address)? (?:has been |is |was )?"
            r"(?:temporarily )?(?:disabled|suspended|discontinued|deactivated|inactive|frozen|locked)",
            r"disabled (?:recipient|mailbox|account|user)",
        ),
    ),
    (
        "hostunknown",
        _patterns(
            r"host (?:or domain name )?(?:unknown|not found)",
            r"domain (?:name )?(?:not found|does not exist|doesn't exist|unknown|is not found)",
            r"unknown (?:domain|host)",
            r"no such domain",
            r"name or service not known",
            r"unroutable",
            r"unrouteable",
            r"nxdomain",
            r"no mx (?:record|host)",
            r"mx records point to non-existent",
            r"couldn't find any host",
            r"host \S+ not found",
            r"dns lookup failure",
            r"illegal host/domain",
            r"recipient domain must exist",
            r"domain (?:is )?not (?:reachable|resolvable)",
            r"non-?existent (?:domain|host)",
            r"dns (?:error|lookup failed).*(?:domain|host)",
            r"cannot resolve",
            r"no route to host",
            # A 553 that says a name "does not exist" without a local part names the domain.
            r"\b553 (?:[0-9.]+ )?[a-z0-9\-]+(?:\.[a-z0-9\-]+)+ does not exist",
        ),
    ),
    (
        "userunknown",
        _patterns(
            r"user ?unknown",
            r"unknown (?:user|recipient|mailbox|address|local[- ]part)",
            r"no such (?:user|mailbox|recipient|address|person|account)",
            r"(?:recipient|user|address|mailbox|account)(?: address)? (?:is )?(?:not found|unknown|not exist)",
            r"(?:recipient|user|address|mailbox|account|addressee)(?: name)? (?:is )?not (?:recognized|known|valid)",
            r"(?:does|did) not exist",
            r"doesn't exist",
            r"not a valid (?:user|mailbox|recipient)",
            r"invalid (?:recipient|mailbox|user)",
            r"no mailbox (?:here|by that name)",
            r"mailbox (?:does not exist|not available|unavailable|not found)",
            r"user not found",
            r"address not present",
            r"(?:account|mailbox) (?:has been )?(?:closed|terminated|removed|deleted)",
            r"recipient not found",
            r"not our customer",
            r"no account by that name",
            r"account (?:does not exist|not found|unknown)",
            r"no valid recipients",
            r"email account that you tried to reach does not exist",
            r"user (?:doesn't|does not) have (?:a |an )?\S+ account",
            r"bad destination mailbox",
            r"no such local user",
            r"is not a known user",
            r"unknown or illegal alias",
            r"mailbox unavailable",
            r"address (?:does not|doesn't) exist",
            r"unknown or invalid",
            r"user(?:name)? not (?:found|exist|known)",
            r"not listed in (?:domino directory|public name & address book)",
            r"destination addresses were unknown",
            r"no such person",
            r"this user doesn't have",
            r"invalid address",
        ),
    ),
    (
        "badformat",
        _patterns(
            r"bad (?:recipient )?address syntax",
            r"address syntax",
            r"malformed (?:address|recipient)",
            r"invalid address format",
        ),
    ),
    (
        "virusdetected",
        _patterns(r"virus", r"malware", r"infected", r"banned attachment", r"harmful content"),
    ),
    (
        "spamdetected",
        _patterns(
            r"spam",
            r"junk mail",
            r"unsolicited",
            r"bulk mail",
            r"content (?:filter|rejected)",
            r"message (?:content )?(?:rejected|refused) (?:as|due to) (?:spam|content)",
            r"scored? (?:too high|above)",
        ),
    ),
    (
        "badreputation",
        _patterns(r"reputation", r"ip (?:address )?has been (?:temporarily )?(?:rate )?limited"),
    ),
    (
        "authfailure",
        _patterns(
            r"dmarc",
            r"\bspf\b",
            r"dkim",
            r"sender (?:policy framework|authentication)",
            r"authentication (?:failed|required|failure)",
            r"unauthenticated",
        ),
    ),
    (
        "requireptr",
        _patterns(
            r"reverse (?:dns|lookup|hostname)",
            r"\bptr\b",
            r"no (?:rdns|reverse)",
            r"hostname (?:does not|doesn't) resolve",
            r"cannot find your hostname",
            r"ip name lookup failed",
            r"unresolvable",
            r"client host rejected: cannot find",
        ),
    ),
    (
        "blocked",
        _patterns(
            r"blacklist",
            r"blocklist",
            r"black list",
            r"block list",
            r"\brbl\b",
            r"dnsbl",
            r"spamhaus",
            r"spamcop",
            r"listed (?:at|on|in)",
            r"ip (?:address )?(?:blocked|block|rejected|banned|blacklisted)",
            r"access denied",
            r"connection (?:refused|rejected)",
            r"client host \[?[\d.]+\]? (?:blocked|rejected)",
            r"blocked",
            r"banned",
            r"poor reputation",
        ),
    ),
    (
        "norelaying",
        _patterns(
            r"relay(?:ing)? (?:access )?(?:denied|not permitted|prohibited)",
            r"not permitted to relay",
            r"unable to relay",
            r"relay not allowed",
            r"open relay",
            r"insecure mail relay",
        ),
    ),
    (
        "securityerror",
        _patterns(
            r"tls (?:required|is required)",
            r"encryption required",
            r"certificate",
            r"please use the smtp server",
        ),
    ),
    (
        "toomanyconn",
        _patterns(
            r"too many (?:connections|recipients|messages|mails|errors|hops)",
            r"rate limit",
            r"receiving mail (?:at a rate|too quickly)",
            r"try again later",
            r"throttl",
        ),
    ),
    (
        "suspend",
        _patterns(r"suspend", r"inactive", r"disabled", r"not active", r"locked"),
    ),
    (
        "policyviolation",
        _patterns(r"policy", r"prohibited", r"not allowed", r"not permitted"),
    ),
    (
        # Postfix's bare refusal of a recipient, with no reason given, is the unknown address.
        "userunknown",
        _patterns(r"recipient address rejected\.?(?:$| \(|\s*<|\s*\[)"),
    ),
    (
        "expired",
        _patterns(
            r"could not be delivered for \d+",
            r"cannot send message for",
            r"retry (?:time|timeout) (?:not reached|exceeded)",
            r"delivery time expired",
            r"message (?:has been|was) (?:queued|delayed) (?:too long|for)",
            r"expired",
            r"timed? ?out",
            r"giving up",
            r"have not been able to deliver",
            r"no answer",
        ),
    ),
    (
        "networkerror",
        _patterns(
            r"network", r"connection (?:lost|reset|closed)", r"loop", r"too many hops", r"dns"
        ),
    ),
    (
        "filtered",
        _patterns(r"filter", r"rejected by", r"refused"),
    ),
    (
        "rejected",
        _patterns(r"reject", r"denied", r"not allowed to send", r"sender"),
    ),
    (
        "mailererror",
        _patterns(r"mailer error", r"command died", r"exit (?:status|code)", r"pipe", r"program"),
    ),
    (
        "systemerror",
        _patterns(
            r"system error",
            r"internal error",
            r"server error",
            r"temporary failure",
            r"local error",
        ),
    ),
)

# Enhanced status codes (RFC 3463, with the IANA registry) whose meaning decides the cause when
# the text names none. X.1.1 and X.2.1 are the unknown or disabled mailbox; X.1.2 the domain.
STATUS_REASONS = {
    "1.0": "userunknown",
    "1.1": "userunknown",
    "1.2": "hostunknown",
    "1.3": "badformat",
    "1.4": "userunknown",
    "1.5": "userunknown",
    "1.6": "hasmoved",
    "1.7": "rejected",
    "1.8": "rejected",
    "1.9": "rejected",
    "1.10": "notaccept",
    "2.0": "filtered",
    "2.1": "userunknown",
    "2.2": "mailboxfull",
    "2.3": "exceedlimit",
    "2.4": "systemerror",
    "3.0": "systemerror",
    "3.1": "mailboxfull",
    "3.2": "notaccept",  # the host of the mailbox is not accepting messages
    "3.3": "systemerror",
    "3.4": "mesgtoobig",
    "3.5": "systemerror",
    "4.0": "networkerror",
    "4.1": "expired",
    "4.2": "networkerror",
    "4.3": "systemerror",
    "4.4": "notaccept",
    "4.5": "networkerror",
    "4.6": "networkerror",
    "4.7": "expired",
    "5.0": "syntaxerror",
    "5.1": "syntaxerror",
    "5.2": "syntaxerror",
    "5.3": "toomanyconn",
    "5.4": "syntaxerror",
    "5.5": "syntaxerror",
    "6.0": "contenterror",
    "6.1": "contenterror",
    "6.2": "contenterror",
    "6.3": "contenterror",
    "6.4": "contenterror",
    "6.5": "contenterror",
    "7.0": "blocked",
    "7.1": "rejected",
    "7.2": "rejected",
    "7.3": "securityerror",
    "7.4": "securityerror",
    "7.5": "securityerror",
    "7.6": "securityerror",
    "7.7": "securityerror",
    "7.8": "authfailure",
    "7.9": "securityerror",
    "7.13": "suspend",
    "7.14": "suspend",
    "7.17": "hasmoved",  # mailbox owner has changed (RFC 7293)
    "7.18": "hasmoved",  # domain owner has changed (RFC 7293)
    "7.23": "authfailure",
    "7.24": "authfailure",
    "7.25": "requireptr",
    "7.26": "authfailure",
    "7.27": "notaccept",
}

REPLY_REASONS = {
    "421": "blocked",
    "450": "mailboxfull",
    "451": "systemerror",
    "452": "mailboxfull",
    "550": "userunknown",
    "551": "hasmoved",
    "552": "mailboxfull",
    "553": "badformat",
    "554": "rejected",
    "556": "notaccept",
}


def text_reason(text: str) -> str:
    """The cause the diagnostic text names, or "" when it names none."""
    low = " ".join(text.lower().split())
    if not low:
        return ""
    for reason, pattern in TEXT_REASONS:
        if pattern.search(low):
            return reason
    return ""


def status_reason(status: str) -> str:
    """The cause an enhanced status code (X.Y.Z) names, or ""."""
    parts = status.split(".")
    if len(parts) != 3:
        return ""
    return STATUS_REASONS.get(f"{parts[1]}.{parts[2]}", "")


# Causes a text match only names loosely: a specific status code is more reliable than these.
WEAK_TEXT_REASONS = frozenset(
    {
        "filtered",
        "rejected",
        "mailererror",
        "systemerror",
        "networkerror",
        "policyviolation",
        "suspend",
    }
)


# Wordings that place a refusal at RCPT TO without naming the command: a transcript's
# "RCPT TO:<...>", "SMTP:RCPT" (Novell GroupWise and others), Yahoo's "[RCPT_TO]", Oracle
# Messaging Server's "Remote SMTP server has rejected address".
COMMAND_RE = re.compile(
    r"(?:in reply to|after|did not like our|response to|error (?:after|in)|>>>)\s*"
    r"(?:the |end of |final )?(data|rcpt to|rcpt|mail from|mail|helo|ehlo|connect)\b",
    re.I,
)


RCPT_HINT_RE = re.compile(
    r"\brcpt to:\s*<|\bsmtp:rcpt\b|\[rcpt_to\]|"
    r"server has rejected (?:the )?address",
    re.I,
)


COMMAND_SCAN = 64 * 1024


# qmail-remote's fixed wordings, each written for one step of the session (qmail-remote.c):
# "<host> does not like recipient." answers RCPT TO, "Connected to <host> but sender was
# rejected." MAIL FROM, "... but my name was rejected." HELO, "... but greeting failed." the
# connection, "<host> failed on DATA command." and "... failed after I sent the message." DATA;
# "no SMTP connection got far enough; most progress was RCPT TO response" names the step too.
QMAIL_COMMAND_RE = re.compile(
    r"(?P<rcpt> does not like recipient)|(?P<mail>but sender was rejected)|"
    r"(?P<helo>but my name was rejected)|(?P<conn>but greeting failed)|"
    r"(?P<data>failed on data command|failed after i sent the message)|"
    r"most progress was (?P<progress>rcpt to|mail from|data|helo|ehlo) response",
    re.I,
)
QMAIL_COMMANDS = {"rcpt": "RCPT", "mail": "MAIL", "helo": "HELO", "conn": "CONN", "data": "DATA"}


def command_of(text: str) -> str:
    """The SMTP command a failing reply answered ("DATA", "RCPT", "MAIL"), when the text says it:
    qmail's own wording for the step that failed, else the last one named before the first
    4xx/5xx reply (a session transcript), else the first one named after it ("... (in reply to
    RCPT TO command)")."""
    qmail = QMAIL_COMMAND_RE.search(text[:COMMAND_SCAN])
    if qmail is not None:
        if qmail.group("progress"):
            word = qmail.group("progress").upper().split(" ")[0]
            return {"EHLO": "HELO"}.get(word, word)
        return next(QMAIL_COMMANDS[k] for k, v in qmail.groupdict().items() if v)
    matches = list(COMMAND_RE.finditer(text[:COMMAND_SCAN]))
    if not matches:
        return "RCPT" if RCPT_HINT_RE.search(text[:COMMAND_SCAN]) else ""
    failed = FAILED_REPLY_RE.search(text[:COMMAND_SCAN])
    at = failed.start() if failed else len(text)
    before = [m for m in matches if m.start() < at]
    m = before[-1] if before else matches[0]
    word = m.group(1).upper().split(" ")[0]
    return {"EHLO": "HELO", "CONNECT": "CONN"}.get(word, word)


FAILED_REPLY_RE = re.compile(r"(?<![\w.#\-/:])[45][0-5]\d(?:[ \-]|$)", re.M)


# Wordings precise enough to outweigh an enhanced code that says otherwise: a refusal of the
# sender under X.1.0 ("other address status", which servers use for either address), and
# Gmail's disabled account under X.2.1 (which the status table reads as an unknown mailbox).
STRONG_TEXT_REASONS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "rejected",
        _patterns(
            r"\bsender (?:address )?(?:rejected|denied|refused|not allowed|blocked)",
            r"\bsender (?:address |domain )?(?:is )?(?:invalid|unknown)",
            r"domain of sender address \S+ does not exist",
        ),
    ),
    (
        "suspend",
        _patterns(
            r"(?:email )?account (?:that )?you tried to reach is (?:disabled|inactive|suspended)",
        ),
    ),
    # The recipient's own settings refuse the sender (Facebook's RCP-P2/P3 under 5.1.1): a
    # choice of the person, who still has the address.
    (
        "filtered",
        _patterns(r"refused due to recipient preferences", r"recipient'?s? privacy settings"),
    ),
)


def _strong_text_reason(text: str) -> str:
    low = " ".join(text.lower().split())
    for cause, pattern in STRONG_TEXT_REASONS:
        if pattern.search(low):
            return cause
    return ""


def _base_reason(status: str, reply_code: str, text: str) -> str:
    strong = _strong_text_reason(text)
    if strong:
        return strong
    by_text = text_reason(text)
    by_status = status_reason(status)
    if by_text and not (by_text in WEAK_TEXT_REASONS and by_status and not status.endswith(".0.0")):
        return by_text
    if by_status:
        return by_status
    if by_text:
        return by_text
    return REPLY_REASONS.get(reply_code, "undefined")


# Enhanced codes that themselves say the recipient's mailbox address is bad (RFC 3463: X.1.0 other
# address status, X.1.1 bad mailbox, X.1.3 bad mailbox syntax, X.1.10 the address has null MX).
MAILBOX_STATUSES = frozenset({"1.0", "1.1", "1.3", "1.10"})


def _subject_detail(status: str) -> str:
    return status.split(".", 1)[1] if status.count(".") == 2 else ""


# Phrases that some MTAs write about their OWN directory or account state (not a relayed reply),
# so they decide the cause whatever the SMTP command: Lotus Domino's directory lookups, Exchange
# 2003's MSEXCH diagnostic codes, McAfee appliances' recipient check, au (KDDI) EZweb's headline.
AUTHORITATIVE_REASONS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "userunknown",
        _patterns(
            r"not listed in (?:the )?domino directory",
            r"not listed in public name & address book",
            r"domino ?ディレクトリには見つかりません",
            r"msexch:.{0,200}\(000c05a6\)",
            r"<[^<>\s]+@[^<>\s]+>\.{3} user not exist",
            r"\buser \([^()\s]+@[^()\s]+\) unknown\.",
            # Gmail's own verdict in its "Address not found" notice.
            r"because the address couldn't be found\. check for typos",
            # Lotus Notes in Japanese: "not in the directory's list".
            r"ディレクトリのリストにありません",
            # Exchange Online's directory-based edge blocking: the address is not in the
            # tenant's directory (Microsoft documents 5.4.1 so).
            r"\b5\.4\.1 .{0,120}recipient address rejected: access denied",
            # Outlook.com's mailbox lookup, with its trailing diagnostic numbers.
            r"requested action not taken: mailbox unavailable \(-?\d+:\d+:-?\d+\)",
        ),
    ),
    ("filtered", _patterns(r"msexch:.{0,200}\(000c0595\)", r"cannot route mail to user")),
    ("systemerror", _patterns(r"msexch:.{0,200}\((?:00010256|000d06b5)\)")),
    ("networkerror", _patterns(r"msexch:.{0,200}\(00120270\)")),
    ("contenterror", _patterns(r"msexch:.{0,200}\((?:00050311|000502cc)\)")),
    ("mailboxfull", _patterns(r"the user\(s\) account is temporarily over quota")),
    (
        "suspend",
        _patterns(
            r"the user\(s\) account is disabled", r"the user\(s\) account is temporarily limited"
        ),
    ),
)

# Orange and La Poste (France) end their replies with a code such as "LPN007_416" or
# "OFR_506"; its last three digits name the cause.
FRANCE_PTT_RE = re.compile(r"\b(?:lpn|ofr|ouk)(?:_\d{3}|\d{3}[-_]\d{3})\b")
FRANCE_PTT_REASONS = {
    "102": "blocked",
    "103": "blocked",
    "104": "toomanyconn",
    "305": "securityerror",
    "401": "blocked",
    "402": "securityerror",
    "403": "rejected",
    "405": "rejected",
    "415": "rejected",
    "416": "userunknown",
    "417": "mailboxfull",
    "418": "userunknown",
    "420": "suspend",
    "421": "rejected",
    "426": "suspend",
    "505": "systemerror",
    "506": "spamdetected",
    "510": "blocked",
    "514": "mesgtoobig",
    "999": "blocked",
}

# au (KDDI) answers "550 : User unknown" (no address) for a recipient whose filter refuses the
# sender, and "550 <address>: User unknown" for an address that does not exist.
KDDI_DOMAINS = ("ezweb.ne.jp", "au.com")


def fixed_reason(text: str, domain: str = "") -> str:
    """A cause that a known MTA's or provider's own wording fixes, or "" when none does."""
    low = " ".join(text.lower().split())
    if not low:
        return ""
    for cause, pattern in AUTHORITATIVE_REASONS:
        if pattern.search(low):
            return cause
    m = FRANCE_PTT_RE.search(low)
    if m:
        cause = FRANCE_PTT_REASONS.get(m.group(0)[-3:])
        if cause:
            return cause
    if domain == "vtext.com" and "no such user here" in low:
        # Verizon's SMS gateway answers so for a number that has no account.
        return "userunknown"
    if domain.endswith(KDDI_DOMAINS):
        if "550 : user unknown" in low:
            return "filtered"
        if ">: user unknown" in low:
            return "userunknown"
    return ""


def reason(status: str, reply_code: str, text: str, command: str = "", domain: str = "") -> str:
    """The cause of a failure: one of ``REASON_KINDS``.

    ``command`` is the SMTP command the failing reply answered ("RCPT", "DATA", "MAIL" ...) when
    the notice says it. An "unknown user" is only believed when the status code names the mailbox
    (X.1.1) or the reply answered RCPT TO, where servers check addresses. The same words after
    DATA, or from a notice that does not say when they came, are a filter's answer about this
    message (e.g. a recipient who refuses the sender), which says nothing against the address; and
    to MAIL FROM they are about the sender."""
    fixed = fixed_reason(text, domain)
    if fixed:
        return fixed
    cause = _base_reason(status, reply_code, text)
    detail = _subject_detail(status)
    if cause == "userunknown" and detail == "1.6":
        # X.1.6: the mailbox has moved; "not our customer" and the like say the same.
        return "hasmoved"
    if cause == "userunknown":
        if command == "MAIL" and detail != "1.1":
            return "rejected"
        if detail in MAILBOX_STATUSES or command == "RCPT":
            return cause
        if command in ("HELO", "CONN"):
            return "blocked"
        return "filtered"
    if cause == "hostunknown" and command == "MAIL" and detail != "1.2":
        return "rejected"
    return cause


def classify(
    status: str, reply_code: str, text: str, command: str = "", domain: str = ""
) -> tuple[str, bool]:
    """(kind, hard) of a failure with this enhanced status code, SMTP reply code, text, the SMTP
    command the reply answered (found in the text when not given) and the recipient's domain."""
    cause = reason(status, reply_code, text, command or command_of(text), domain)
    return REASON_KINDS[cause], is_hard(cause, status)


def is_hard(cause: str, status: str) -> bool:
    """Whether a failure with this cause says the address cannot receive mail. A temporary (4.x.x)
    "accepts no mail" is a server that refuses for now, not an address without mail service."""
    if cause == "notaccept" and status.startswith("4"):
        return False
    return cause in HARD_REASONS
