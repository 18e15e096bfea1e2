"""A Django form's fields as a pydantic model, so that the JSON API's schema (and its OpenAPI
document) says what the form accepts, while the form stays the one place that validates: the
API checks the types here, then hands the values to the same form the pages use."""

from __future__ import annotations

from typing import Any, Literal

from django import forms
from pydantic import BaseModel, ConfigDict, Field, create_model


def field_annotation(field: forms.Field) -> Any:
    """The JSON type a form field takes."""
    if isinstance(field, forms.BooleanField):
        return bool
    if isinstance(field, forms.ModelChoiceField):
        return int
    if isinstance(field, forms.TypedChoiceField) and field.coerce is int:
        values = [int(value) for value, _ in field.choices if value != ""]
        return Literal[tuple(values)]  # type: ignore[valid-type]
    if isinstance(field, forms.ChoiceField):
        values = [str(value) for value, _ in field.choices if value != ""]
        return Literal[tuple(values)] if values else str  # type: ignore[valid-type]
    if isinstance(field, forms.IntegerField):
        return int
    return str


def field_info(field: forms.Field, *, required: bool, nullable: bool) -> tuple[Any, Any]:
    """(annotation, pydantic Field) for one form field."""
    annotation = field_annotation(field)
    constraints: dict[str, Any] = {}
    if annotation is str:
        if getattr(field, "max_length", None):
            constraints["max_length"] = field.max_length
        if isinstance(field, forms.URLField):
            constraints["json_schema_extra"] = {"format": "uri"}
        if isinstance(field, forms.DateField):
            # A date as the form reads it (YYYY-MM-DD); a number is not one.
            constraints["pattern"] = r"^\d{4}-\d{2}-\d{2}$"
            constraints["json_schema_extra"] = {"format": "date"}
    if isinstance(field, forms.IntegerField) and annotation is int:
        constraints["ge"] = -(2**63)
        constraints["le"] = 2**63 - 1
    description = str(field.help_text) if field.help_text else None
    if nullable:
        annotation = annotation | None
    if required:
        return annotation, Field(..., description=description, **constraints)
    # Optional: left out means unchanged (callers read what was sent: exclude_unset).
    return annotation, Field(None, description=description, **constraints)


def form_model(
    name: str,
    fields: dict[str, forms.Field],
    *,
    required: set[str] = frozenset(),  # type: ignore[assignment]
    nullable: set[str] = frozenset(),  # type: ignore[assignment]
    extra: dict[str, Any] | None = None,
    strict: bool = False,
) -> type[BaseModel]:
    """A model of these form fields (unknown keys refused), plus `extra` pydantic fields.
    `strict` for a JSON body: a number is not a string, 0 is not false."""
    definitions: dict[str, Any] = {
        field_name: field_info(
            field, required=field_name in required, nullable=field_name in nullable
        )
        for field_name, field in fields.items()
    }
    definitions.update(extra or {})
    return create_model(  # type: ignore[call-overload, no-any-return]
        name, __config__=ConfigDict(extra="forbid", strict=strict), **definitions
    )
