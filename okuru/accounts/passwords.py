"""The password rule that Django's own validators leave out (``AUTH_PASSWORD_VALIDATORS``
lists them all): every path that sets a password runs ``validate_password``."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

# A password made of one unit this short, repeated ("aaaa…", "abab…", "abcabc…"), is weak
# however long it is.
MAX_REPEATED_UNIT = 4
MIN_DISTINCT = 3
ATTRIBUTES = ("username", "email", "first_name", "last_name")


def _is_repetition(text: str) -> bool:
    n = len(text)
    return any(
        n % size == 0 and text == text[:size] * (n // size)
        for size in range(1, min(MAX_REPEATED_UNIT, n // 2) + 1)
    )


def _attribute_values(user) -> list[str]:
    values = []
    for name in ATTRIBUTES:
        value = str(getattr(user, name, "") or "").casefold()
        values.append(value)
        if name == "email":
            values.append(value.partition("@")[0])
    # Short values (a two-letter first name) would match inside too many good passwords.
    return sorted({v for v in values if len(v) >= 3}, key=len, reverse=True)


class WeakPatternValidator:
    """Refuses what the stock validators let through: white space only, one character or a
    short run repeated (or fewer than three different characters), and the user name, e-mail
    or name with nothing but digits, symbols or spaces added."""

    def validate(self, password: str, user=None) -> None:
        visible = "".join(password.split())
        if not visible:
            raise ValidationError(
                _("The password cannot be only spaces."), code="password_only_whitespace"
            )
        folded = visible.casefold()
        # Both spellings: case folding can lengthen a unit ("ß" → "ss") past MAX_REPEATED_UNIT.
        if min(len(set(visible)), len(set(folded))) < MIN_DISTINCT or any(
            _is_repetition(text) for text in (visible, folded)
        ):
            raise ValidationError(
                _("The password cannot be one character or a short sequence repeated."),
                code="password_repetitive",
            )
        for value in _attribute_values(user):
            if value in folded and not any(c.isalpha() for c in folded.replace(value, "")):
                raise ValidationError(
                    _(
                        "The password cannot be your user name, e-mail address or name with "
                        "only digits or symbols added."
                    ),
                    code="password_user_attribute",
                )

    def get_help_text(self) -> str:
        return _(
            "Your password cannot be only spaces, one character repeated, or your user name "
            "with digits added."
        )
