"""Generate the README's config reference table from the pydantic models in `components/config/`.

python scripts/config_reference.py          # print the table
python scripts/config_reference.py --write  # update README.md between the markers
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.config import NAMESPACE, Settings  # noqa: E402

START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def _type_name(annotation: Any) -> str:
    if annotation is SecretStr:
        return "secret string"
    args = [arg for arg in get_args(annotation) if arg is not type(None)]
    origin = getattr(annotation, "__origin__", None)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return "map of string"
    if getattr(annotation, "__name__", "") == "Literal" or str(annotation).startswith("typing.Literal"):
        return " \\| ".join(str(arg) for arg in get_args(annotation))
    if args and len(args) < len(get_args(annotation)):
        return _type_name(args[0])
    if args and str(annotation).startswith("typing.Annotated"):
        return _type_name(args[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object"
    name = getattr(annotation, "__name__", str(annotation))
    return {"str": "string", "int": "integer", "bool": "boolean", "datetime": "UTC time (ISO 8601)"}.get(name, name)


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return "see below"
        return f"`{json.dumps(value)}`"
    if field.default is PydanticUndefined:
        return "required"
    if field.default is None:
        return "unset"
    return f"`{json.dumps(field.default)}`"


def rows(model: type[BaseModel], prefix: str = "") -> list[str]:
    lines = []
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        child = _nested_model(field.annotation)
        kind = "object" if child is not None and "list" not in str(field.annotation) else _type_name(field.annotation)
        if child is not None and "list" in str(field.annotation):
            kind = "list of objects"
        lines.append(f"| `{key}` | {kind} | {_default(field)} | {field.description or ''} |")
        if child is not None:
            nested.append((f"{key}[]." if "list" in str(field.annotation) else f"{key}.", child))
    for child_prefix, child in nested:
        lines.extend(rows(child, child_prefix))
    return lines


def table() -> str:
    header = [
        f"All keys live in the `{NAMESPACE}:` namespace. Objects are set with `pulumi config set --path`; "
        "secrets with `--secret`.",
        "",
        "| key | type | default | description |",
        "|---|---|---|---|",
    ]
    return "\n".join(header + rows(Settings))


def main() -> None:
    generated = table()
    if "--write" not in sys.argv:
        print(generated)
        return
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = text.index(START) + len(START), text.index(END)
    readme.write_text(text[:start] + "\n" + generated + "\n" + text[end:])


if __name__ == "__main__":
    main()
