"""Forms of the operator screens. Every password goes through AUTH_PASSWORD_VALIDATORS."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.models import Group, Permission
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy

from okuru.accounts.models import RIGHTS, Operator, group_label

LANGUAGE_CHOICES = [("", gettext_lazy("Browser language")), *settings.LANGUAGES]


def rights_permissions(codes: list[str]):
    return Permission.objects.filter(content_type__app_label="accounts", codename__in=codes)


def holds_right_with(operator: Operator, right: str, groups) -> bool:
    """Would ``operator`` hold ``right`` if their groups were ``groups``?"""
    if operator.is_active and operator.is_superuser:
        return True
    if operator.user_permissions.filter(codename=right).exists():
        return True
    return Permission.objects.filter(
        codename=right, content_type__app_label="accounts", group__in=list(groups)
    ).exists()


class GroupsField(forms.ModelMultipleChoiceField):
    def __init__(self, **kwargs):
        super().__init__(
            queryset=Group.objects.order_by("name"),
            required=False,
            widget=forms.CheckboxSelectMultiple,
            label=gettext_lazy("Permission groups"),
            **kwargs,
        )

    def label_from_instance(self, obj: Group) -> str:
        return group_label(obj.name)


class OwnColumnsForm(forms.ModelForm):
    """Saves only the columns the form shows. The operator row may have changed since it was
    read (a failed log-in counted, a lock set, a new password), and a full save would write
    those stale values back: unlocking an account under attack, or undoing a password change."""

    def save(self, commit: bool = True):
        instance = super().save(commit=False)
        if commit:
            if instance._state.adding:
                instance.save()
            else:
                shown = set(self._meta.fields)
                columns = [f.name for f in instance._meta.concrete_fields if f.name in shown]
                instance.save(update_fields=columns)
            self.save_m2m()
        return instance


class OperatorForm(OwnColumnsForm):
    """Edit an operator (not the password). ``actor`` is the admin doing it."""

    groups = GroupsField()
    language = forms.ChoiceField(
        choices=LANGUAGE_CHOICES, required=False, label=gettext_lazy("Language")
    )

    class Meta:
        model = Operator
        fields = ["username", "first_name", "last_name", "email", "language", "groups"]

    def __init__(self, *args, actor: Operator, **kwargs):
        super().__init__(*args, **kwargs)
        self.actor = actor

    def clean_groups(self):
        groups = self.cleaned_data["groups"]
        editing_self = self.instance.pk is not None and self.instance.pk == self.actor.pk
        if editing_self and not holds_right_with(self.instance, "operators_admin", groups):
            raise forms.ValidationError(
                _(
                    "You cannot remove your own operators admin right: "
                    "another administrator has to do that."
                )
            )
        return groups


class OperatorCreateForm(OperatorForm):
    password1 = forms.CharField(
        label=gettext_lazy("Password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password2 = forms.CharField(
        label=gettext_lazy("Password (again)"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self):
        data = super().clean()
        p1, p2 = data.get("password1"), data.get("password2")
        if p1 and p2 and p1 != p2:
            self.add_error("password2", _("The two passwords do not match."))
        elif p1:
            # Validate against the operator as entered (user-attribute similarity).
            candidate = Operator(
                username=data.get("username", ""),
                email=data.get("email", ""),
                first_name=data.get("first_name", ""),
                last_name=data.get("last_name", ""),
            )
            try:
                password_validation.validate_password(p1, candidate)
            except forms.ValidationError as e:
                self.add_error("password1", e)
        return data

    def save(self, commit: bool = True) -> Operator:
        operator = forms.ModelForm.save(self, commit=False)
        operator.set_password(self.cleaned_data["password1"])
        if commit:
            operator.save()
            self.save_m2m()
        return operator


class ProfileForm(OwnColumnsForm):
    language = forms.ChoiceField(
        choices=LANGUAGE_CHOICES, required=False, label=gettext_lazy("Language")
    )

    class Meta:
        model = Operator
        fields = ["first_name", "last_name", "email", "language"]


class GroupForm(forms.ModelForm):
    """A permission group: a name and a checkbox per right."""

    rights = forms.MultipleChoiceField(
        choices=RIGHTS,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label=gettext_lazy("Rights"),
    )

    class Meta:
        model = Group
        fields = ["name"]

    def __init__(self, *args, actor: Operator, **kwargs):
        super().__init__(*args, **kwargs)
        self.actor = actor
        if self.instance.pk:
            self.initial["rights"] = list(
                self.instance.permissions.filter(content_type__app_label="accounts").values_list(
                    "codename", flat=True
                )
            )

    def clean_rights(self):
        rights = self.cleaned_data["rights"]
        if (
            self.instance.pk
            and "operators_admin" not in rights
            and not keeps_admin_without_group(self.actor, self.instance)
        ):
            raise forms.ValidationError(
                _(
                    "You cannot take the operators admin right from this group: "
                    "you would lose it yourself."
                )
            )
        return rights

    def save(self, commit: bool = True) -> Group:
        group = super().save(commit=commit)
        if commit:
            group.permissions.set(rights_permissions(self.cleaned_data["rights"]))
        return group


def keeps_admin_without_group(operator: Operator, group: Group) -> bool:
    """Would ``operator`` still be an operators admin if ``group`` lost that right?"""
    return holds_right_with(operator, "operators_admin", operator.groups.exclude(pk=group.pk))


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        label=gettext_lazy("Token name"),
        help_text=gettext_lazy("What the token is for, e.g. the system that uses it."),
    )


class LogFilterForm(forms.Form):
    operator = forms.CharField(required=False, label=gettext_lazy("Operator"))
    action = forms.CharField(required=False, label=gettext_lazy("Action"))
    date_from = forms.DateField(
        required=False,
        label=pgettext_lazy("date range", "From"),
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    date_to = forms.DateField(
        required=False,
        label=pgettext_lazy("date range", "To"),
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    target = forms.CharField(required=False, label=gettext_lazy("Target contains"))

    def clean(self):
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            raise forms.ValidationError(_("The start date is after the end date."))
        return data
