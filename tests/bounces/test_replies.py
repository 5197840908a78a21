"""Classifying an SMTP reply at send time (``okuru.bounces.replies``): the same rules as a DSN's
where the reply says something, with the command it answered, and nothing held against the
address when it says nothing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from okuru.bounces import kinds, replies
from okuru.lib.smtp import Reply

RCPT_CASES = [
    # (code, text, kind, hard): the results sending has always given at RCPT TO.
    (550, "5.1.1 <x>: Recipient address rejected: User unknown", "unknown_user", True),
    (550, "5.1.2 Host unknown: no such domain", "no_domain", True),
    (552, "5.2.2 Mailbox full", "mailbox_full", False),
    (550, "5.7.1 Message rejected as spam", "spam", False),
    (550, "5.7.1 Relaying denied", "refused", False),
    (553, "5.1.3 Bad recipient address syntax", "bad_format", True),
    (554, "5.3.4 Message too big for system", "other", False),
    (550, "Requested action not taken: mailbox unavailable", "unknown_user", True),
    (550, "user unknown", "unknown_user", True),
    (550, "Domain not found", "no_domain", True),
    (554, "blocked using zen.spamhaus.org", "spam", False),
    (552, "Requested mail action aborted", "mailbox_full", False),
    (553, "Requested action not taken", "bad_format", True),
    (554, "Transaction failed: rejected", "refused", False),
    (550, "something else", "other", False),
    (554, "Transaction failed", "other", False),
]


@pytest.mark.parametrize("code,text,kind,hard", RCPT_CASES)
def test_it_classifies_a_refused_recipient(code, text, kind, hard):
    reply = Reply(code, text, "RCPT")
    verdict = replies.classify(code, reply.status, text, "RCPT")
    assert (verdict.kind, verdict.hard, verdict.permanent) == (kind, hard, True)


def test_it_holds_a_refusal_of_our_sender_not_against_the_recipient():
    verdict = replies.classify(550, "", "user unknown", "MAIL")
    assert (verdict.kind, verdict.hard, verdict.weight) == ("refused", False, 1)


def test_it_reads_user_unknown_after_data_as_a_filter_unless_the_status_names_the_mailbox():
    assert replies.classify(550, "", "User unknown", "DATA").kind == "refused"
    assert replies.classify(550, "5.1.1", "5.1.1 User unknown", "DATA").kind == "unknown_user"


def test_a_temporary_reply_is_not_permanent_and_weighs_nothing():
    verdict = replies.classify(452, "4.2.2", "4.2.2 Mailbox full", "RCPT")
    assert (verdict.kind, verdict.hard, verdict.permanent, verdict.weight) == (
        "mailbox_full",
        False,
        False,
        0,
    )


STATUS = st.builds(
    lambda c, s, d: f"{c}.{s}.{d}",
    st.sampled_from("45"),
    st.integers(0, 7),
    st.integers(0, 30),
)
WORDS = st.sampled_from(
    [
        "user unknown", "no such user", "mailbox full", "over quota", "spam", "blocked",
        "relay access denied", "domain not found", "message too big", "bad address syntax",
        "policy", "try again later", "rejected", "", "hello", "ユーザー不明",
    ]
)  # fmt: skip
COMMAND = st.sampled_from(["MAIL", "RCPT", "DATA", ""])


@given(
    st.integers(400, 599),
    st.one_of(st.just(""), STATUS),
    st.lists(WORDS, max_size=3).map(" ".join),
    COMMAND,
)
def test_every_reply_gets_a_kind_and_agrees_with_the_dsn_rules_when_it_says_something(
    code, status, text, command
):
    verdict = replies.classify(code, status, text, command)
    assert verdict.kind in kinds.KINDS and verdict.kind != kinds.LIST_CLEANING
    assert verdict.permanent == (code >= 500)
    assert not verdict.hard or verdict.permanent
    assert verdict.weight == (kinds.error_weight(verdict.kind) if verdict.permanent else 0)
    says_something = kinds.text_reason(text) or (status and kinds.status_reason(status))
    if says_something and verdict.permanent:
        kind, hard = kinds.classify(status, str(code), text, command or "RCPT")
        assert (verdict.kind, verdict.hard) == (kind, hard)
    if not says_something:
        # A bare code is not evidence against the address: never an unknown user.
        assert verdict.kind != kinds.UNKNOWN_USER


@given(STATUS, st.text(max_size=40))
def test_the_reply_reads_its_enhanced_status_code_of_its_own_class(status, rest):
    code = int(status[0] + "50")
    assert Reply(code, f"{status} {rest}").status == status
    other = "2" + status[1:]
    assert Reply(code, f"{other} {rest}").status in ("", *_statuses(rest, status[0]))


def _statuses(text: str, klass: str) -> list[str]:
    from okuru.lib.smtp import ENHANCED_RE

    return [m.group(0) for m in ENHANCED_RE.finditer(text) if m.group(1) == klass]


def test_the_reply_has_no_status_when_the_text_has_none():
    assert Reply(550, "Requested action not taken 192.0.2.1").status == ""
    assert Reply(550, "User unknown (5.1.1).").status == "5.1.1"
