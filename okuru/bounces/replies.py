"""What an SMTP reply at send time says: the error kind, whether the address is dead (hard), and
whether the failure is permanent (5xx) or temporary (4xx, to be retried).

The sending worker hands over the reply as ``okuru.lib.smtp`` read it (code, enhanced status
code, text, and the command it answered); the rules are the DSN rules of ``kinds.classify``, so
a reply means the same whether it came back during the SMTP session or later in a bounce. Where
the two situations differ the reasons are:

* The command is known here, not guessed from a transcript. "User unknown" to MAIL FROM is about
  our sender, and after DATA (with no X.1.1 status) it is a content filter's answer: neither
  is held against the recipient's address, which list cleaning would exclude for good.
* A bare reply code with neither an enhanced status nor a wording we recognise is not evidence
  about the address. The DSN rules read a bare 550 as an unknown user (a bounce is at least the
  recipient's server speaking); at send time the answer comes from our relay first, so only
  552 (mailbox full) and 553 (mailbox name not allowed) keep their RFC 5321 meaning, a 554
  naming a refusal is a refusal, and anything else is "other" (+1, never list cleaning).
"""

from __future__ import annotations

from dataclasses import dataclass

from okuru.bounces import kinds


@dataclass(frozen=True)
class Verdict:
    kind: str  # one of ``kinds.KINDS``
    hard: bool  # the address itself cannot receive mail
    permanent: bool  # 5xx: failed now; 4xx: try again later

    @property
    def weight(self) -> int:
        """What the failure adds to the address's error count (0: temporary, nothing yet)."""
        return kinds.error_weight(self.kind) if self.permanent else 0


REFUSAL_WORDS = ("refused", "denied", "rejected")


def _bare_code_kind(code: int, text: str) -> str:
    if code == 552:
        return kinds.MAILBOX_FULL
    if code == 553:
        return kinds.BAD_FORMAT
    if code == 554 and any(w in text.lower() for w in REFUSAL_WORDS):
        return kinds.REFUSED
    return kinds.OTHER


def classify(code: int, status: str, text: str, command: str = "", domain: str = "") -> Verdict:
    """The verdict on a 4xx or 5xx reply with this code, enhanced status ("5.1.1" or ""), text,
    the SMTP command it answered ("MAIL", "RCPT", "DATA"; "" when not known) and the
    recipient's domain."""
    permanent = 500 <= code < 600
    if not (
        kinds.fixed_reason(text, domain)
        or kinds.text_reason(text)
        or (status and kinds.status_reason(status))
    ):
        kind = _bare_code_kind(code, text)
        return Verdict(kind, kind == kinds.BAD_FORMAT and permanent, permanent)
    kind, hard = kinds.classify(status, str(code), text, command or "RCPT", domain)
    return Verdict(kind, hard and permanent, permanent)
