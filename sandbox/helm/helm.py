"""A helm-compatible command on the real Helm v4 engine.

The sandbox has no `helm` binary; this command gives tests, the demo and
the kleidia plugins one, driving Helm's own Go SDK through the C library of
PyPI `helm-python-sdk`. Release storage, rendering, hooks, waiting and
rollback are Helm's; this file only parses the command line the way the
`helm` CLI does and prints results in its shapes (table, json, yaml), with
its error text and exit codes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
from typing import Any, NoReturn

try:
    import helm_python as helm
    import yaml
except ImportError as exc:  # pragma: no cover - environment problem
    sys.stderr.write(f"Error: {exc}: run scripts/setup in the kleidia workspace first\n")
    sys.exit(1)


class HelmCliError(Exception):
    """An error to print as `Error: <message>` with exit code 1."""


# --------------------------------------------------------------------------
# Formatting helpers


def die(message: str) -> NoReturn:
    sys.stderr.write(f"Error: {message}\n")
    sys.exit(1)


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration subset helm users type: 300s, 5m0s, 1h30m, 90."""
    if re.fullmatch(r"\d+", text):
        # helm (Go) rejects a bare number without a unit
        raise HelmCliError(
            f'invalid argument "{text}" for "--timeout" flag: time: missing unit in duration "{text}"'
        )
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    total = 0.0
    pos = 0
    for m in re.finditer(r"(\d+(?:\.\d*)?)(ms|us|µs|ns|h|m|s)", text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise HelmCliError(
            f'invalid argument "{text}" for "--timeout" flag: time: invalid duration "{text}"'
        )
    return max(1, int(round(total)))


def parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    # Python keeps microseconds: cut Go's nanoseconds down to six digits.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone()
    except ValueError:
        return None


def go_time_string(raw: str | None) -> str:
    """Go's Time.Format("2006-01-02 15:04:05.999999999 -0700 MST") of an
    RFC 3339 time, in local time, keeping its nanoseconds."""
    t = parse_time(raw)
    if t is None or raw is None:
        return ""
    m = re.search(r"T\d\d:\d\d:\d\d\.(\d+)", raw)
    fraction = m.group(1).rstrip("0") if m else ""
    base = t.strftime("%Y-%m-%d %H:%M:%S") + (f".{fraction}" if fraction else "")
    return f"{base} {t.strftime('%z')} {t.tzname() or 'UTC'}"


def rfc3339_nano(raw: str | None) -> str | None:
    """Go's JSON form of a time: RFC 3339 with nanoseconds, in local time."""
    t = parse_time(raw)
    if t is None or raw is None:
        return None
    m = re.search(r"T\d\d:\d\d:\d\d\.(\d+)", raw)
    fraction = m.group(1).rstrip("0") if m else ""
    offset = t.strftime("%z")
    zone = "Z" if offset in ("+0000", "") else f"{offset[:3]}:{offset[3:]}"
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + zone


def ansic(t: dt.datetime | None) -> str:
    """Go's time.ANSIC: "Mon Jan _2 15:04:05 2006"."""
    if t is None:
        return ""
    return f"{t.strftime('%a %b')} {t.day:>2} {t.strftime('%H:%M:%S %Y')}"


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    """uitable as helm configures it: cells padded to the column width,
    joined by a tab, at most 60 characters per column."""
    cells = [headers] + [[str(c) for c in r] for r in rows]
    cells = [[c if len(c) <= 60 else c[:57] + "..." for c in r] for r in cells]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        sys.stdout.write("\t".join(c.ljust(widths[i]) for i, c in enumerate(r)) + "\n")


def dump_yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=True, allow_unicode=True)


def dump_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def go_template(template: str, data: dict[str, Any]) -> str:
    """The `{{.Field}}` subset of Go templates helm's --template takes."""

    def field(m: re.Match[str]) -> str:
        return str(data.get(m.group(1), "<no value>"))

    return re.sub(r"\{\{-?\s*\.(\w+)\s*-?\}\}", field, template)


# --------------------------------------------------------------------------
# Engine access


def config(args: argparse.Namespace, namespace: str | None = None) -> helm.Config:
    kubeconfig = args.kubeconfig or None
    return helm.Config(
        kubeconfig_path=kubeconfig,
        kube_context=args.kube_context or None,
        namespace=namespace or args.namespace,
        storage_driver=os.environ.get("HELM_DRIVER") or None,
    )


def engine_error(exc: helm.HelmError, prefix: str = "") -> NoReturn:
    detail = str(getattr(exc, "detail", None) or exc).strip()
    if isinstance(exc, helm.HelmNotFoundError) and "not found" not in detail:
        detail = f"release: not found ({detail})" if detail else "release: not found"
    die(prefix + detail)


def release_values(args: argparse.Namespace) -> dict[str, Any]:
    """-f files, then --set-json, --set, --set-string, --set-file,
    --set-literal: helm's order, later ones win, maps merge deeply."""
    merged: dict[str, Any] = {}
    for path in args.values or []:
        try:
            if path == "-":
                text = sys.stdin.read()
            else:
                with open(path, encoding="utf-8") as fh:
                    text = fh.read()
        except OSError as exc:
            raise HelmCliError(f"open {path}: {exc.strerror.lower() if exc.strerror else exc}")
        try:
            doc = helm.values_from_yaml(text) if text.strip() else {}
        except helm.HelmError as exc:
            raise HelmCliError(f"failed to parse {path}: {exc}")
        deep_merge(merged, doc or {})
    parsers = [
        ("set_json", helm.parse_set_json, "failed parsing --set-json data"),
        ("set", helm.parse_set_string, "failed parsing --set data"),
        ("set_string", helm.parse_set_string_values, "failed parsing --set-string data"),
        ("set_file", helm.parse_set_file, "failed parsing --set-file data"),
        ("set_literal", helm.parse_set_literal, "failed parsing --set-literal data"),
    ]
    for attr, parse, what in parsers:
        for expr in getattr(args, attr, None) or []:
            try:
                deep_merge(merged, parse(expr))
            except helm.HelmError as exc:
                raise HelmCliError(f"{what}: {exc}")
    return merged


def deep_merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            deep_merge(into[key], value)
        else:
            into[key] = value


# --------------------------------------------------------------------------
# Shapes of the real CLI's output


def list_element(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": r.get("name", ""),
        "namespace": r.get("namespace", ""),
        "revision": str(r.get("revision", "")),
        "updated": go_time_string(r.get("last_deployed") or r.get("deployed_at")),
        "status": r.get("status", ""),
        "chart": f"{r.get('chart_name', '')}-{r.get('chart_version', '')}",
        "app_version": r.get("app_version", ""),
    }


def history_element(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "revision": r.get("revision", 0),
        "updated": r.get("last_deployed") or r.get("deployed_at"),
        "status": r.get("status", ""),
        "chart": f"{r.get('chart_name', '')}-{r.get('chart_version', '')}",
        "app_version": r.get("app_version", ""),
        "description": r.get("description", ""),
    }


def print_status(
    summary: dict[str, Any],
    info: dict[str, Any] | None = None,
    show_notes: bool = True,
    show_desc: bool = False,
) -> None:
    info = info or {}
    deployed = parse_time(info.get("last_deployed") or summary.get("deployed_at"))
    lines = [
        f"NAME: {summary.get('name', '')}",
        f"LAST DEPLOYED: {ansic(deployed)}",
        f"NAMESPACE: {summary.get('namespace', '')}",
        f"STATUS: {summary.get('status', info.get('status', ''))}",
        f"REVISION: {summary.get('revision', '')}",
    ]
    description = summary.get("description") or info.get("description")
    if show_desc and description:
        lines.append(f"DESCRIPTION: {description}")
    lines.append("TEST SUITE: None")
    sys.stdout.write("\n".join(lines) + "\n")
    notes = (summary.get("notes") or info.get("notes") or "").strip()
    if show_notes and notes:
        sys.stdout.write(f"NOTES:\n{notes}\n")


def full_release(cfg: helm.Config, name: str, revision: int | None) -> dict[str, Any]:
    """The release as `helm status -o json` shows it."""
    everything = cfg.get_all(name, revision=revision)
    summary = everything.get("summary", {})
    info = dict(everything.get("info") or {})
    try:
        metadata = cfg.get_metadata(name, revision=revision)
    except helm.HelmError:
        metadata = {}
    chart_meta = {
        "name": summary.get("chart_name") or metadata.get("chart"),
        "version": summary.get("chart_version") or metadata.get("version"),
        "appVersion": summary.get("app_version") or metadata.get("appVersion"),
    }
    for key in ("apiVersion", "description", "type", "keywords", "annotations", "dependencies"):
        if metadata.get(key):
            chart_meta[key] = metadata[key]
    info.setdefault("status", summary.get("status"))
    return {
        "name": summary.get("name", name),
        "info": info,
        "chart": {"metadata": {k: v for k, v in chart_meta.items() if v is not None}},
        "config": everything.get("config") or {},
        "manifest": summary.get("manifest", ""),
        "hooks": everything.get("hooks") or [],
        "version": summary.get("revision"),
        "namespace": summary.get("namespace", ""),
    }


# --------------------------------------------------------------------------
# Commands


def cmd_version(args: argparse.Namespace) -> None:
    version = helm.helm_sdk_version()
    if not version.startswith("v"):
        version = "v" + version
    info = {
        "Version": version,
        "GitCommit": "",
        "GitTreeState": "",
        "GoVersion": "",
        "KubeClientVersion": "",
    }
    if args.template:
        sys.stdout.write(go_template(args.template, info))
        return
    if args.short:
        sys.stdout.write(version + "\n")
        return
    body = ", ".join(f'{k}:"{v}"' for k, v in info.items())
    sys.stdout.write(f"version.BuildInfo{{{body}}}\n")


def cmd_list(args: argparse.Namespace) -> None:
    cfg = config(args)
    states = [
        st.replace("_", "-")
        for st in ("deployed", "failed", "pending", "superseded", "uninstalled", "uninstalling")
        if getattr(args, st)
    ]
    try:
        releases = cfg.list(
            all_states=args.all or bool(states),
            all_namespaces=args.all_namespaces,
            limit=args.max or None,
            offset=args.offset or None,
            name_filter=args.filter or None,
        )
    except helm.HelmError as exc:
        engine_error(exc)
    if states and not args.all:
        wanted = set(states)
        if "pending" in wanted:
            wanted |= {"pending-install", "pending-upgrade", "pending-rollback"}
        releases = [r for r in releases if r.get("status") in wanted]
    releases = sorted(releases, key=lambda r: (r.get("name", ""), r.get("namespace", "")))
    for r in releases:
        try:
            info = config(args, r.get("namespace")).get_all(r.get("name", "")).get("info") or {}
        except helm.HelmError:
            info = {}
        if info.get("last_deployed"):
            r["last_deployed"] = info["last_deployed"]
    if args.short:
        if args.output == "json":
            sys.stdout.write(dump_json([r.get("name") for r in releases]) + "\n")
        elif args.output == "yaml":
            sys.stdout.write(dump_yaml([r.get("name") for r in releases]))
        else:
            for r in releases:
                sys.stdout.write(r.get("name", "") + "\n")
        return
    elements = [list_element(r) for r in releases]
    if args.output == "json":
        sys.stdout.write(dump_json(elements) + "\n")
    elif args.output == "yaml":
        sys.stdout.write(dump_yaml(elements))
    else:
        print_table(
            ["NAME", "NAMESPACE", "REVISION", "UPDATED", "STATUS", "CHART", "APP VERSION"],
            [[e["name"], e["namespace"], e["revision"], e["updated"], e["status"], e["chart"], e["app_version"]] for e in elements],
        )


def cmd_history(args: argparse.Namespace) -> None:
    cfg = config(args)
    try:
        revisions = cfg.history(args.release, max_revisions=args.max or None)
    except helm.HelmNotFoundError:
        die("release: not found")
    except helm.HelmError as exc:
        engine_error(exc)
    if not revisions:
        die("release: not found")
    revisions = sorted(revisions, key=lambda r: r.get("revision", 0))
    if args.max:
        revisions = revisions[-args.max:]
    for r in revisions:
        # The summaries carry whole seconds; the stored record has Helm's
        # full timestamp (and the description).
        try:
            info = cfg.get_all(args.release, revision=r.get("revision")).get("info") or {}
        except helm.HelmError:
            info = {}
        r.setdefault("description", info.get("description", ""))
        if info.get("last_deployed"):
            r["last_deployed"] = info["last_deployed"]
    elements = [history_element(r) for r in revisions]
    if args.output in ("json", "yaml"):
        out = [dict(e, updated=rfc3339_nano(e["updated"])) for e in elements]
        sys.stdout.write(dump_json(out) + "\n" if args.output == "json" else dump_yaml(out))
        return
    print_table(
        ["REVISION", "UPDATED", "STATUS", "CHART", "APP VERSION", "DESCRIPTION"],
        [[e["revision"], ansic(parse_time(e["updated"])), e["status"], e["chart"], e["app_version"], e["description"]] for e in elements],
    )


def cmd_status(args: argparse.Namespace) -> None:
    cfg = config(args)
    try:
        if args.output in ("json", "yaml"):
            rel = full_release(cfg, args.release, args.revision or None)
            # As the real CLI: status leaves the chart out, and empty user
            # values are omitted.
            del rel["chart"]
            if not rel["config"]:
                del rel["config"]
            sys.stdout.write(dump_json(rel) + "\n" if args.output == "json" else dump_yaml(rel))
            return
        summary = cfg.status(args.release, revision=args.revision or None)
        info = cfg.get_all(args.release, revision=args.revision or None).get("info") or {}
    except helm.HelmNotFoundError:
        die("release: not found")
    except helm.HelmError as exc:
        engine_error(exc)
    print_status(summary, info, show_desc=args.show_desc)


def cmd_get(args: argparse.Namespace) -> None:
    cfg = config(args)
    try:
        if args.get_what == "values":
            values = cfg.get_values(args.release, all_values=args.all, revision=args.revision or None)
            if isinstance(values, dict) and set(values) == {"values"}:
                values = values["values"]
            values = values or None
            if args.output == "json":
                sys.stdout.write(dump_json(values) + "\n")
            elif args.output == "yaml":
                sys.stdout.write(dump_yaml(values) if values else "{}\n")
            else:
                header = "COMPUTED VALUES:" if args.all else "USER-SUPPLIED VALUES:"
                sys.stdout.write(header + "\n" + (dump_yaml(values) if values else "null\n"))
        elif args.get_what == "manifest":
            summary = cfg.status(args.release, revision=args.revision or None)
            sys.stdout.write(summary.get("manifest", "") + "\n")
        elif args.get_what == "hooks":
            hooks = cfg.get_all(args.release, revision=args.revision or None).get("hooks") or []
            for h in hooks:
                sys.stdout.write(f"---\n# Source: {h.get('path', '')}\n{h.get('manifest', '')}\n")
        elif args.get_what == "notes":
            info = cfg.get_all(args.release, revision=args.revision or None).get("info") or {}
            sys.stdout.write(f"NOTES:\n{info.get('notes', '')}\n")
        elif args.get_what == "metadata":
            meta = cfg.get_metadata(args.release, revision=args.revision or None)
            if args.output == "json":
                sys.stdout.write(dump_json(meta) + "\n")
            elif args.output == "yaml":
                sys.stdout.write(dump_yaml(meta))
            else:
                for key, value in meta.items():
                    label = re.sub(r"(?<!^)(?=[A-Z])", "_", key).upper()
                    if isinstance(value, dict):
                        value = ",".join(f"{k}={v}" for k, v in sorted(value.items()))
                    elif isinstance(value, list):
                        value = ",".join(str(v) for v in value)
                    sys.stdout.write(f"{label}: {value}\n")
        else:  # all
            rel = full_release(cfg, args.release, args.revision or None)
            print_status({"name": rel["name"], "namespace": rel["namespace"], "revision": rel["version"], "status": rel["info"].get("status")}, rel["info"])
            sys.stdout.write("USER-SUPPLIED VALUES:\n" + (dump_yaml(rel["config"]) if rel["config"] else "null\n"))
            sys.stdout.write("\nHOOKS:\n")
            for h in rel["hooks"]:
                sys.stdout.write(f"---\n# Source: {h.get('path', '')}\n{h.get('manifest', '')}\n")
            sys.stdout.write("MANIFEST:\n" + rel["manifest"] + "\n")
    except helm.HelmNotFoundError:
        die("release: not found")
    except helm.HelmError as exc:
        engine_error(exc)


def wait_strategy(args: argparse.Namespace) -> str:
    if args.wait:
        return args.wait
    # helm: rolling back on failure needs to know about failure, so it waits.
    if getattr(args, "atomic", False):
        return "watcher"
    return "hookOnly"


def _opts(**pairs: Any) -> str | None:
    present = {k: v for k, v in pairs.items() if v is not None and v is not False}
    return json.dumps(present) if present else None


def engine_install(cfg: helm.Config, args: argparse.Namespace, name: str, values: dict[str, Any], timeout: int) -> dict[str, Any]:
    """helm_install of the C layer, called directly: the Python wrapper does
    not pass `disable_openapi_validation` (helm's --disable-openapi-validation)."""
    from helm_python import _native

    payload = _native.call_string(
        "helm_install",
        cfg._raw(),
        _native.HANDLE(0),
        _native.HANDLE(0),
        os.fspath(args.chart),
        name,
        json.dumps(values),
        _opts(
            namespace=args.namespace,
            timeout_seconds=timeout,
            wait=wait_strategy(args),
            dry_run=args.dry_run,
            create_namespace=args.create_namespace,
            rollback_on_failure=args.atomic,
            description=args.description,
            disable_openapi_validation=args.disable_openapi_validation,
        ),
    )
    return json.loads(payload)


def engine_upgrade(cfg: helm.Config, args: argparse.Namespace, values: dict[str, Any], timeout: int) -> dict[str, Any]:
    from helm_python import _native

    payload = _native.call_string(
        "helm_upgrade",
        cfg._raw(),
        _native.HANDLE(0),
        _native.HANDLE(0),
        os.fspath(args.chart),
        args.release,
        json.dumps(values),
        _opts(
            namespace=args.namespace,
            timeout_seconds=timeout,
            wait=wait_strategy(args),
            dry_run=args.dry_run,
            max_history=args.history_max,
            reset_values=args.reset_values,
            reuse_values=args.reuse_values,
            cleanup_on_fail=args.cleanup_on_fail,
            rollback_on_failure=args.atomic,
            description=args.description,
            disable_openapi_validation=args.disable_openapi_validation,
        ),
    )
    return json.loads(payload)


def release_exists(cfg: helm.Config, name: str) -> bool:
    try:
        history = cfg.history(name, max_revisions=1)
    except helm.HelmNotFoundError:
        return False
    return bool(history)


def print_dry_run(summary: dict[str, Any], hooks: list[dict[str, Any]] | None = None) -> None:
    print_status(summary, show_notes=False)
    sys.stdout.write("\nHOOKS:\n")
    for h in hooks or []:
        sys.stdout.write(f"---\n# Source: {h.get('path', '')}\n{h.get('manifest', '')}\n")
    sys.stdout.write("MANIFEST:\n" + summary.get("manifest", "") + "\n")


def cmd_install(args: argparse.Namespace) -> None:
    if args.generate_name and not args.chart:
        args.chart, args.release = args.release, None
    if not args.chart:
        die('"helm install" requires at least 1 argument\n\nUsage:  helm install [NAME] [CHART] [flags]')
    name = args.release
    if args.generate_name:
        name = f"{os.path.basename(args.chart.rstrip('/'))}-{int(dt.datetime.now().timestamp())}"
    values = release_values(args)
    cfg = config(args)
    try:
        rel = engine_install(cfg, args, name, values, parse_duration(args.timeout))
    except helm.HelmError as exc:
        engine_error(exc, "INSTALLATION FAILED: ")
    output_release(args, rel)


def output_release(args: argparse.Namespace, rel: dict[str, Any]) -> None:
    if args.output in ("json", "yaml") and not (args.dry_run and args.dry_run != "none"):
        try:
            rel = full_release(config(args), rel.get("name", ""), rel.get("revision"))
        except helm.HelmError:
            pass
    if args.output == "json":
        sys.stdout.write(dump_json(rel) + "\n")
    elif args.output == "yaml":
        sys.stdout.write(dump_yaml(rel))
    elif args.dry_run and args.dry_run != "none":
        print_dry_run(rel)
    else:
        try:
            info = config(args).get_all(rel.get("name", ""), revision=rel.get("revision")).get("info") or {}
        except helm.HelmError:
            info = {}
        print_status(rel, info)


def cmd_upgrade(args: argparse.Namespace) -> None:
    values = release_values(args)
    cfg = config(args)
    timeout = parse_duration(args.timeout)
    if args.install and not release_exists(cfg, args.release):
        if args.output == "table":
            sys.stdout.write(f'Release "{args.release}" does not exist. Installing it now.\n')
        try:
            rel = engine_install(cfg, args, args.release, values, timeout)
        except helm.HelmError as exc:
            engine_error(exc, "INSTALLATION FAILED: ")
        output_release(args, rel)
        return
    try:
        rel = engine_upgrade(cfg, args, values, timeout)
    except helm.HelmNotFoundError as exc:
        detail = str(getattr(exc, "detail", None) or exc)
        if "has no deployed releases" in detail or "not found" in detail:
            die(f'UPGRADE FAILED: "{args.release}" has no deployed releases')
        engine_error(exc, "UPGRADE FAILED: ")
    except helm.HelmError as exc:
        engine_error(exc, "UPGRADE FAILED: ")
    if args.output == "table":
        sys.stdout.write(f'Release "{args.release}" has been upgraded. Happy Helming!\n')
    output_release(args, rel)


def cmd_rollback(args: argparse.Namespace) -> None:
    cfg = config(args)
    try:
        cfg.rollback(
            args.release,
            version=args.revision or None,
            timeout=parse_duration(args.timeout),
            wait=args.wait or "hookOnly",
            dry_run=args.dry_run,
        )
    except helm.HelmNotFoundError:
        die("release: not found")
    except helm.HelmError as exc:
        engine_error(exc)
    sys.stdout.write("Rollback was a success! Happy Helming!\n")


def cmd_uninstall(args: argparse.Namespace) -> None:
    cfg = config(args)
    for name in args.releases:
        try:
            result = cfg.uninstall(
                name,
                keep_history=args.keep_history,
                timeout=parse_duration(args.timeout),
                dry_run=args.dry_run,
                ignore_not_found=args.ignore_not_found,
                wait=args.wait,
                description=args.description,
            )
        except helm.HelmNotFoundError:
            die(f"uninstall: Release not loaded: {name}: release: not found")
        except helm.HelmError as exc:
            engine_error(exc)
        info = (result or {}).get("info")
        if info:
            sys.stdout.write(info.rstrip("\n") + "\n")
        sys.stdout.write(f'release "{name}" uninstalled\n')


def cmd_template(args: argparse.Namespace) -> None:
    if not args.chart:
        args.chart, args.release = args.release, "release-name"
    if not args.chart:
        die('"helm template" requires at least 1 argument\n\nUsage:  helm template [NAME] [CHART] [flags]')
    values = release_values(args)
    # helm template is a client-only dry-run install; the engine's release
    # record carries the manifest in install order, hooks come from a render.
    cfg = helm.Config(namespace=args.namespace, kubeconfig_path=args.kubeconfig or None)
    try:
        rel = cfg.install(args.chart, args.release, values, namespace=args.namespace, dry_run="client")
        with helm.Chart.load(args.chart) as chart:
            rendered = chart.render(values, name=args.release, namespace=args.namespace, is_install=True)
    except helm.HelmError as exc:
        engine_error(exc)
    out = [rel.get("manifest", "").strip()]
    if not args.no_hooks:
        for path in sorted(rendered):
            for doc in split_documents(rendered[path]):
                try:
                    obj = yaml.safe_load(doc)
                except yaml.YAMLError:
                    continue
                annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
                if "helm.sh/hook" in annotations:
                    out.append(f"---\n# Source: {path}\n{doc.strip()}")
    text = "\n".join(o for o in out if o)
    if args.show_only:
        keep = []
        for doc in re.split(r"(?m)^---\n", text):
            m = re.match(r"# Source: (\S+)", doc)
            if m and any(m.group(1).endswith(s) for s in args.show_only):
                keep.append("---\n" + doc.rstrip("\n"))
        if not keep:
            die(f"could not find template {args.show_only[0]} in chart")
        text = "\n".join(keep)
    sys.stdout.write(text + "\n")


def split_documents(text: str) -> list[str]:
    docs = re.split(r"(?m)^---\s*$", text)
    return [d for d in docs if d.strip() and not all(line.strip().startswith("#") or not line.strip() for line in d.splitlines())]


# --------------------------------------------------------------------------
# Command line


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # helm: "Error: ...", exit 1
        m = re.match(r"argument (?:command|get_what): invalid choice: '([^']*)'", message)
        if m:
            die(f'unknown command "{m.group(1)}" for "{self.prog}"\nRun \'{self.prog} --help\' for usage.')
        if message.startswith("the following arguments are required"):
            missing = message.split(":", 1)[1].count(",") + 1
            noun = "argument" if missing == 1 else "arguments"
            die(f'"{self.prog}" requires {missing} {noun}\n\nUsage:  {self.prog} [flags]')
        message = message.replace("unrecognized arguments:", "unknown flag:")
        die(message)


def global_flags(p: argparse.ArgumentParser, top: bool) -> None:
    default = None if top else argparse.SUPPRESS
    p.add_argument("-n", "--namespace", default=default)
    p.add_argument("--kube-context", default=default)
    p.add_argument("--kubeconfig", default=default)
    p.add_argument("--debug", action="store_true", default=False if top else argparse.SUPPRESS)
    p.add_argument("--burst-limit", default=default)
    p.add_argument("--qps", default=default)


def values_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--values", action="append")
    p.add_argument("--set", action="append")
    p.add_argument("--set-string", action="append")
    p.add_argument("--set-json", action="append")
    p.add_argument("--set-file", action="append")
    p.add_argument("--set-literal", action="append")


def write_flags(p: argparse.ArgumentParser) -> None:
    values_flags(p)
    p.add_argument("--wait", nargs="?", const="watcher", choices=["watcher", "legacy", "hookOnly"])
    p.add_argument("--wait-for-jobs", action="store_true")
    p.add_argument("--timeout", default="5m0s")
    p.add_argument("--atomic", "--rollback-on-failure", dest="atomic", action="store_true")
    p.add_argument("--dry-run", nargs="?", const="client", choices=["client", "server", "none"])
    p.add_argument("--description")
    p.add_argument("--create-namespace", action="store_true")
    p.add_argument("-o", "--output", default="table", choices=["table", "json", "yaml"])
    p.add_argument("--version", dest="chart_version")
    p.add_argument("--skip-crds", action="store_true")
    p.add_argument("--disable-openapi-validation", action="store_true")
    p.add_argument("--force", "--force-replace", dest="force", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="helm", add_help=True)
    global_flags(parser, top=True)
    sub = parser.add_subparsers(dest="command", parser_class=Parser)

    def add(name: str, aliases: list[str] | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, aliases=aliases or [])
        global_flags(p, top=False)
        return p

    p = add("version")
    p.add_argument("--short", action="store_true")
    p.add_argument("--template")
    p.set_defaults(func=cmd_version)

    p = add("list", ["ls"])
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("-q", "--short", action="store_true")
    p.add_argument("-f", "--filter")
    p.add_argument("-m", "--max", type=int, default=256)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("-o", "--output", default="table", choices=["table", "json", "yaml"])
    for state in ("deployed", "failed", "pending", "superseded", "uninstalled", "uninstalling"):
        p.add_argument(f"--{state}", action="store_true")
    p.set_defaults(func=cmd_list)

    p = add("history", ["hist"])
    p.add_argument("release")
    p.add_argument("--max", type=int, default=256)
    p.add_argument("-o", "--output", default="table", choices=["table", "json", "yaml"])
    p.set_defaults(func=cmd_history)

    p = add("status")
    p.add_argument("release")
    p.add_argument("--revision", type=int, default=0)
    p.add_argument("-o", "--output", default="table", choices=["table", "json", "yaml"])
    p.add_argument("--show-desc", action="store_true")
    p.add_argument("--show-resources", action="store_true")
    p.set_defaults(func=cmd_status)

    p = add("get")
    get = p.add_subparsers(dest="get_what", parser_class=Parser)
    for what in ("values", "manifest", "hooks", "notes", "metadata", "all"):
        g = get.add_parser(what)
        global_flags(g, top=False)
        g.add_argument("release")
        g.add_argument("--revision", type=int, default=0)
        g.add_argument("-a", "--all", action="store_true")
        g.add_argument("-o", "--output", default="table", choices=["table", "json", "yaml"])
        g.add_argument("--template")
    p.set_defaults(func=cmd_get)

    for name in ("upgrade", "install"):
        p = add(name)
        p.add_argument("release", nargs="?" if name == "install" else None)
        p.add_argument("chart", nargs="?" if name == "install" else None)
        write_flags(p)
        if name == "upgrade":
            p.add_argument("-i", "--install", action="store_true")
            p.add_argument("--reuse-values", action="store_true")
            p.add_argument("--reset-values", action="store_true")
            p.add_argument("--reset-then-reuse-values", action="store_true")
            p.add_argument("--cleanup-on-fail", action="store_true")
            p.add_argument("--history-max", type=int, default=10)
            p.set_defaults(func=cmd_upgrade)
        else:
            p.add_argument("-g", "--generate-name", action="store_true")
            p.set_defaults(func=cmd_install)

    p = add("rollback")
    p.add_argument("release")
    p.add_argument("revision", nargs="?", type=int, default=0)
    p.add_argument("--wait", nargs="?", const="watcher", choices=["watcher", "legacy", "hookOnly"])
    p.add_argument("--wait-for-jobs", action="store_true")
    p.add_argument("--timeout", default="5m0s")
    p.add_argument("--dry-run", nargs="?", const="client", choices=["client", "server", "none"])
    p.add_argument("--force", action="store_true")
    p.add_argument("--cleanup-on-fail", action="store_true")
    p.add_argument("--history-max", type=int, default=10)
    p.set_defaults(func=cmd_rollback)

    p = add("uninstall", ["delete", "del", "un"])
    p.add_argument("releases", nargs="+")
    p.add_argument("--keep-history", action="store_true")
    p.add_argument("--timeout", default="5m0s")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--ignore-not-found", action="store_true")
    p.add_argument("--wait", nargs="?", const="watcher", choices=["watcher", "legacy", "hookOnly"])
    p.add_argument("--description")
    p.set_defaults(func=cmd_uninstall)

    p = add("template")
    p.add_argument("release", nargs="?")
    p.add_argument("chart", nargs="?")
    values_flags(p)
    p.add_argument("-s", "--show-only", action="append")
    p.add_argument("--no-hooks", action="store_true")
    p.add_argument("--include-crds", action="store_true")
    p.add_argument("--skip-tests", action="store_true")
    p.add_argument("--version", dest="chart_version")
    p.add_argument("--kube-version")
    p.add_argument("--api-versions", action="append")
    p.add_argument("--validate", action="store_true")
    p.add_argument("--is-upgrade", action="store_true")
    p.set_defaults(func=cmd_template)
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    # helm's environment: flags win, then HELM_NAMESPACE/HELM_KUBECONTEXT/
    # KUBECONFIG, then the kubeconfig's context namespace ("default" here).
    args.namespace = args.namespace or os.environ.get("HELM_NAMESPACE") or kubeconfig_namespace(args) or "default"
    args.kube_context = args.kube_context or os.environ.get("HELM_KUBECONTEXT") or None
    args.kubeconfig = args.kubeconfig or None
    if args.debug or os.environ.get("HELM_DEBUG", "").lower() in ("1", "true"):
        import logging

        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(message)s")
        helm.enable_logging(logging.DEBUG)
    if args.command == "get" and not getattr(args, "get_what", None):
        die('"helm get" requires a subcommand: all, hooks, manifest, metadata, notes, values')
    try:
        args.func(args)
    except HelmCliError as exc:
        die(str(exc))
    except BrokenPipeError:
        return 0
    return 0


def kubeconfig_namespace(args: argparse.Namespace) -> str | None:
    """The namespace of the kubeconfig's current (or chosen) context, as
    kubectl and helm take it when -n is not given."""
    path = args.kubeconfig or (os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None)
    if not path:
        path = os.path.expanduser("~/.kube/config")
    try:
        with open(path, encoding="utf-8") as fh:
            kc = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError):
        return None
    wanted = args.kube_context or os.environ.get("HELM_KUBECONTEXT") or kc.get("current-context")
    for ctx in kc.get("contexts") or []:
        if ctx.get("name") == wanted:
            return (ctx.get("context") or {}).get("namespace")
    return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
