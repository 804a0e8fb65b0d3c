"""MkDocs hook: the reference pages, generated from the code at build time.

- ``reference/config.md``: every section and key of a run config, from the pydantic schema
  (:class:`deepworks.config.RunConfig` and the sections under it);
- ``reference/components.md``: every registered component of every registry with its options
  (:mod:`deepworks.options` reads them from signatures and docstrings);
- ``reference/cli.md``: every command's ``--help``, from the typer app.

A page may also hold ``<!-- results: examples/a.yaml examples/b.yaml -->``: the README's
results-table rows of those configs replace it, so a guide shows the README's figures and never
a copy that drifts. An example the README has no row for fails the build.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ("reference/config.md", "reference/components.md", "reference/cli.md")
RESULTS = re.compile(r"<!--\s*results:\s*(.*?)\s*-->")


def on_files(files, config):
    pages = {
        "reference/config.md": config_page,
        "reference/components.md": components_page,
        "reference/cli.md": cli_page,
    }
    for uri, make in pages.items():
        files.append(File.generated(config, uri, content=make()))
    return files


def on_page_markdown(markdown, page, config, files):
    if "<!-- results:" not in markdown:
        return markdown
    header, rows = readme_results()

    def table(match: re.Match) -> str:
        wanted = match.group(1).split()
        missing = [w for w in wanted if w not in rows]
        if missing:
            raise ValueError(f"{page.file.src_uri}: the README has no results for {missing}")
        return "\n".join([*header, *(rows[w] for w in wanted)])

    return RESULTS.sub(table, markdown)


# --- markdown helpers ----------------------------------------------------------------------


def cell(text: str) -> str:
    """Text for a table cell: pipes escaped, ``<`` escaped outside code spans."""
    parts = re.split(r"(`[^`]*`)", str(text))
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(part.replace("|", "\\|"))
        else:
            out.append(part.replace("|", "\\|").replace("<", "&lt;").replace("*", "\\*"))
    return "".join(out)


def code(text: str) -> str:
    text = str(text)
    return f"`{text}`".replace("|", "\\|") if text else ""


def options_table(options, first: str = "option") -> list[str]:
    lines = [f"| {first} | type | default | meaning |", "| --- | --- | --- | --- |"]
    for o in options:
        lines.append(f"| {code(o.name)} | {cell(o.type)} | {default(o)} | {cell(o.meaning)} |")
    return lines


def default(option) -> str:
    from deepworks.options import SECTION_DEFAULT

    if option.required:
        return "*required*"
    return "see below" if option.default == SECTION_DEFAULT else code(option.default)


def plain(text: str) -> str:
    """Docstring prose as markdown: RST double backticks become code spans."""
    return text.replace("``", "`")


# --- the README's results table ------------------------------------------------------------


def readme_results() -> tuple[list[str], dict[str, str]]:
    """(the header lines, {"examples/x.yaml": row}) of the README's results table."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| config |"))
    header = lines[start : start + 2]
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        match = re.match(r"\|\s*`([^`]+)`", line)
        if match:
            rows[match.group(1)] = line
    return header, rows


# --- the config reference ------------------------------------------------------------------


def config_sections():
    """(dotted key, pydantic model) of every section of a run config, top level first."""
    from deepworks.config import RunConfig
    from deepworks.options import nested_models

    found, todo = [], [("", RunConfig)]
    while todo:
        key, model = todo.pop(0)
        found.append((key, model))
        for name, nested in nested_models(model).items():
            field = model.model_fields[name]
            is_list = "list[" in str(field.annotation)
            todo.append((f"{key}.{name}".lstrip(".") + ("[]" if is_list else ""), nested))
    return found


def anchor(key: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", (key or "top level").lower()).strip("-")


OPEN_SECTIONS = {  # a section that names a component: its other keys are the component's options
    "data": "datasets",
    "model": "models",
    "task": "tasks",
    "train.optimizer": "optimizers",
    "train.scheduler": "schedulers",
    "train.loss": "losses",
    "train.augment[]": "augmentations",
    "train.callbacks[]": "callbacks",
}


def config_page() -> str:
    from deepworks.options import schema_options

    sections = config_sections()
    names = {model.__name__: key for key, model in sections}
    lines = [
        "# Config reference",
        "",
        "Every key of a run config (`deepworks train CONFIG`), generated from the pydantic schema",
        "in `src/deepworks/config.py`. Any key can be overridden on the command line with",
        "`--set key.path=value` (`--set train.epochs=5 --set model.hidden=[64]`). A section that",
        "names a component (`data`, `model`, `task`, the optimizer, scheduler, loss, callbacks and",
        "augmentations) also takes that component's own options: see the",
        "[component reference](components.md) or `deepworks describe NAME`.",
        "",
        "```yaml",
        (ROOT / "examples" / "digits_mlp.yaml").read_text().strip(),
        "```",
        "",
    ]
    for key, model in sections:
        title = f"`{key}`" if key else "Top level"
        lines += [f"## {title} {{#{anchor(key)}}}", ""]
        if key in OPEN_SECTIONS:
            kind = OPEN_SECTIONS[key]
            lines += [
                f"Names a registered component (`deepworks list {kind}`); its other keys are that "
                f"component's options: [{kind}](components.md#{kind}).",
                "",
            ]
        rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
        for o in schema_options(model):
            type_ = cell(o.type)
            for cls, target in names.items():
                type_ = re.sub(rf"\b{cls}\b", f"[{target}](#{anchor(target)})", type_)
            rows.append(f"| {code(o.name)} | {type_} | {default(o)} | {cell(o.meaning)} |")
        lines += [*rows, ""]
    return "\n".join(lines)


# --- the component reference ---------------------------------------------------------------


def components_page() -> str:
    import deepworks  # noqa: F401  (every component registers on import)
    from deepworks.cli.describe import NOTES, USE, sections
    from deepworks.options import component
    from deepworks.registry import REGISTRIES

    lines = [
        "# Component reference",
        "",
        "Every registered component, by registry, with its options: name, type, default and",
        "meaning, read from its signature and docstring (the same as `deepworks describe NAME`",
        "and `deepworks list KIND --verbose`). Options the framework passes itself (the",
        "parameters to optimize, the model to explain) are left out.",
        "",
        " · ".join(f"[{kind}](#{kind})" for kind in REGISTRIES),
        "",
    ]
    for kind, registry in REGISTRIES.items():
        lines += [f"## {kind} {{#{kind}}}", ""]
        if kind in NOTES:
            lines += [NOTES[kind], ""]
        for name in registry.names():
            doc = component(kind, name, sections().get(kind))
            lines += [f"### `{name}` {{#{kind}-{name}}}", "", plain(doc.summary), ""]
            if doc.text:
                lines += [plain(doc.text), ""]
            if kind in USE:
                lines += [f"Use: `{USE[kind].format(name=name)}`", ""]
            lines += [*options_table(doc.options), ""] if doc.options else ["No options.", ""]
    return "\n".join(lines)


# --- the CLI reference ---------------------------------------------------------------------


def cli_page() -> str:
    import typer

    from deepworks.cli import app

    root = typer.main.get_command(app)  # a click-style group (typer may bundle its own click)
    lines = [
        "# Command line reference",
        "",
        "Every `deepworks` command with its `--help`, generated from the command line itself.",
        "Bad input prints one line and exits with code 2; `--debug` anywhere on the command",
        "line shows the traceback instead.",
        "",
    ]

    def context(command, name, parent=None):
        return command.context_class(
            command, info_name=name, parent=parent, terminal_width=80, max_content_width=80
        )

    def walk(command, ctx, path):
        heading = "#" * min(len(path), 4) if len(path) > 1 else "##"
        lines.extend([f"{heading} `{' '.join(path)}`", "", "```text", command.get_help(ctx)])
        lines.extend(["```", ""])
        if hasattr(command, "list_commands"):
            for name in sorted(command.list_commands(ctx)):
                sub = command.get_command(ctx, name)
                if sub is not None and not getattr(sub, "hidden", False):
                    walk(sub, context(sub, name, ctx), [*path, name])

    walk(root, context(root, "deepworks"), ["deepworks"])
    return "\n".join(lines)
