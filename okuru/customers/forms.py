"""Forms of the customer screens.

Customer values go through ``fields.parse_value``, the same parser as import, so the edit page
accepts and rejects exactly what an import would, with the same messages.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from okuru.bounces import suppression
from okuru.customers import exporter, filters
from okuru.customers.fields import (
    MULTI_SEPARATOR,
    FieldSpec,
    format_value,
    parse_value,
    row_value,
)
from okuru.customers.models import KEY_RE, Customer, Field, Topic, View

# ---------------------------------------------------------------------------------------------
# Customer edit


def _form_field(spec: FieldSpec, choice_labels: dict[str, str]) -> forms.Field:
    label = str(spec.label)
    if spec.type == "flag":
        return forms.BooleanField(label=label, required=False)
    if spec.type == "select":
        choices = [("", "—")] + [(c, c) for c in spec.choices]
        return forms.CharField(label=label, required=False, widget=forms.Select(choices=choices))
    if spec.type == "multiselect":
        choices = [(c, choice_labels.get(c, c)) for c in spec.choices]
        return _MultiField(
            label=label, required=False, widget=forms.CheckboxSelectMultiple(choices=choices)
        )
    widgets = {
        "email": forms.EmailInput(attrs={"autocomplete": "off"}),
        "date": forms.DateInput(attrs={"type": "date"}),
        "datetime": forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}),
        "integer": forms.TextInput(attrs={"inputmode": "numeric"}),
        "number": forms.TextInput(attrs={"inputmode": "decimal"}),
    }
    return forms.CharField(
        label=label, required=False, strip=False, widget=widgets.get(spec.type, forms.TextInput)
    )


class _MultiField(forms.Field):
    """A list of choices, checked by the field's own parser rather than by Django."""

    def to_python(self, value: Any) -> list[str]:
        return [str(v) for v in value] if value else []

    def has_changed(self, initial: Any, data: Any) -> bool:
        return sorted(initial or []) != sorted(self.to_python(data))


def _as_text(spec: FieldSpec, value: Any) -> Any:
    """A stored value as the form shows it."""
    if spec.type == "flag":
        return bool(value)
    if spec.type == "multiselect":
        return list(value or [])
    if spec.type == "text":
        return "" if value is None else str(value)
    return format_value(spec, value)


def _raw(spec: FieldSpec, value: Any) -> str:
    """A submitted form value as the text an import cell would hold."""
    if spec.type == "flag":
        return "1" if value else "0"
    if spec.type == "multiselect":
        return MULTI_SEPARATOR.join(value or [])
    return value or ""


class CustomerForm(forms.Form):
    """Every editable field of the catalogue. Only changed fields are parsed and written, so a
    field made required later does not block editing the others (import works the same way:
    only the columns in the file are touched)."""

    def __init__(
        self,
        specs: dict[str, FieldSpec],
        *args: Any,
        customer: Customer | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.customer = customer
        self.specs = {k: s for k, s in specs.items() if not s.readonly}
        topic_names = dict(Topic.objects.values_list("key", "name"))
        for key, spec in self.specs.items():
            self.fields[key] = _form_field(spec, topic_names if key == "unsubscribed" else {})
            # Required is checked by the field's parser; the mark is for the page only.
            self.fields[key].required_mark = spec.required
            if customer is not None:
                self.initial[key] = _as_text(spec, row_value(spec, customer))
        self.values: dict[str, Any] = {}

    def standard_fields(self) -> list[forms.BoundField]:
        return [self[k] for k, s in self.specs.items() if s.standard]

    def user_fields(self) -> list[forms.BoundField]:
        return [self[k] for k, s in self.specs.items() if not s.standard]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        creating = self.customer is None
        for key, spec in self.specs.items():
            if key in self.errors or (not creating and key not in self.changed_data):
                continue
            try:
                self.values[key] = parse_value(spec, _raw(spec, cleaned.get(key)))
            except ValueError as e:
                self.add_error(key, str(e))
                continue
            if spec.unique and self.values[key] not in (None, ""):
                self._check_unique(spec, self.values[key])
        return cleaned

    def _check_unique(self, spec: FieldSpec, value: Any) -> None:
        lookup = {spec.column: value} if spec.standard else {f"data__{spec.key}": value}
        others = Customer.objects.filter(**lookup)
        if self.customer is not None:
            others = others.exclude(pk=self.customer.pk)
        if others.exists():
            self.add_error(spec.key, _("Another customer already has this value."))

    def save(self) -> Customer:
        customer = self.customer or Customer(data={})
        for key, value in self.values.items():
            spec = self.specs[key]
            if spec.standard:
                setattr(customer, spec.column, value)
            elif value is None:
                customer.data.pop(key, None)
            else:
                customer.data[key] = value
        customer.updated_at = timezone.now()
        try:
            # The unique expression indexes are the last word when two edits race.
            with transaction.atomic():
                customer.save()
        except IntegrityError:
            raise forms.ValidationError(
                _("Another customer already has a value that must be unique.")
            ) from None
        # An address that complained or refused before (even as a deleted customer) refuses
        # again, whoever edits the record.
        customer.refused = customer.refused or bool(suppression.enforce([customer.pk]))
        return customer


# ---------------------------------------------------------------------------------------------
# Filters and field lists (shared by views and export)


def clean_filter(raw: str | None) -> dict:
    """A filter tree from the builder's hidden input, checked by compiling it."""
    try:
        tree = filters.parse_tree(raw)
        filters.compile_filter(tree)
    except filters.FilterError as e:
        raise forms.ValidationError(str(e)) from None
    return tree


def clean_field_list(keys: list[str], specs: dict[str, FieldSpec]) -> list[str]:
    result: list[str] = []
    for key in keys:
        if key not in specs:
            raise forms.ValidationError(_("Unknown field: %(key)s") % {"key": key})
        if key not in result:
            result.append(key)
    if not result:
        raise forms.ValidationError(_("Choose at least one field."))
    return result


class ViewForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name"), max_length=200)
    filter = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, specs: dict[str, FieldSpec], *args: Any, instance: View | None = None, **kw):
        super().__init__(*args, **kw)
        self.specs = specs
        self.instance = instance
        self.chosen = list(instance.fields) if instance else []
        if instance is not None:
            self.initial.update(name=instance.name, filter=json.dumps(instance.filter))
        if self.is_bound:
            self.chosen = self.data.getlist("fields")

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        others = View.objects.filter(name=name)
        if self.instance is not None:
            others = others.exclude(pk=self.instance.pk)
        if others.exists():
            raise forms.ValidationError(_("A view with this name already exists."))
        return name

    def clean_filter(self) -> dict:
        return clean_filter(self.cleaned_data.get("filter"))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        try:
            cleaned["fields"] = clean_field_list(self.chosen, self.specs)
        except forms.ValidationError as e:
            self.add_error(None, e)
        return cleaned


# ---------------------------------------------------------------------------------------------
# Database design


class _FieldOptionsForm(forms.Form):
    """What adding and editing a field share: choices (one per line), required, unique."""

    choices = forms.CharField(
        label=gettext_lazy("Choices"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=gettext_lazy("For select and multi-select: one choice per line."),
    )
    required = forms.BooleanField(label=gettext_lazy("Required"), required=False)
    unique = forms.BooleanField(
        label=gettext_lazy("Unique"),
        required=False,
        help_text=gettext_lazy("A unique field can be the update key of an import."),
    )

    def clean_choices(self) -> list[str]:
        lines = (line.strip() for line in self.cleaned_data.get("choices", "").splitlines())
        return list(dict.fromkeys(line for line in lines if line))


class FieldAddForm(_FieldOptionsForm):
    field_order = ["key", "label", "type", "choices", "required", "unique"]
    key = forms.CharField(
        label=gettext_lazy("Key"),
        max_length=63,
        help_text=gettext_lazy(
            "Used in files and merge fields. Lower-case letters, digits and _; cannot be changed."
        ),
    )
    label = forms.CharField(label=gettext_lazy("Label"), max_length=200)
    type = forms.ChoiceField(label=gettext_lazy("Type"), choices=Field.Type.choices)
    choices = forms.CharField(
        label=gettext_lazy("Choices"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=gettext_lazy("For select and multi-select: one choice per line."),
    )

    def clean_key(self) -> str:
        key = self.cleaned_data["key"].strip()
        if not KEY_RE.match(key):
            raise forms.ValidationError(
                _("Use lower-case letters, digits and _ ; start with a letter.")
            )
        return key


class FieldEditForm(_FieldOptionsForm):
    field_order = ["label", "choices", "required", "unique"]
    label = forms.CharField(label=gettext_lazy("Label"), max_length=200)

    def __init__(self, *args: Any, instance: Field, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.instance = instance
        self.initial.update(
            label=instance.label,
            choices="\n".join(instance.choices),
            required=instance.required,
            unique=instance.unique,
        )
        if instance.type not in (Field.Type.SELECT, Field.Type.MULTISELECT):
            del self.fields["choices"]
        if instance.type == Field.Type.MULTISELECT:
            del self.fields["unique"]

    def options(self) -> dict[str, Any]:
        """The changed options, as ``design.set_field_options`` keywords."""
        f = self.instance
        current = {"required": f.required, "unique": f.unique, "choices": list(f.choices)}
        return {
            k: self.cleaned_data[k]
            for k in ("required", "unique", "choices")
            if k in self.fields and self.cleaned_data[k] != current[k]
        }


class TopicForm(forms.Form):
    key = forms.SlugField(
        label=gettext_lazy("Key"),
        max_length=64,
        help_text=gettext_lazy("Used in files: letters, digits, - and _."),
    )
    name = forms.CharField(label=gettext_lazy("Name"), max_length=200)

    def __init__(self, *args: Any, instance: Topic | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.instance = instance
        if instance is not None:
            del self.fields["key"]
            self.initial["name"] = instance.name

    def clean_key(self) -> str:
        key = self.cleaned_data["key"]
        if Topic.objects.filter(key=key).exists():
            raise forms.ValidationError(_("A topic with this key already exists."))
        return key


# ---------------------------------------------------------------------------------------------
# Import and export

ENCODINGS_IN = [
    ("auto", gettext_lazy("Detect automatically")),
    ("utf-8", gettext_lazy("UTF-8")),
    ("cp932", gettext_lazy("Shift_JIS (CP932)")),
]
ENCODINGS_OUT = [
    ("utf-8-sig", gettext_lazy("UTF-8 with BOM (Excel)")),
    ("cp932", gettext_lazy("Shift_JIS (CP932)")),
]
MODES = [
    ("insert", gettext_lazy("Insert new customers only")),
    ("update", gettext_lazy("Update existing customers only")),
    ("upsert", gettext_lazy("Insert or update")),
]


def key_choices() -> list[tuple[str, str]]:
    """Customer ID or any unique field: what an import can match rows on."""
    uniques = Field.objects.filter(unique=True).values_list("key", "label")
    return [("customer_id", _("Customer ID"))] + [(k, f"{label} ({k})") for k, label in uniques]


class ImportForm(forms.Form):
    file = forms.FileField(label=gettext_lazy("CSV file"))
    mode = forms.ChoiceField(
        label=gettext_lazy("Mode"), choices=MODES, widget=forms.RadioSelect, initial="upsert"
    )
    key = forms.ChoiceField(label=gettext_lazy("Update key"))
    encoding = forms.ChoiceField(
        label=gettext_lazy("Encoding"), choices=ENCODINGS_IN, initial="auto"
    )
    dry_run = forms.BooleanField(
        label=gettext_lazy("Dry run: check the file and report, change nothing"),
        required=False,
        initial=True,
    )

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["key"].choices = key_choices()


class ExportForm(forms.Form):
    filter = forms.CharField(required=False, widget=forms.HiddenInput)
    view = forms.ModelChoiceField(
        label=gettext_lazy("Database view"),
        queryset=View.objects.all(),
        required=False,
        empty_label=gettext_lazy("— all customers —"),
    )
    encoding = forms.ChoiceField(
        label=gettext_lazy("Encoding"), choices=ENCODINGS_OUT, initial="utf-8-sig"
    )
    save_as = forms.CharField(
        label=gettext_lazy("Save these settings as"),
        required=False,
        max_length=200,
        help_text=gettext_lazy("Optional: a name to reuse these settings later."),
    )

    def __init__(
        self, specs: dict[str, FieldSpec], *args: Any, chosen: list[str] | None = None, **kw
    ):
        super().__init__(*args, **kw)
        self.specs = specs
        self.chosen = chosen or []
        if self.is_bound:
            self.chosen = self.data.getlist("fields")

    def clean_filter(self) -> dict:
        return clean_filter(self.cleaned_data.get("filter"))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        try:
            cleaned["fields"] = clean_field_list(self.chosen, self.specs)
        except forms.ValidationError as e:
            self.add_error(None, e)
        return cleaned

    def tree(self) -> dict:
        """The export's whole filter: the view's, narrowed by the builder's."""
        return exporter.combined_filter(self.cleaned_data["filter"], self.cleaned_data.get("view"))
