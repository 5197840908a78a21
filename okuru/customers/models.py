"""The customer master database.

Standard fields are real columns. User-defined fields (データベース設計) live in one JSON column
``data`` keyed by ``Field.key``: adding or deleting a field needs no schema change, imports write
one column, and a unique field gets an expression index on its JSON path (see ``storage.py``).
"""

from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class Topic(models.Model):
    """A newsletter topic: what an unsubscribe flag (メルマガ解除フラグ) refers to."""

    key = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)

    def __str__(self) -> str:
        return self.name


class Customer(models.Model):
    # Customer ID: AUTOINCREMENT on SQLite, an identity on PostgreSQL, so never reused.
    id = models.BigAutoField(primary_key=True, verbose_name=_("Customer ID"))
    email = models.CharField(_("PC e-mail"), max_length=254, blank=True, default="")
    mobile_email = models.CharField(_("mobile e-mail"), max_length=254, blank=True, default="")
    refused = models.BooleanField(_("refusal flag"), default=False)
    email_error_count = models.IntegerField(_("PC e-mail error count"), default=0)
    mobile_error_count = models.IntegerField(_("mobile e-mail error count"), default=0)
    unsubscribed = models.JSONField(_("unsubscribe flags"), default=list, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    # Not indexed: every import rewrites it, and an index would make every updated row move its
    # entry (on PostgreSQL it also rules out HOT updates). Nothing looks customers up by it; a
    # filter on it scans the table like any field filter.
    updated_at = models.DateTimeField(_("updated"), default=timezone.now)

    class Meta:
        verbose_name = _("customer")
        # Plain indexes for equality lookups by address. Declared here rather than with
        # db_index=True, which on PostgreSQL adds a second, varchar_pattern_ops index per column
        # for LIKE 'x%': filters use ILIKE, which cannot use it, and each index costs every
        # imported row an index insert.
        indexes = [
            models.Index(fields=["email"], name="customer_email_idx"),
            models.Index(fields=["mobile_email"], name="customer_mobile_email_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.email or self.mobile_email}"


class Field(models.Model):
    """A user-defined field of the master database."""

    class Type(models.TextChoices):
        TEXT = "text", pgettext_lazy("field type", "Text")
        NUMBER = "number", _("Number")
        DATE = "date", _("Date")
        DATETIME = "datetime", _("Date and time")
        EMAIL = "email", _("E-mail")
        SELECT = "select", _("Select")
        MULTISELECT = "multiselect", _("Multi-select")

    key = models.CharField(_("key"), max_length=63, unique=True)
    label = models.CharField(_("label"), max_length=200, unique=True)
    type = models.CharField(_("type"), max_length=16, choices=Type.choices)
    choices = models.JSONField(_("choices"), default=list, blank=True)
    required = models.BooleanField(_("required"), default=False)
    unique = models.BooleanField(_("unique"), default=False)
    position = models.IntegerField(default=0)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.label

    def clean(self) -> None:
        if not KEY_RE.match(self.key or ""):
            raise ValidationError(
                {"key": _("Use lower-case letters, digits and _ ; start with a letter.")}
            )
        from okuru.customers.fields import STANDARD_KEYS

        if self.key in STANDARD_KEYS:
            raise ValidationError({"key": _("This key is reserved for a standard field.")})
        if self.type in (self.Type.SELECT, self.Type.MULTISELECT) and not self.choices:
            raise ValidationError({"choices": _("A select field needs at least one choice.")})
        if self.unique and self.type in (self.Type.MULTISELECT,):
            raise ValidationError({"unique": _("A multi-select field cannot be unique.")})


class View(models.Model):
    """データベース・ビュー: a named saved filter plus an ordered list of field keys."""

    name = models.CharField(_("name"), max_length=200, unique=True)
    filter = models.JSONField(_("filter"), default=dict, blank=True)
    fields = models.JSONField(_("fields"), default=list)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_delivery_eligible(self) -> bool:
        from okuru.customers.fields import DELIVERY_REQUIRED

        have = set(self.fields)
        return any(all(k in have for k in keys) for keys in DELIVERY_REQUIRED)


class ExportSetting(models.Model):
    """A saved export: fields, order, filter or view, encoding."""

    name = models.CharField(_("name"), max_length=200, unique=True)
    fields = models.JSONField(default=list)
    filter = models.JSONField(default=dict, blank=True)
    view = models.ForeignKey(View, models.SET_NULL, null=True, blank=True)
    encoding = models.CharField(max_length=16, default="utf-8-sig")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
