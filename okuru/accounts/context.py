from django.http import HttpRequest

from okuru.accounts.models import RIGHTS


def nav(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "unread_notices": user.notifications.filter(read=False).count(),
        # The menus show only the links the operator may open: has_right, as the views check
        # it (an active operator holding the permission). One permissions query, then cached.
        "user_can": {code: user.has_right(code) for code, _label in RIGHTS},
    }
