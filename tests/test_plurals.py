"""English counts take their plural form from the number: "1 click", "2 clicks"."""

from __future__ import annotations

import pytest

from okuru.mailings.models import Delivery
from okuru.tracking.testing import sent_delivery

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "opens, clicks, shown",
    [(1, 1, ["1 open<", "1 click<"]), (2, 3, ["2 opens<", "3 clicks<"]), (0, 0, ["0 opens<"])],
)
def test_the_report_counts_opens_and_clicks_in_the_right_form(member_client, opens, clicks, shown):
    d = sent_delivery(2)
    Delivery.objects.filter(pk=d.pk).update(open_total=opens, click_total=clicks)
    page = member_client.get(f"/mails/deliveries/{d.pk}/").content.decode()
    for text in shown:
        assert text in page, text
    assert "1 opens<" not in page and "1 clicks<" not in page
