"""``okuru createoperator NAME``: create an operator with a generated password, printed once.

``--admin`` makes a superuser in the "Administrators" group, which holds every right. The
first-start path of ``okuru run`` uses the same functions.
"""

from __future__ import annotations

import secrets

from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand, CommandError

from okuru.accounts import actions
from okuru.accounts.models import ADMIN_GROUP, RIGHTS, Operator


def administrators_group() -> Group:
    """The group holding every right (created, or completed with rights added since)."""
    group, _ = Group.objects.get_or_create(name=ADMIN_GROUP)
    codes = [code for code, _ in RIGHTS]
    group.permissions.add(
        *Permission.objects.filter(content_type__app_label="accounts", codename__in=codes)
    )
    return group


def generate_password() -> str:
    # 20 URL-safe characters: passes the length, common and numeric password validators.
    return secrets.token_urlsafe(15)


def create_operator(username: str, email: str = "", admin: bool = False) -> tuple[Operator, str]:
    """Create an operator and return it with its generated password (kept only hashed)."""
    password = generate_password()
    operator = Operator(
        username=Operator.normalize_username(username),
        email=Operator.objects.normalize_email(email),
        is_staff=admin,
        is_superuser=admin,
    )
    operator.set_password(password)
    groups = [administrators_group()] if admin else []
    actions.create_operator(operator, groups, None, source="cli")
    return operator, password


class Command(BaseCommand):
    help = "Create an operator with a generated password, printed once."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--admin",
            action="store_true",
            help=f'superuser in the "{ADMIN_GROUP}" group (every right)',
        )

    def handle(self, *args, username: str, email: str, admin: bool, **options) -> None:
        if Operator.objects.filter(username=username).exists():
            raise CommandError(
                f'Operator "{username}" already exists. '
                f"To set a new password: okuru changepassword {username}"
            )
        operator, password = create_operator(username, email, admin)
        self.stdout.write(f"Created operator {operator.get_username()}")
        self.stdout.write(f"  password: {password}  (shown only now)")
