"""Experiment profiles (``config/*.yaml``): read, check against the schema, report every problem at once.

:func:`validate_config` checks a profile against ``schema.yaml`` (JSON Schema, shipped inside this package so a
non-editable install finds it; every object closed, so a misspelt key is named) and the rules a schema cannot say:

* numbers are finite: ``.nan`` / ``.inf`` are refused for λ, γ, learning rates, schedule factors, CGMQ budgets and
  gate options, accuracy tolerances (JSON Schema's ``number`` lets them through);
* a learning-rate schedule names each epoch once;
* paths (``report.template``, ``report.output``, ``data_dir``) use a safe set of characters (letters, digits,
  ``. _ + - /``); the ``report`` paths are relative without ``..``, and ``report.output`` is a Markdown file under
  ``results/`` or the top-level ``RESULTS.md`` (Snakemake deletes a job's output before the job runs);
* every dataset has a scheme to sweep, comparator seeds are among the dataset's seeds, the histogram seed is run.

Each problem names its key path, the bad value and what is allowed; :class:`ConfigError` carries them all. The
rules of a single run (e.g. ``channelwise`` only for the convolutional networks, a layer-importance target between
``min_bits`` and the start bits) are :class:`lqs_core.spec.RunConfig`'s: :func:`lqs_core.workflow.sweep.expand_runs`
builds the ``RunConfig`` of every run of a profile, so a profile is checked completely before any job runs.

Profiles are plain YAML data: :func:`read_yaml` reads them with :class:`StrictLoader` (no anchors or aliases, no
tags beyond YAML's standard ones, each key once) and refuses a file that asks Snakemake for YTE templating
(``__use_yte__``), see ``docs/workflow.md``. A numeric string (YAML 1.1 reads an unquoted ``1e-10`` as one) becomes
a number where the schema expects a number, and only there.

The Keras backend of a profile's jobs is its ``backend`` key (``tensorflow``, the default; ``jax``; ``torch``), a
dataset may have its own; :func:`output_name` is the folder name of the profile's results, figures and logs:
``<name>`` while every run is TensorFlow, ``<name>-<backend>`` otherwise, so runs of another backend never land
beside (or overwrite) the TensorFlow results. On the command line::

    python -m lqs_core.workflow.config output-name config/demo.yaml [--backend jax]    # demo-jax
    python -m lqs_core.workflow.config check config/demo.yaml       # the checks alone (exit status 1 if refused)
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import re
from importlib import resources
from typing import Mapping, Optional

import jsonschema
import yaml

#: The schema's file inside this package (found by ``importlib.resources`` in any kind of install).
SCHEMA_FILE = "schema.yaml"
#: The key that makes Snakemake evaluate a YAML file as a YTE template (Python expressions).
YTE_KEY = "__use_yte__"

#: The Keras 3 backends a profile may choose (``backend``); the first is the default and the reference.
BACKENDS = ("tensorflow", "jax", "torch")
DEFAULT_BACKEND = BACKENDS[0]

#: The most runs a profile may expand to unless it sets ``max_runs`` (the thesis profile has 2 700).
DEFAULT_MAX_RUNS = 5000

_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_INT_RE = re.compile(r"^[-+]?\d+$")

#: The characters of a path in a profile (no shell metacharacters, no spaces, no leading '-').
_SAFE_PATH_RE = re.compile(r"^(?!-)[A-Za-z0-9._+/-]+$")
SAFE_PATH_CHARS = "letters, digits and . _ + - /"
#: Where ``report.output`` may write besides a Markdown file under ``results/``: the repository's RESULTS.md.
REPORT_TOP_LEVEL = ("RESULTS.md",)

#: The tags a profile may write out: YAML's standard scalars and collections (no Python objects, no custom tags).
_YAML_TAG = "tag:yaml.org,2002:"
PLAIN_TAGS = frozenset(_YAML_TAG + name for name in ("str", "int", "float", "bool", "null", "seq", "map"))
_MERGE_TAG = _YAML_TAG + "merge"
#: Deepest nesting of lists and mappings in a profile (the shipped ones need a handful).
MAX_DEPTH = 32
#: Largest profile file read (the shipped ones have a few kB).
MAX_BYTES = 1 << 20


class ConfigError(ValueError):
    """An invalid workflow configuration; the message names every bad key and value."""


class YAMLRefused(yaml.MarkedYAMLError):
    """A construct :class:`StrictLoader` refuses, at its line and column; ``note`` says what is allowed."""


class StrictLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader for profiles: plain data, each construct checked while the file is composed.

    Refused: anchors and aliases (``&a`` / ``*a``: a 1 kB "billion laughs" file expands to gigabytes once walked),
    explicit tags beyond YAML's standard scalars and collections (``!!python/tuple``, ``!!binary``, ``!custom``),
    merge keys (``<<``), a key written twice in one mapping (YAML keeps the last one silently), nesting deeper than
    :data:`MAX_DEPTH`.
    """

    def __init__(self, stream):
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        _check_event(event, self.depth)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            _check_keys(self, node)
        return super().construct_mapping(node, deep=deep)


def _refuse(mark, problem: str, allowed: str):
    raise YAMLRefused(problem=problem, problem_mark=mark, note=allowed)


def _check_event(event, depth: int) -> None:
    """Refuse an alias, an anchor, a non-standard tag, or nesting beyond :data:`MAX_DEPTH` (before it is built)."""
    anchors = "plain values written out (anchors and aliases are refused: they can expand a small file without bound)"
    if isinstance(event, yaml.AliasEvent):
        _refuse(event.start_mark, f"alias '*{event.anchor}'", anchors)
    if getattr(event, "anchor", None) is not None:
        _refuse(event.start_mark, f"anchor '&{event.anchor}'", anchors)
    tag = getattr(event, "tag", None)
    if tag not in (None, "!") and tag not in PLAIN_TAGS:
        _refuse(event.start_mark, f"tag {tag.replace(_YAML_TAG, '!!')!r}", "untagged values, or the standard tags "
                + ", ".join(t.replace(_YAML_TAG, "!!") for t in sorted(PLAIN_TAGS)))
    if depth >= MAX_DEPTH:
        _refuse(event.start_mark, f"lists and mappings nested more than {MAX_DEPTH} deep",
                f"at most {MAX_DEPTH} levels")


def _check_keys(loader: StrictLoader, node) -> None:
    """Refuse a merge key (``<<``) and a key that a mapping has twice (naming the line of the first)."""
    seen = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            _refuse(key_node.start_mark, "merge key '<<'", "each key written out (merge keys need anchors)")
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.setdefault(key, key_node.start_mark)
        except TypeError:  # an unhashable key: SafeLoader's own error follows
            continue
        if first is not key_node.start_mark:
            _refuse(key_node.start_mark, f"key {key!r} appears twice in one mapping (first on line {first.line + 1})",
                    "each key once (YAML would keep only the last value, silently)")


def load_schema() -> dict:
    """The JSON Schema of a profile (``lqs_core/workflow/schema.yaml``)."""
    text = resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _read_text(path) -> str:
    """The text of a profile file; :class:`ConfigError` for a file that is missing, too large or not UTF-8."""
    try:
        if os.path.getsize(path) > MAX_BYTES:
            raise ConfigError(f"Invalid workflow config ({path}): {os.path.getsize(path)} bytes; allowed: at most "
                              f"{MAX_BYTES} bytes (a profile is a few kB of YAML)")
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as error:
        raise ConfigError(f"Invalid workflow config ({path}): byte {error.start} is not UTF-8 text; "
                          "allowed: a UTF-8 YAML (or JSON) file") from None
    except OSError as error:
        raise ConfigError(f"Invalid workflow config ({path}): cannot be read: {error.strerror}") from None


def _yaml_message(path, error: yaml.YAMLError) -> str:
    """One line for a YAML error: the file, line and column, what is wrong and what is allowed."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    if isinstance(error, YAMLRefused):
        return f"Invalid workflow config ({path}): {where}{error.problem}; allowed: {error.note}"
    problem = " ".join(p for p in (getattr(error, "context", None), getattr(error, "problem", None)) if p)
    return (f"Invalid workflow config ({path}): {where}{problem or error}; allowed: plain YAML (or JSON) data, "
            "one document")


def _refuse_yte(path, data) -> None:
    """Refuse a file that asks Snakemake to evaluate it as a YTE template (``__use_yte__``)."""
    if isinstance(data, Mapping) and YTE_KEY in data:
        raise ConfigError(
            f"Invalid workflow config ({path}): {YTE_KEY}: {data[YTE_KEY]!r} asks Snakemake to run the file as a YTE "
            "template (Python expressions); allowed: plain YAML data. lqs profiles are read as data by Snakemake and "
            "by lqs_core (make figures, the report, the tests) alike, so a template would mean two different "
            "things; write the values out. (Snakemake has already evaluated the template while reading the "
            "command line: run only config files you trust.)"
        )


def read_yaml(path) -> object:
    """The data of a YAML (or JSON) profile, read with :class:`StrictLoader`; :class:`ConfigError` naming the file
    (and the line and column) for a refused construct, a syntax error, a YTE template, an unreadable file."""
    text = _read_text(path)
    try:
        data = yaml.load(text, Loader=StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as error:
        raise ConfigError(_yaml_message(path, error)) from None
    _refuse_yte(path, data)
    return data


def load_config(path) -> dict:
    """Read a YAML/JSON profile and validate it (see :func:`validate_config`)."""
    return validate_config(read_yaml(path), source=f"workflow config ({path})")


def _normalize(value):
    """Plain dicts and lists, mapping keys as str."""
    if isinstance(value, Mapping):
        return {str(k): _normalize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalize(v) for v in value]
    return value


def _to_number(text: str):
    text = text.strip()
    return int(text) if _INT_RE.match(text) else float(text)


def _numeric_string_errors(errors):
    """The schema's type errors of a numeric string where a number (or integer) is expected, nested ones too."""
    for error in errors:
        types = error.validator_value if error.validator == "type" else ()
        types = [types] if isinstance(types, str) else list(types)
        if {"number", "integer"} & set(types) and isinstance(error.instance, str) and _FLOAT_RE.match(
                error.instance.strip()):
            yield error
        yield from _numeric_string_errors(error.context or [])


def _numbers_where_expected(config: dict, validator) -> dict:
    """``config`` with each numeric string turned into a number where the schema expects one (PyYAML reads an
    unquoted ``1e-10`` as a string), and nowhere else: a quoted ``name: "2024"`` stays a string."""
    for error in _numeric_string_errors(validator.iter_errors(config)):
        *parents, last = error.absolute_path
        node = config
        for key in parents:
            node = node[key]
        if isinstance(node[last], str):  # a string may fail several branches of a oneOf
            node[last] = _to_number(node[last])
    return config


def _finite_number(checker, instance) -> bool:
    """JSON Schema's ``number``, without NaN and ±inf (which YAML's ``.nan`` / ``.inf`` and JSON's ``NaN`` give)."""
    return jsonschema.Draft202012Validator.TYPE_CHECKER.is_type(instance, "number") and (
        not isinstance(instance, float) or math.isfinite(instance))


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("number", _finite_number),
)


def _key_path(parts) -> str:
    out = []
    for p in parts:
        out.append(f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p)))
    return "".join(out) or "<top level>"


def _resolve(node: Mapping, root: Mapping) -> Mapping:
    while isinstance(node, Mapping) and "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = root["$defs"][name]
    return node


def _bounds(node: Mapping) -> str:
    if "minimum" in node and "maximum" in node:
        return f" in [{node['minimum']}, {node['maximum']}]"
    parts = [f" {op} {node[key]}" for key, op in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="))
             if key in node]
    return "".join(parts)


def describe_allowed(node: Mapping, root: Mapping) -> str:
    """What a schema node allows, in words: ``a finite number >= 0``, ``an integer in [2, 8]``, ``null``, ..."""
    node = _resolve(node, root)
    for key in ("oneOf", "anyOf"):
        if key in node:
            return " or ".join(describe_allowed(branch, root) for branch in node[key])
    if "enum" in node:
        return "one of " + ", ".join(map(str, node["enum"]))
    types = node.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    words = {"number": "a finite number", "integer": "an integer", "null": "null", "string": "a string",
             "boolean": "true or false", "array": "a list", "object": "a mapping"}
    return " or ".join(words.get(t, t) + (_bounds(node) if t in ("number", "integer") else "")
                       for t in types) or "a value of the schema"


def _message(error, root: Mapping) -> str:
    where = _key_path(error.absolute_path)
    value = error.instance
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where}: {value!r} is not a finite number; allowed: {describe_allowed(error.schema, root)}"
    if error.validator == "additionalProperties":
        allowed = sorted((error.schema.get("properties") or {}).keys())
        extra = sorted(set(error.instance) - set(allowed))
        if error.schema.get("patternProperties"):
            pats = list(error.schema["patternProperties"])
            extra = [k for k in extra if not any(re.search(p, k) for p in pats)]
        keys = ", ".join(repr(k) for k in extra)
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"{where}: unknown key {keys}{hint}"
    if error.validator == "enum":
        return f"{where}: {value!r} is not one of {', '.join(map(str, error.validator_value))}"
    if error.validator in ("minimum", "maximum", "exclusiveMinimum"):
        op = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">"}[error.validator]
        return (f"{where}: {value!r} must be {op} {error.validator_value}; "
                f"allowed: {describe_allowed(error.schema, root)}")
    if error.validator == "oneOf" and error.context:
        # Name the most specific reason (e.g. a negative λ rather than "not valid under any of the given schemas").
        best = sorted(error.context, key=lambda e: (e.validator == "type", -len(e.absolute_path)))[0]
        if best.validator != "type":
            return _message(best, root)
        return f"{where}: {value!r} is not allowed; allowed: {describe_allowed(error.schema, root)}"
    return f"{where}: {error.message}"


def path_problem(key: str, value, base: str, example: str = "RESULTS.md") -> Optional[str]:
    """Why ``value`` is no relative path inside ``base`` written with :data:`SAFE_PATH_CHARS` (None if it is one)."""
    allowed = f"allowed: a relative path inside {base} without '..', of {SAFE_PATH_CHARS} (e.g. {example!r})"
    if not isinstance(value, str) or not value.strip():
        return f"{key}: {value!r} is not a path; {allowed}"
    norm = os.path.normpath(value)
    if os.path.isabs(value) or value.startswith("~"):
        return f"{key}: {value!r} is an absolute path; {allowed}"
    if not _SAFE_PATH_RE.match(value):
        return f"{key}: {value!r} has characters outside the safe set; {allowed}"
    if norm == os.pardir or norm.startswith(os.pardir + os.sep):
        return f"{key}: {value!r} leaves {base}; {allowed}"
    return None


def report_output_problem(value: str) -> Optional[str]:
    """Why ``report.output`` (a safe relative path) is no file the report may overwrite: a Markdown file under
    ``results/`` or :data:`REPORT_TOP_LEVEL` (Snakemake deletes a job's output before the job runs, so
    ``lqs_core/__init__.py`` would be gone)."""
    norm = os.path.normpath(value)
    if norm in REPORT_TOP_LEVEL or (norm.startswith("results" + os.sep) and norm.endswith(".md")):
        return None
    return (f"report.output: {value!r} is not a report file of the workflow (Snakemake deletes it before the report "
            f"job runs); allowed: a Markdown file under results/ (e.g. 'results/smoke/report.md') or "
            f"{' or '.join(REPORT_TOP_LEVEL)}")


def data_dir_problem(value) -> Optional[str]:
    """Why ``data_dir`` is no folder path written with :data:`SAFE_PATH_CHARS` (an optional leading ``~``)."""
    if value is None or (isinstance(value, str) and _SAFE_PATH_RE.match(value[1:] if value[:1] == "~" else value)):
        return None
    return (f"data_dir: {value!r} is not a folder path of {SAFE_PATH_CHARS}; allowed: such a path (absolute, "
            "relative, or ~/...), or null")


#: The paths of a config's ``report`` section: (key, where it must stay, an example).
REPORT_PATHS = (("template", "the repository", "docs/RESULTS.template.md"), ("output", "the working directory",
                                                                                "RESULTS.md"))


def _cross_key_problems(config: Mapping) -> list:
    """The rules across keys that the JSON Schema cannot express."""
    problems = []
    for name, spec in config.get("datasets", {}).items():
        if not (spec.get("nested") or spec.get("loss_terms")):
            problems.append(f"datasets.{name}: needs a 'nested' and/or a 'loss_terms' sweep")
        schedule = (spec.get("train") or {}).get("lr_schedule") or []
        epochs = [item[0] for item in schedule]
        for epoch in sorted({e for e in epochs if epochs.count(e) > 1}):
            problems.append(f"datasets.{name}.train.lr_schedule: epoch {epoch} appears {epochs.count(epoch)} times "
                            f"in {schedule}; allowed: each epoch once (write the product of its factors)")
        dseeds = spec.get("seeds", config["seeds"])
        for section in ("comparators", "loss_terms", "gradual"):
            sseeds = (spec.get(section) or {}).get("seeds")
            if sseeds is not None and not set(sseeds) <= set(dseeds):
                problems.append(f"datasets.{name}.{section}.seeds: {sorted(set(sseeds) - set(dseeds))} "
                                f"not among the seeds {dseeds}")
    fig = (config.get("figures") or {}).get("histograms") or {}
    all_seeds = sorted({s for spec in config.get("datasets", {}).values() for s in spec.get("seeds", config["seeds"])})
    if fig.get("seed") is not None and fig["seed"] not in all_seeds:
        problems.append(f"figures.histograms.seed: {fig['seed']} is not one of the seeds {all_seeds}")
    return problems


def _path_problems(config: Mapping) -> list:
    """The paths of a profile that leave their folders or hold unsafe characters (checked whatever else is wrong:
    a path is never guessed)."""
    problems = [data_dir_problem(config["data_dir"])] if isinstance(config.get("data_dir"), str) else []
    report = config.get("report")
    if isinstance(report, Mapping):
        for key, base, example in REPORT_PATHS:
            if isinstance(report.get(key), str):
                problem = path_problem(f"report.{key}", report[key], base, example)
                if problem is None and key == "output":
                    problem = report_output_problem(report[key])
                problems.append(problem)
    return [p for p in problems if p]


def validate_config(config, schema: Optional[dict] = None, source: str = "workflow config") -> dict:
    """Check ``config`` and return a normalized deep copy; raise :class:`ConfigError` naming every problem.

    The JSON Schema (closed objects, enumerations of datasets, granularities, loss terms and modes, bounds of every
    number, finite numbers only), then the rules across keys (module docstring). Defaults filled in: ``backend``
    ``tensorflow``, ``threads`` 1, ``data_dir`` None, ``figures`` {}.
    """
    if config is None or not isinstance(config, Mapping):
        raise ConfigError(f"Invalid {source}: expected a mapping of keys, got {type(config).__name__}.")
    schema = load_schema() if schema is None else schema
    validator = _Validator(schema)
    config = _numbers_where_expected(_normalize(copy.deepcopy(dict(config))), validator)
    problems = sorted({_message(e, schema) for e in validator.iter_errors(config)})
    if not problems:
        problems = _cross_key_problems(config)
    problems += _path_problems(config)
    if problems:
        raise ConfigError(f"Invalid {source}:\n  - " + "\n  - ".join(problems))
    config.setdefault("backend", DEFAULT_BACKEND)
    config.setdefault("threads", 1)
    config.setdefault("data_dir", None)
    config.setdefault("figures", {})
    return config


def granularities(dataset_spec: Mapping, scheme: str) -> list:
    """Granularities of a dataset's ``nested`` / ``loss_terms`` sweep (its own, else the dataset's)."""
    return list(dataset_spec[scheme].get("granularities") or dataset_spec["granularities"])


def modes(dataset_spec: Mapping, scheme: str) -> list:
    """Modes of a dataset's ``nested`` / ``loss_terms`` sweep (its own, else the dataset's, else ``qat``)."""
    return list(dataset_spec[scheme].get("modes") or dataset_spec.get("modes") or ["qat"])


def dataset_seeds(config: Mapping, dataset: str) -> list:
    """Seeds of ``dataset``'s runs: its own ``seeds`` key, else the profile's ``seeds``."""
    return list(config["datasets"][dataset].get("seeds", config["seeds"]))


def dataset_backend(config: Mapping, dataset: str) -> str:
    """Keras backend of ``dataset``'s runs: its own ``backend`` key, else the profile's (default ``tensorflow``)."""
    return str(config["datasets"][dataset].get("backend") or config.get("backend") or DEFAULT_BACKEND)


def backends(config: Mapping) -> list:
    """The Keras backends ``config``'s runs use, in the order of :data:`BACKENDS`."""
    used = {dataset_backend(config, d) for d in config["datasets"]}
    return [b for b in BACKENDS if b in used]


def output_name(config: Mapping) -> str:
    """The folder name of ``config``'s results, figures and logs (``results/<output name>/``, ...): its ``name``
    while every run is TensorFlow, else ``<name>-<backend>`` with each other backend its runs use (``demo-jax``,
    ``demo-jax-torch``). So ``results/<name>/`` only ever holds TensorFlow runs, and a run of the same profile on
    JAX or PyTorch neither retrains nor overwrites them."""
    others = [b for b in backends(config) if b != DEFAULT_BACKEND]
    return "-".join([str(config["name"]), *others])


def max_runs(config: Mapping) -> int:
    """The most runs ``config`` may expand to: its ``max_runs``, else :data:`DEFAULT_MAX_RUNS`."""
    return int(config.get("max_runs") or DEFAULT_MAX_RUNS)


def report_output(config: Mapping) -> Optional[str]:
    """Where the profile's report is written (relative to the working directory; None: no report section): its
    ``report.output`` for a TensorFlow profile, else the file of that name in the profile's own results folder
    (``results/quick_cpu-jax/RESULTS.md``), never over the TensorFlow report."""
    report = config.get("report")
    if not report:
        return None
    name = output_name(config)
    if name == config["name"]:
        return str(report["output"])
    return os.path.join("results", name, os.path.basename(os.path.normpath(str(report["output"]))))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lqs_core.workflow.config",
                                     description="What the workflow derives from a profile (validated first).")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("output-name", help="print the folder name of the profile's results (results/<it>/)")
    p.add_argument("configfile")
    p.add_argument("--backend", default="", help="the backend given on the command line (snakemake --config "
                   "backend=...); empty: the profile's own")
    p = sub.add_parser("check", help="read the profile strictly and validate it (before Snakemake reads it)")
    p.add_argument("configfile")
    p.add_argument("--backend", default="", help="as for output-name")
    args = parser.parse_args(argv)
    try:
        data = read_yaml(args.configfile)
        if args.backend and isinstance(data, Mapping):
            data = {**data, "backend": args.backend}  # as Snakemake's --config merges it into the profile
        config = validate_config(data, source=f"workflow config ({args.configfile})")
    except ConfigError as error:
        raise SystemExit(str(error)) from None
    if args.command == "output-name":
        print(output_name(config))


if __name__ == "__main__":
    main()
