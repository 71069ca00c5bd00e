"""``agglo invoke``: what ``sam local invoke`` does, in this process instead of a container.

It reads a SAM template, finds the function (``Globals`` merged), builds its
environment, imports its handler and calls it once with an event and a Lambda
context, then prints the response as JSON on stdout.

Environment, lowest to highest precedence, as ``sam local invoke`` does:

1. the template's ``Environment.Variables`` with intrinsics resolved: parameters
   (``--parameter-overrides``, else their ``Default``) and pseudo parameters
   (``AWS::Region`` from ``AWS_REGION``/``AWS_DEFAULT_REGION``, account
   ``123456789012``, stack ``local``). A reference to a *resource* (``!Ref
   StateTable``, ``!GetAtt Queue.Arn``) has no value outside CloudFormation: it
   becomes a placeholder (the logical id, or ``Logical.Attribute``) and a warning
   says which variable to override;
2. the shell's environment, for variables the template declares;
3. ``--env-vars`` (SAM's env.json): ``{"Parameters": {...}}`` for every function,
   then ``{"<LogicalId or FunctionName>": {...}}``. Unlike sam, variables the
   template does not declare are set too.

Lambda's own variables are set as the runtime would (``AWS_LAMBDA_FUNCTION_NAME``,
``LAMBDA_TASK_ROOT`` = the CodeUri directory, …) and ``AWS_SAM_LOCAL=true`` as
sam sets it; ``AWS_XRAY_SDK_ENABLED`` is ``false`` unless set, since there is no
X-Ray daemon. The environment and ``sys.path`` are restored afterwards.
Everything the handler prints (logs, EMF metrics) goes to stderr, so stdout
holds only the response.

The handler runs in this process, with this interpreter and its packages (a
warning says so when the template's ``Runtime`` differs), and ``CodeUri`` is put
first on ``sys.path``; a module this process has already imported is not loaded
again from there (agglo's own ``handlers``, when the template is another
project's). Neither ``Timeout`` nor ``MemorySize`` is enforced: the context
counts down from ``Timeout`` and a warning says when the call ran over it.

Exit status: 0 when the handler returned, 1 when it raised (its error is printed
as the Python runtime reports it: ``errorMessage``, ``errorType``, ``requestId``,
``stackTrace``), 2 for bad usage (no such function, unreadable template or event).
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import json
import os
import re
import shlex
import sys
import time
import traceback
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from handlers.runtime.boot import UsageError

ACCOUNT_ID = "123456789012"
STACK_NAME = "local"
SAM_FUNCTION = "AWS::Serverless::Function"
LAMBDA_FUNCTION = "AWS::Lambda::Function"
DEFAULT_TIMEOUT_S = 3  # SAM's default
DEFAULT_MEMORY_MB = 128


# --- the template -----------------------------------------------------------------------------------------

def _loader() -> type:
    import yaml

    class TemplateLoader(yaml.SafeLoader):
        """YAML with CloudFormation's short forms: ``!Ref X`` -> ``{"Ref": "X"}``, ``!Sub s`` -> ``{"Fn::Sub": s}``."""

    def construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if suffix == "Ref":
            return {"Ref": value}
        if suffix == "Condition":
            return {"Condition": value}
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {f"Fn::{suffix}": value}

    TemplateLoader.add_multi_constructor("!", construct)
    return TemplateLoader


def load_template(path: str) -> dict:
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            template = yaml.load(f, Loader=_loader())
    except OSError as e:
        raise UsageError(f"cannot read template {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise UsageError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(template, dict) or not isinstance(template.get("Resources"), dict):
        raise UsageError(f"{path}: not a CloudFormation/SAM template (no Resources)")
    return template


def _merge_globals(global_props: dict, props: dict) -> dict:
    """SAM's rule: maps merge (the function wins), lists concatenate (globals first), scalars are replaced."""
    merged = dict(global_props)
    for key, value in props.items():
        if key in merged and isinstance(merged[key], dict) and isinstance(value, dict) \
                and not _is_intrinsic(value) and not _is_intrinsic(merged[key]):
            merged[key] = _merge_globals(merged[key], value)
        elif key in merged and isinstance(merged[key], list) and isinstance(value, list):
            merged[key] = merged[key] + value
        else:
            merged[key] = value
    return merged


def _is_intrinsic(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _INTRINSICS


@dataclass
class Function:
    logical_id: str
    properties: dict
    template_path: str

    @property
    def name(self) -> str:
        name = self.properties.get("FunctionName")
        return name if isinstance(name, str) else self.logical_id


def find_function(template: dict, logical_id: str, template_path: str) -> Function:
    resources = template["Resources"]
    functions = sorted(k for k, v in resources.items()
                       if isinstance(v, dict) and v.get("Type") in (SAM_FUNCTION, LAMBDA_FUNCTION))
    resource = resources.get(logical_id)
    if not isinstance(resource, dict) or resource.get("Type") not in (SAM_FUNCTION, LAMBDA_FUNCTION):
        what = "is not a function" if isinstance(resource, dict) else "does not exist"
        raise UsageError(f"{template_path}: resource '{logical_id}' {what}; functions in the template: "
                         f"{', '.join(functions) or 'none'}")
    props = resource.get("Properties") or {}
    if resource["Type"] == SAM_FUNCTION:
        props = _merge_globals((template.get("Globals") or {}).get("Function") or {}, props)
    if props.get("PackageType") == "Image" or "ImageUri" in props:
        raise UsageError(f"'{logical_id}' is a container image function; agglo invoke runs zip functions only")
    return Function(logical_id, props, template_path)


# --- intrinsic functions ----------------------------------------------------------------------------------

_INTRINSICS = {"Ref", "Condition", "Fn::Sub", "Fn::GetAtt", "Fn::Join", "Fn::If", "Fn::Select", "Fn::Split",
               "Fn::FindInMap", "Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or", "Fn::Base64", "Fn::GetAZs",
               "Fn::ImportValue", "Fn::Cidr", "Fn::Length", "Fn::ToJsonString", "Fn::Transform"}
_NO_VALUE = object()


class Unresolved(Exception):
    """An intrinsic with no value outside CloudFormation; ``placeholder`` stands in for it."""

    def __init__(self, placeholder: str, why: str) -> None:
        super().__init__(why)
        self.placeholder, self.why = placeholder, why


@dataclass
class Resolver:
    template: dict
    overrides: dict[str, str] = field(default_factory=dict)
    region: str = "us-east-1"

    def pseudo(self) -> dict[str, Any]:
        return {"AWS::Region": self.region, "AWS::AccountId": ACCOUNT_ID, "AWS::StackName": STACK_NAME,
                "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{ACCOUNT_ID}:stack/{STACK_NAME}/"
                                "51af3dc0-da77-11e4-872e-1234567db123",
                "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com", "AWS::NotificationARNs": [],
                "AWS::NoValue": _NO_VALUE}

    def parameter(self, name: str) -> Any:
        params = self.template.get("Parameters") or {}
        if name in self.overrides:
            return self.overrides[name]
        spec = params.get(name) or {}
        if "Default" not in spec:
            raise UsageError(f"parameter '{name}' has no Default: give it with --parameter-overrides {name}=…")
        default = spec["Default"]
        if isinstance(default, list):  # CommaDelimitedList written as a list
            return ",".join(str(v) for v in default)
        return default

    def ref(self, name: str) -> Any:
        pseudo = self.pseudo()
        if name in pseudo:
            return pseudo[name]
        if name in (self.template.get("Parameters") or {}):
            value = self.parameter(name)
            ptype = str(((self.template.get("Parameters") or {}).get(name) or {}).get("Type", ""))
            if ptype.startswith("List<") or ptype == "CommaDelimitedList":
                return [v.strip() for v in str(value).split(",")]
            return value
        if name in (self.template.get("Resources") or {}):
            raise Unresolved(name, f"!Ref {name}")
        raise UsageError(f"!Ref {name}: no such parameter or resource")

    def condition(self, name: str) -> bool:
        conditions = self.template.get("Conditions") or {}
        if name not in conditions:
            raise UsageError(f"no condition named '{name}'")
        return bool(self.resolve(conditions[name]))

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(v) for v in value) if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if not _is_intrinsic(value):
            return {k: r for k, r in ((k, self.resolve(v)) for k, v in value.items()) if r is not _NO_VALUE}
        [(fn, arg)] = value.items()
        if fn == "Ref":
            return self.ref(arg)
        if fn == "Condition":
            return self.condition(arg)
        if fn == "Fn::GetAtt":
            parts = arg if isinstance(arg, list) else str(arg).split(".", 1)
            logical, attribute = self.resolve(parts[0]), ".".join(str(self.resolve(p)) for p in parts[1:])
            raise Unresolved(f"{logical}.{attribute}", f"!GetAtt {logical}.{attribute}")
        if fn == "Fn::Sub":
            return self._sub(arg)
        if fn == "Fn::Join":
            delimiter, items = arg
            items = self.resolve(items)
            return str(delimiter).join(_text(v) for v in items)
        if fn == "Fn::If":
            name, if_true, if_false = arg
            return self.resolve(if_true if self.condition(name) else if_false)
        if fn == "Fn::Select":
            index, items = self.resolve(arg[0]), self.resolve(arg[1])
            return items[int(index)]
        if fn == "Fn::Split":
            delimiter, source = arg
            return _text(self.resolve(source)).split(delimiter)
        if fn == "Fn::FindInMap":
            name, top, second = (self.resolve(v) for v in arg[:3])
            return self.resolve(((self.template.get("Mappings") or {}).get(name) or {}).get(top, {}).get(second))
        if fn == "Fn::Equals":
            a, b = (self.resolve(v) for v in arg)
            return _text(a) == _text(b)
        if fn == "Fn::Not":
            return not self.resolve(arg[0])
        if fn == "Fn::And":
            return all(self.resolve(v) for v in arg)
        if fn == "Fn::Or":
            return any(self.resolve(v) for v in arg)
        if fn == "Fn::Base64":
            import base64

            return base64.b64encode(_text(self.resolve(arg)).encode()).decode()
        if fn == "Fn::GetAZs":
            return [f"{self.region}{z}" for z in "abc"]
        if fn == "Fn::Length":
            return len(self.resolve(arg))
        if fn == "Fn::ToJsonString":
            return json.dumps(self.resolve(arg), separators=(",", ":"))
        raise Unresolved(fn.removeprefix("Fn::"), f"!{fn.removeprefix('Fn::')}")

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1] if len(arg) > 1 else {})
        missing: list[str] = []

        def one(m: re.Match) -> str:
            name = m.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            try:
                if name in variables:
                    return _text(self.resolve(variables[name]))
                if "." in name and name.split(".", 1)[0] in (self.template.get("Resources") or {}):
                    raise Unresolved(name, f"${{{name}}}")
                return _text(self.ref(name))
            except Unresolved as u:
                missing.append(u.why)
                return u.placeholder

        result = re.sub(r"\$\{([^}]*)\}", one, text)
        if missing:
            raise Unresolved(result, f"!Sub with {', '.join(missing)}")
        return result


def _text(value: Any) -> str:
    """A value as CloudFormation puts it into a string (and Lambda into an environment variable)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    if value is None:
        return ""
    return str(value)


# --- the environment --------------------------------------------------------------------------------------

def parse_parameter_overrides(values: Sequence[str] | None) -> dict[str, str]:
    """``Key=Value`` pairs, also sam's ``ParameterKey=K,ParameterValue=V`` form; one argument may hold several."""
    overrides: dict[str, str] = {}
    for value in values or []:
        for item in shlex.split(value):
            m = re.fullmatch(r"ParameterKey=([^,]+),ParameterValue=(.*)", item)
            if m:
                overrides[m.group(1)] = m.group(2)
                continue
            key, eq, val = item.partition("=")
            if not eq or not key:
                raise UsageError(f"--parameter-overrides: expected Key=Value, got '{item}'")
            overrides[key] = val
    return overrides


def read_env_vars(path: str | None, function: Function) -> dict[str, str]:
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise UsageError(f"cannot read --env-vars {path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"--env-vars {path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--env-vars {path}: expected {{\"FunctionLogicalId\": {{\"VAR\": \"value\"}}}}")
    merged: dict[str, str] = {}
    for section in ("Parameters", function.name, function.logical_id):
        values = data.get(section) or {}
        if not isinstance(values, dict):
            raise UsageError(f"--env-vars {path}: '{section}' must map variable names to values")
        merged.update({k: _text(v) for k, v in values.items()})
    return merged


def function_environment(function: Function, template: dict, overrides: dict[str, str],
                         env_vars: dict[str, str], shell: Mapping[str, str] | None = None,
                         warn: IO[str] | None = None) -> dict[str, str]:
    """The variables the function sees from its template and env.json (see the module docstring)."""
    shell = os.environ if shell is None else shell
    region = shell.get("AWS_REGION") or shell.get("AWS_DEFAULT_REGION") or "us-east-1"
    resolver = Resolver(template, overrides, region)
    declared = ((function.properties.get("Environment") or {}).get("Variables")) or {}
    if not isinstance(declared, dict):
        raise UsageError(f"{function.logical_id}: Environment.Variables must be a map")
    env: dict[str, str] = {}
    for name, raw in declared.items():
        if name in env_vars:
            env[name] = env_vars[name]
            continue
        if name in shell:
            env[name] = shell[name]
            continue
        try:
            value = resolver.resolve(raw)
        except Unresolved as u:
            value = u.placeholder
            if warn is not None:
                warn.write(f"agglo: {name}: {u.why} has no value outside CloudFormation; using "
                           f"'{u.placeholder}' (give the real value with --env-vars)\n")
        if value is _NO_VALUE:
            continue
        # As sam does: what is still a list or a map (no string in CloudFormation either) becomes "".
        env[name] = "" if isinstance(value, dict | list) else _text(value)
    for name, value in env_vars.items():
        env.setdefault(name, value)
    return env


# --- the invocation ---------------------------------------------------------------------------------------

class LambdaContext:
    """The context object of the Python runtime (``memory_limit_in_mb`` is a string there too)."""

    def __init__(self, function_name: str, memory_mb: int, timeout_s: float, region: str) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{function_name}"
        self.memory_limit_in_mb = str(memory_mb)
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = (f"{datetime.datetime.now(datetime.UTC):%Y/%m/%d}/[$LATEST]"
                                f"{uuid.uuid4().hex}")
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Everything the handler prints, even from child processes, goes to stderr."""
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
        saved = os.dup(fd)
    except (AttributeError, OSError, ValueError):
        fd = saved = -1
    if saved >= 0:
        os.dup2(sys.stderr.fileno(), fd)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        if saved >= 0:
            os.dup2(saved, fd)
            os.close(saved)


@contextlib.contextmanager
def _on_path(directory: str) -> Iterator[None]:
    sys.path.insert(0, directory)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(directory)


def _error(e: BaseException, error_type: str | None, request_id: str) -> dict:
    tb = e.__traceback__
    if tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next  # start at the handler, as the Lambda runtime does
    stack = traceback.format_list(traceback.extract_tb(tb))
    return {"errorMessage": str(e), "errorType": error_type or type(e).__name__, "requestId": request_id,
            "stackTrace": stack}


def _number(value: Any, default: float, what: str) -> float:
    try:
        return float(value) if value is not None else default
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a number, got {value!r}") from None


def _read_event(path: str | None) -> Any:
    if path is None:
        return {}
    try:
        if path == "-":
            raw = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                raw = f.read()
    except OSError as e:
        raise UsageError(f"cannot read event {path}: {e.strerror}") from None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise UsageError(f"event {path} is not valid JSON: {e}") from None


def invoke(function_id: str, event_path: str | None, template_path: str = "template.yaml",
           env_vars_path: str | None = None, parameter_overrides: Sequence[str] | None = None,
           out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    template = load_template(template_path)
    function = find_function(template, function_id, template_path)
    event = _read_event(event_path)
    overrides = parse_parameter_overrides(parameter_overrides)
    resolver = Resolver(template, overrides)
    props = function.properties

    def resolved(key: str) -> Any:
        try:
            return resolver.resolve(props.get(key))
        except Unresolved as u:
            raise UsageError(f"{function_id}.{key}: {u.why} cannot be resolved locally") from None

    handler = resolved("Handler")
    if not isinstance(handler, str) or "." not in handler:
        raise UsageError(f"{function_id}: Handler must be 'module.function', got {handler!r}")
    code_uri = resolved("CodeUri") or "."
    if not isinstance(code_uri, str) or "://" in code_uri:
        raise UsageError(f"{function_id}: CodeUri must be a local directory, got {code_uri!r}")
    code_dir = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(template_path)), code_uri))
    if not os.path.isdir(code_dir):
        raise UsageError(f"{function_id}: CodeUri {code_uri} is not a directory (looked at {code_dir})")
    runtime = resolved("Runtime")
    here = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if isinstance(runtime, str) and runtime != here:
        err.write(f"agglo: {function_id} declares {runtime}; running it on {here}\n")
    timeout_s = _number(resolved("Timeout"), DEFAULT_TIMEOUT_S, f"{function_id}.Timeout")
    memory_mb = int(_number(resolved("MemorySize"), DEFAULT_MEMORY_MB, f"{function_id}.MemorySize"))

    env = function_environment(function, template, overrides, read_env_vars(env_vars_path, function),
                               warn=err)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    context = LambdaContext(function.name, memory_mb, timeout_s, region)
    runtime_env = {
        "AWS_LAMBDA_FUNCTION_NAME": function.name, "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb), "AWS_LAMBDA_LOG_GROUP_NAME": context.log_group_name,
        "AWS_LAMBDA_LOG_STREAM_NAME": context.log_stream_name, "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region, "AWS_EXECUTION_ENV": f"AWS_Lambda_{runtime or here}",
        "LAMBDA_TASK_ROOT": code_dir, "_HANDLER": handler, "AWS_SAM_LOCAL": "true",
        "AWS_XRAY_SDK_ENABLED": os.environ.get("AWS_XRAY_SDK_ENABLED", "false"),
    }
    module_name, _, attr = handler.rpartition(".")
    started = time.monotonic()
    with _environment({**runtime_env, **env}), _on_path(code_dir), _stdout_to_stderr():
        try:
            module = importlib.import_module(module_name)
        except Exception as e:  # as the runtime reports it, so is everything below
            traceback.print_exc()
            response, ok = _error(e, "Runtime.ImportModuleError", context.aws_request_id), False
            response["errorMessage"] = f"Unable to import module '{module_name}': {e}"
        else:
            fn = getattr(module, attr, None)
            if not callable(fn):
                response, ok = {"errorMessage": f"Handler '{attr}' missing on module '{module_name}'",
                                "errorType": "Runtime.HandlerNotFound", "requestId": context.aws_request_id,
                                "stackTrace": []}, False
            else:
                try:
                    response, ok = fn(event, context), True
                except Exception as e:
                    traceback.print_exc()
                    response, ok = _error(e, None, context.aws_request_id), False
    elapsed = time.monotonic() - started
    if elapsed > timeout_s:
        err.write(f"agglo: {function_id} ran {elapsed:.2f} s, over its Timeout of {timeout_s:g} s; "
                  f"Lambda would have stopped it\n")
    try:
        text = json.dumps(response)
    except (TypeError, ValueError) as e:
        text, ok = json.dumps({"errorMessage": f"Unable to marshal response: {e}",
                               "errorType": "Runtime.MarshalError", "requestId": context.aws_request_id,
                               "stackTrace": []}), False
    out.write(text + "\n")
    out.flush()
    return 0 if ok else 1


def main(args: Any) -> int:
    """``agglo invoke`` (argparse namespace from handlers.local)."""
    return invoke(args.function, args.event, args.template, args.env_vars, args.parameter_overrides)
