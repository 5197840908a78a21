"""What a receiving filter checks in a bulk sender's headers: List-Id beside
List-Unsubscribe, a Message-ID on the sender's domain, and clean header lines (ASCII, CRLF,
at most 998 octets) whatever the names and subjects hold."""

from __future__ import annotations

from email import message_from_bytes, policy

from hypothesis import given, settings
from hypothesis import strategies as st

from okuru.mailings.messages import MessageBuilder, list_id, text_from_html
from okuru.mailings.rendering import Rendered

# Japanese, CR/LF and other controls, long runs, and strings that look like encoded words.
hostile = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=1200),
    st.text(st.sampled_from('あ漢字ｶﾅ\r\n\t =?"\\<>,;:@()x'), max_size=1200),
    st.integers(0, 3000).map(lambda n: "a" * n),
)


def head_lines(data: bytes) -> list[bytes]:
    head = data.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    assert head.endswith(b"\r\n")
    return head.split(b"\r\n")[:-1]


@settings(max_examples=150, deadline=None)
@given(
    subject=hostile,
    from_name=hostile,
    topic_name=hostile,
    mail_name=hostile,
    topic_key=st.sampled_from(["", "spring", "Spring_Sale-2", "bad key!"]),
    text=st.one_of(st.none(), hostile),
    html=st.one_of(st.none(), hostile),
)
def test_every_header_line_is_ascii_crlf_and_at_most_998_octets(
    subject, from_name, topic_name, mail_name, topic_key, text, html
):
    content = {
        "from_address": "news@shop.example",
        "from_name": from_name,
        "reply_to": "help@shop.example",
        "topic_key": topic_key,
        "topic_name": topic_name,
        "mail_id": 12,
        "mail_name": mail_name,
    }
    builder = MessageBuilder(3, content)
    env = builder.build(
        4, "a@example.org", Rendered(subject, text, html), "https://x.example/u/4?t=\r\nX: y"
    )
    data = env.data
    # No bare CR or LF anywhere: every line ends in CRLF.
    assert data.count(b"\n") == data.count(b"\r\n") == data.count(b"\r")
    for line in head_lines(data):
        assert line.isascii() and len(line) <= 998, line[:80]
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    msg = message_from_bytes(data, policy=policy.default)
    assert not msg.defects
    assert msg["Message-ID"].endswith("@shop.example>")
    assert msg["List-Id"].endswith(">") and "list-id.shop.example>" in msg["List-Id"]
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # A CR/LF in a field can never start a header of its own.
    assert msg.get_all("X") is None and len(msg.get_all("Subject")) == 1


def test_the_list_id_names_the_topic_or_else_the_mail():
    topic = {"topic_key": "spring", "topic_name": "Spring news", "mail_id": 7, "mail_name": "M"}
    assert list_id(topic, "shop.example") == "Spring news <spring.list-id.shop.example>"
    mail = {"topic_key": "", "mail_id": 7, "mail_name": "週刊 お知らせ"}
    value = list_id(mail, "shop.example")
    assert value.startswith("=?UTF-8?B?") and value.endswith(" <mail-7.list-id.shop.example>")
    msg = message_from_bytes(f"List-Id: {value}\r\n\r\n".encode(), policy=policy.default)
    assert str(msg["List-Id"]) == "週刊 お知らせ <mail-7.list-id.shop.example>"
    assert list_id({}, "shop.example") == "<mail.list-id.shop.example>"
    quoted = {"topic_key": "a", "topic_name": 'Shop, "best"'}
    assert list_id(quoted, "s.example") == '"Shop, \\"best\\"" <a.list-id.s.example>'


def test_an_html_only_mail_gets_a_text_alternative():
    builder = MessageBuilder(1, {"from_address": "news@shop.example"})
    html = (
        "<html><head><style>p{color:red}</style></head><body><h1>春のセール</h1>"
        '<p>Hello&nbsp;there,<br>see <a href="https://shop.example/sale">the sale</a>.</p>'
        '<img src="https://shop.example/a.png" alt="Banner"></body></html>'
    )
    env = builder.build(2, "a@example.org", Rendered("Hi", None, html), "https://x/u")
    msg = message_from_bytes(env.data, policy=policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content()
    assert text == (
        "春のセール\n\nHello there,\nsee the sale ( https://shop.example/sale ).\n[Banner]\n"
    )
    assert "color" not in text_from_html(html)
