"""The civicnet command line: init, demo, status, sync, verify, quarantine-close, report, ingest,
feeds, datasets, push, gateway."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from civicnet.pipeline.home import create_home, ensure_home, require_home
from civicnet.settings import Settings
from schemas import layout
from schemas.errors import CivicnetError, TerminalError

if TYPE_CHECKING:
    from civicnet.pipeline.runner.server import ComponentState, Deployment

DEFAULT_WAIT_S = 300.0  # `push --report`: how long to wait for the verdict


class ContradictoryOptionsError(TerminalError):
    """Options were given together that do not apply together (one would be silently ignored)."""


def version() -> str:
    """This installation's version, from the package metadata."""
    try:
        return importlib.metadata.version("civicnet")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _init(args: argparse.Namespace, settings: Settings) -> int:
    """Make an empty home (for a deployment whose first step is registering push senders)."""
    if create_home(settings.home, version()):
        print(f"civicnet home created at {settings.home}; next: `civicnet ingest <feed> --home {settings.home}` "
              f"or `civicnet gateway add-sender --home {settings.home} ...`")
    else:
        print(f"{settings.home} is already a civicnet home")
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from civicnet.demo.run import run_demo
    from civicnet.pipeline import status

    ensure_home(settings.home, version())
    if args.nodes:
        from civicnet import context
        from warehouse.stores import set_store

        set_store(settings.home, context.city_code(), args.nodes, context.contracts())
    run_demo(settings.home, args.scale)
    print(status.render(status.collect(settings.home)))
    print(f"quality page: {layout.pages_folder(settings.home) / 'index.html'}\n"
          f"GX Data Docs: {layout.data_docs_index(settings.home)}\n"
          f"rejection reports: {layout.outbox_folder(settings.home)}/<sender or department>/<dataset>/<batch>.txt")
    return 0


def _nodes(args: argparse.Namespace, settings: Settings) -> int:
    """The node registry: which subtrees keep their nodes on a PostgreSQL server."""
    from civicnet import context
    from warehouse.pgnode import redacted
    from warehouse.stores import FILE_STORE, read_registry, set_store

    if args.action == "set":
        if not args.code or not args.url:
            raise ContradictoryOptionsError("`nodes set` takes a subtree's root code and a store URL, e.g. "
                                            "`civicnet nodes set 440300000000 postgresql://127.0.0.1/civicnet`")
        set_store(settings.home, args.code, args.url, context.contracts())
    entries = {code: redacted(url) if url != FILE_STORE else url for code, url in read_registry(settings.home).items()}
    if args.json:
        print(json.dumps({"default": FILE_STORE, "stores": entries}, indent=1))
    else:
        names = {d.code: d.name for d in context.registry().divisions.values()}
        print("\n".join([f"  {code} {names.get(code, '')}: {url}" for code, url in sorted(entries.items())]
                        or [f"  every node: a DuckDB file under {settings.home / 'nodes'}"]))
    return 0


def _reports(args: argparse.Namespace, settings: Settings) -> int:
    """Who has not submitted a periodic report for a period, and the reporting rates."""
    if args.action == "rollup":
        return _rollups(args, settings)
    from civicnet.pipeline.obligations import missing_reports

    found = missing_reports(settings.home, args.period, tier=args.tier, under=args.under, report=args.report)
    if args.json:
        print(json.dumps(found, ensure_ascii=False, indent=1))
        return 0
    lines = [f"{found['period']} 未报送 / missing ({found['start']} – {found['end']}, 截至 as of {found['as_of']}):"]
    for report, rate in found["rate"].items():
        shown = "—" if rate["rate"] is None else f"{rate['rate']:.1%}"
        lines.append(f"  {report}: 应报 expected {rate['expected']}, 已报 submitted {rate['submitted']}, "
                     f"报送率 rate {shown}")
        if found["unexpected"].get(report):
            units = ", ".join(found["unexpected"][report])
            lines.append(f"    无报送义务却报送 submitted without an obligation: {units}")
    for m in found["missing"]:
        late = "已逾期 overdue" if m["overdue"] else "未到期 not yet due"
        lines.append(f"  {m['report']} {m['unit']} {m['name']}: 截止 due {m['due']} ({late}), 锁定 locks {m['lock']}")
    if not found["missing"]:
        lines.append("  全部已报送 / every obligation has a submission")
    print("\n".join(lines))
    return 0


def _rollups(args: argparse.Namespace, settings: Settings) -> int:
    """Each hop's rollups of the period's reports, checked; with --deliver, sent to their subscribers."""
    from civicnet.pipeline import deliveries

    rolled = deliveries.checked_rollups(settings.home, args.period, args.report)
    delivered = deliveries.deliver(settings.home, args.period, args.report, checked=rolled) if args.deliver else []
    if args.json:
        print(json.dumps({"rollups": rolled, "delivered": delivered}, ensure_ascii=False, indent=1))
        return 1 if any(r["mismatches"] for r in rolled) else 0
    lines = []
    for r in rolled:
        city = next((n for n in r["nodes"] if n["tier"] == "city"), None)
        total = sum(g.get(r["measures"][0], 0) for g in city["groups"]) if city and r["measures"] else 0
        lines.append(f"{r['report']} {r['period']} 汇总 rollup: {len(r['nodes'])} 个节点 nodes, "
                     f"全市合计 city total {total:,.2f}, 不一致 mismatches {len(r['mismatches'])}")
        lines += [f"  ✗ {m['detail']}" for m in r["mismatches"]]
    for d in delivered:
        state = "已送达 delivered" if d["new"] else "未变化，未重复送达 unchanged, not sent again"
        lines.append(f"  → {d['department']}: {d['period']} {state} ({d['delivered_at']}, sha256 {d['sha256'][:12]})")
    print("\n".join(lines) or "没有该期间的定期报表 / no periodic report of that period")
    return 1 if any(r["mismatches"] for r in rolled) else 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from civicnet.pipeline import status

    collected = status.collect(settings.home)
    print(json.dumps(collected.to_dict(), ensure_ascii=False, indent=1) if args.json else status.render(collected))
    return 0


def _sync(args: argparse.Namespace, settings: Settings) -> int:
    """Sync districts without Airflow (an engineer re-syncing a node; the kill test)."""
    from civicnet import pipeline

    if args.district:
        pipeline.sync_districts(settings.home, args.district, on_node=report_node)
    else:
        print(pipeline.sync_network(settings.home, on_node=report_node, workers=args.workers))
    return 0


def _report(args: argparse.Namespace, settings: Settings) -> int:
    """Rebuild GX Data Docs and write a quality page now (the network DAG does it after each run)."""
    from civicnet import pipeline

    paths = pipeline.publish_quality_report(settings.home, args.run_id, args.lang.replace("-", "_"))
    print(f"quality page: {paths['quality_page']}\nGX Data Docs: {paths['data_docs']}")
    return 0


def _quarantine(args: argparse.Namespace, settings: Settings) -> int:
    """Close quarantined rows by hand, with the reason kept on each row."""
    from civicnet import context
    from warehouse.merge import close_quarantined

    con = context.open_city(settings.home)
    try:
        closed = close_quarantined(con, "city", args.batch, args.line, args.why,
                                   replica=context.city_replica(settings.home))
    finally:
        con.close()
    print(f"closed {closed} quarantined rows of batch {args.batch}")
    return 0


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    """Check every node against its parent by control totals; exit 1 while any still differs."""
    from civicnet.pipeline.verify import render, verify_and_record

    report = verify_and_record(settings.home, repair=args.repair)
    print(json.dumps(report.to_dict(), ensure_ascii=False, indent=1) if args.json else render(report))
    return 0 if report.agrees else 1


def _rebuild_node(args: argparse.Namespace, settings: Settings) -> int:
    """Move a damaged node file aside and sync a new one from its nearest healthy ancestor."""
    from civicnet import pipeline

    rebuilt = pipeline.rebuild_node(settings.home, args.code)
    kept = ", ".join(rebuilt.kept_at) or "no old file"
    print(f"rebuilt {rebuilt.code} from {rebuilt.source}: {sum(rebuilt.stats.rows.values()):,} rows in "
          f"{len(rebuilt.stats.rows)} datasets; the old file is kept at {kept}")
    return 0


def report_node(code: str, results: list[object]) -> None:
    """One line per synced node (module-level so worker processes can call it)."""
    print(f"synced {code} ({len(results)} datasets changed)", flush=True)


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    from civicnet import context
    from civicnet.pipeline import runner as airflow_runner

    context.feed(args.feed)  # an unknown feed is refused before anything is created
    ensure_home(settings.home, version())
    print(airflow_runner.run_dag(settings.home, f"ingest_{args.feed}"))
    return 0


def _feeds(args: argparse.Namespace, settings: Settings) -> int:
    from civicnet.pipeline import catalog

    records = catalog.feed_records()
    print(json.dumps(records, ensure_ascii=False, indent=1) if args.json else catalog.feeds_table(records))
    return 0


def _datasets(args: argparse.Namespace, settings: Settings) -> int:
    from civicnet.pipeline import catalog

    records = catalog.dataset_records()
    print(json.dumps(records, ensure_ascii=False, indent=1) if args.json else catalog.datasets_table(records))
    return 0


def _push(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path
    from zoneinfo import ZoneInfo

    from civicnet.pipeline.push import push

    token = os.environ.get("CIVICNET_TOKEN") or args.token
    gateway = args.gateway or os.environ.get("CIVICNET_GATEWAY", "http://127.0.0.1:8765")
    today = dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()
    wait = DEFAULT_WAIT_S if args.wait is None else args.wait
    return push(gateway, token, args.dataset, Path(args.file), args.report, wait, sys.stdout, sys.stderr, today,
                args.lang)


def _gateway(args: argparse.Namespace, settings: Settings) -> int:
    from connectors.push import senders

    if args.gateway_command == "add-sender":
        token = senders.add_sender(settings.home, args.id, args.kind, args.department, args.division)
        print(f"sender {args.id!r} added. Its token is shown this once and civicnet does not store it "
              f"(only its hash): hand it over securely, the sender sets it as CIVICNET_TOKEN.\n{token}")
        return 0
    if args.gateway_command == "revoke-sender":
        senders.revoke_sender(settings.home, args.id)
        print(f"sender {args.id!r} revoked: its token is refused from the next request on")
        return 0
    if args.gateway_command == "senders":
        for s in senders.list_senders(settings.home):
            print(f"{s.sender_id}\t{s.kind}\t{s.department}\t{s.division or '-'}")
        return 0
    return _serve(args, settings)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from civicnet.gateway.app import create_app
    from civicnet.gateway.trigger import airflow_api_settings, make_trigger

    airflow = airflow_api_settings(settings, args.airflow_url) if args.trigger == "airflow" else None
    trigger = make_trigger(args.trigger, settings.home, airflow)
    uvicorn.run(create_app(settings.home, trigger), host=args.host, port=args.port)
    return 0


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show (no value, a flag that is off):
    those options say in their help what applies without them."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _command(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
             text: str) -> argparse.ArgumentParser:
    """A subcommand whose --help says what it does and shows every default."""
    return sub.add_parser(name, help=text, description=text, formatter_class=_Formatter)


def _airflow(args: argparse.Namespace, settings: Settings) -> int:
    """Replace this process with `airflow standalone` on the home (returns only if that fails), or
    run Airflow as a service: `up`, `down`, `status`."""
    if args.action is None:
        from civicnet.pipeline.runner import exec_standalone

        exec_standalone(settings.home, args.host, args.port)
        return 1
    if args.action == "pools":
        from civicnet.pipeline.pools import pool_specs, pools_json

        print(pools_json(pool_specs()))
        return 0
    from civicnet.pipeline.runner import server

    if args.action == "down":
        stopped = server.down(settings.home)
        print(f"stopped {', '.join(stopped)}" if stopped else f"no Airflow service runs on {settings.home}")
        return 0
    if args.action == "up":
        if args.host != server.HOST:
            raise ContradictoryOptionsError(f"`airflow up` binds {server.HOST} only; leave --host out")
        already = [s.name for s in server.states(settings.home) if s.running]
        config = server.ServiceConfig(settings.home, port=args.port, workers=args.workers, postgres=args.postgres,
                                      database=args.database, redis=args.redis)
        states = server.up(config)
        deployment = server.read_deployment(settings.home)
        if deployment is not None and len(already) == len(deployment.components()):
            print(f"Airflow already runs on {settings.home} (nothing started):")
        print(render_service(states, server.read_deployment(settings.home)))
        return 0
    states = server.states(settings.home)
    print(render_service(states, server.read_deployment(settings.home)))
    return 0 if states and all(s.running for s in states) else 1


def render_service(states: list[ComponentState], deployment: Deployment | None) -> str:
    """The service's components, one line each, then where to reach it."""
    if deployment is None or not states:
        return "no Airflow service was started on this home (`civicnet airflow up`)"
    lines = [f"  {s.name:<14} {'running, pid ' + str(s.pid) if s.running else 'stopped':<22} log {s.log}"
             for s in states]
    return "\n".join([*lines, f"  UI and API     {deployment.url} (user admin: password in "
                                f"airflow/simple_auth_manager_passwords.json.generated)",
                       f"  metadata       database {deployment.database} on {deployment.postgres}",
                       f"  broker         {deployment.redis}, keys {deployment.key_prefix}*"])


def _add_gateway_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> list[argparse.ArgumentParser]:
    push = _command(sub, "push", "check a file locally and send it to the push gateway")
    push.add_argument("--dataset", required=True, help="dataset slug, e.g. community_expenditures")
    push.add_argument("--file", required=True, help="the file: .csv, .xlsx, .parquet or .jsonl")
    push.add_argument("--gateway", help="gateway URL (default: $CIVICNET_GATEWAY or http://127.0.0.1:8765)")
    push.add_argument("--token", help="sender token (default: $CIVICNET_TOKEN, which wins when both are set; prefer "
                                      "it: a token on the command line is visible to other users and kept in "
                                      "shell history)")
    push.add_argument("--report", action="store_true", help="wait for the verdict and print the rejection report")
    push.add_argument("--wait", type=float, help=f"seconds to wait for the verdict, with --report only "
                                                 f"(default: {DEFAULT_WAIT_S:g})")
    push.add_argument("--lang", default=os.environ.get("CIVICNET_LANG", "zh-CN"), choices=["zh-CN", "en"],
                      help="language of the messages and of the report ($CIVICNET_LANG if set)")
    gateway = _command(sub, "gateway", "the push gateway: serve it, manage its senders")
    gsub = gateway.add_subparsers(dest="gateway_command", required=True)
    serve = _command(gsub, "serve", "run the gateway (HTTP, uvicorn)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback unless you put a TLS "
                                                           "proxy in front)")
    serve.add_argument("--port", type=int, default=8765, help="TCP port to listen on")
    serve.add_argument("--trigger", choices=["airflow", "dags-test", "inline", "none"], default="airflow",
                       help="after a batch lands: post its landing asset event to a running Airflow (airflow), "
                            "run its DAGs with `airflow dags test` on this host (dags-test), ingest it in this "
                            "process (inline), or nothing")
    serve.add_argument("--airflow-url", help="Airflow's API server for --trigger airflow (default: "
                                             "$CIVICNET_AIRFLOW_URL or http://127.0.0.1:8080; user and password "
                                             "from $CIVICNET_AIRFLOW_USERNAME and $CIVICNET_AIRFLOW_PASSWORD, "
                                             "else the admin password `civicnet airflow` generated in the home)")
    add = _command(gsub, "add-sender", "register a sender and print its token once")
    add.add_argument("--id", required=True, help="sender id, e.g. futian-xxx-community")
    add.add_argument("--kind", required=True, choices=["department", "community"],
                     help="a department (sends its own datasets) or a community work station (its own rows)")
    add.add_argument("--department", help="department slug, for a department sender only (a community sender's "
                                          "department is community:<its --division>)")
    add.add_argument("--division", help="the community's 12-digit code, for a community sender only")
    revoke = _command(gsub, "revoke-sender", "remove a sender: its token stops working")
    revoke.add_argument("--id", required=True, help="sender id, as `civicnet gateway senders` lists it")
    listed = _command(gsub, "senders", "list the senders (ids, kinds, departments, divisions)")
    return [serve, add, revoke, listed]  # push talks to a gateway: it needs no home


def parser() -> argparse.ArgumentParser:
    """The argument parser (also used by tests)."""
    p = argparse.ArgumentParser(prog="civicnet", description=__doc__, formatter_class=_Formatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    p.add_argument("--home", help=HOME_HELP)
    sub = p.add_subparsers(dest="command", required=True)
    init = _command(sub, "init", "make an empty civicnet home (demo and ingest make one too)")
    demo = _command(sub, "demo", "generate feeds and run every DAG through Airflow")
    demo.add_argument("--scale", type=float, default=0.002, help="1.0 = 17.56 million residents")
    demo.add_argument("--nodes", help="keep every node in this PostgreSQL database, one schema per node (e.g. "
                                      "postgresql://127.0.0.1/civicnet_demo); default: DuckDB files under the home")
    nodes = _command(sub, "nodes", "the node registry: which subtrees keep their nodes on a PostgreSQL server")
    nodes.add_argument("action", nargs="?", choices=["set", "list"], default="list",
                       help="set: map a subtree (before its nodes hold data) to a store; list: show the registry")
    nodes.add_argument("code", nargs="?", help="the subtree's root, a 12-digit division code (set)")
    nodes.add_argument("url", nargs="?", help="postgresql://host[:port]/database, or duckdb for files (set)")
    nodes.add_argument("--json", action="store_true", help="print JSON instead of text")
    reports = _command(sub, "reports", "periodic reports: `reports missing --period 2021Q2`, who has not "
                                       "submitted, against the obligations of the divisions in force then")
    reports.add_argument("action", choices=["missing", "rollup"],
                         help="missing: the obligations with no submission, and the rates; rollup: each hop's "
                              "totals, checked against its children's (exit 1 on a mismatch)")
    reports.add_argument("--deliver", action="store_true",
                         help="rollup: deliver the checked rollups to the subscribing departments' outboxes")
    reports.add_argument("--period", required=True, help="a year (2021), quarter (2021Q2) or month (2021-05)")
    reports.add_argument("--tier", choices=["city", "district", "street", "community"],
                         help="only the reports owed by units of this tier")
    reports.add_argument("--under", help="only the units of this division's subtree (a 12-digit code)")
    reports.add_argument("--report", help="only this report (a dataset name, e.g. community_expenditures)")
    reports.add_argument("--json", action="store_true", help="print JSON instead of text")
    status = _command(sub, "status", "nodes, extracts, rows, quarantine and batches")
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    sync = _command(sub, "sync", "sync districts' subtrees from the city without Airflow")
    sync.add_argument("--district", action="append", help="a district code (repeatable; default: every district)")
    sync.add_argument("--workers", type=int, default=1, help="districts synced in parallel processes, in a sync "
                                                             "of every district")
    ingest = _command(sub, "ingest", "run one feed's ingest DAG through Airflow")
    ingest.add_argument("feed", help="feed slug, e.g. public_security_residents (`civicnet feeds` lists them)")
    verify = _command(sub, "verify", "check every node against its parent by control totals "
                                     "(exit 1 while any differs)")
    verify.add_argument("--repair", action="store_true", help="re-copy the differing slices from the parents")
    verify.add_argument("--json", action="store_true", help="print JSON instead of text")
    rebuild = _command(sub, "rebuild-node", "move a damaged node file aside (never deleted) and sync a new one "
                                            "from its nearest healthy ancestor")
    rebuild.add_argument("code", help="the node's 12-digit division code, as sync or verify named it")
    close = _command(sub, "quarantine-close", "close quarantined rows no resubmission can release "
                                              "(e.g. a wrong key), saying why")
    close.add_argument("--batch", required=True, help="the batch id, as in the rejection report")
    close.add_argument("--line", required=True, type=int, action="append", help="a line of that batch (repeatable)")
    close.add_argument("--why", required=True, help="kept with each row, e.g. 'resent under the corrected ID'")
    airflow = _command(sub, "airflow", "start Airflow on the home: `airflow standalone` (scheduler, DAG processor, "
                                       "triggerer, API server and UI in one), or with up|down|status as a service "
                                       "(PostgreSQL metadata, CeleryExecutor on Redis, each component a process)")
    airflow.add_argument("action", nargs="?", choices=["up", "down", "status", "pools"],
                         help="up: start the service (a no-op when it runs); down: stop every process it started; "
                              "status: what runs (exit 1 unless all of it); pools: print the single-writer pools "
                              "as `airflow pools import` reads them (for a deployment's init). "
                              "Without: `airflow standalone`")
    airflow.add_argument("--host", default="127.0.0.1", help="address the UI and API listen on (this machine only)")
    airflow.add_argument("--port", type=int, default=8080, help="port of the UI and API")
    airflow.add_argument("--workers", type=int, default=2, help="Celery workers (up)")
    airflow.add_argument("--postgres", default=os.environ.get("CIVICNET_AIRFLOW_POSTGRES", "postgresql://127.0.0.1:5432"),
                         help="PostgreSQL server of the metadata database (up; $CIVICNET_AIRFLOW_POSTGRES if set)")
    airflow.add_argument("--database", help="the metadata database (up; default: civicnet_airflow_<hash of the home>)")
    airflow.add_argument("--redis", default=os.environ.get("CIVICNET_AIRFLOW_REDIS", "redis://127.0.0.1:6379/0"),
                         help="Redis broker, with its db number (up; $CIVICNET_AIRFLOW_REDIS if set)")
    report = _command(sub, "report", "write the quality page and rebuild GX Data Docs")
    report.add_argument("--run-id", help="name of the page (default: the UTC time)")
    report.add_argument("--lang", default="zh-CN", choices=["zh-CN", "en"],
                        help="language of the quality page and the Data Docs additions")
    feeds = _command(sub, "feeds", "list the feeds: department, dataset, connector kind, schedule")
    feeds.add_argument("--json", action="store_true", help="print JSON instead of a table")
    datasets = _command(sub, "datasets", "list the dataset contracts: Chinese title, owner, tiers, version")
    datasets.add_argument("--json", action="store_true", help="print JSON instead of a table")
    for sp in (init, demo, nodes, reports, status, sync, verify, rebuild, close, report, ingest, airflow,
               *_add_gateway_parsers(sub)):
        sp.add_argument("--home", default=argparse.SUPPRESS, help=HOME_HELP)
    return p


HOME_HELP = "civicnet home (default: $CIVICNET_HOME or ./var)"
HANDLERS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "init": _init, "demo": _demo, "nodes": _nodes, "reports": _reports, "status": _status, "sync": _sync,
    "verify": _verify,
    "rebuild-node": _rebuild_node, "quarantine-close": _quarantine, "report": _report, "ingest": _ingest,
    "feeds": _feeds, "datasets": _datasets, "push": _push, "gateway": _gateway, "airflow": _airflow}
# commands that make a home if there is none; `feeds`, `datasets`, `push` and `airflow pools` use no
# home; every other command needs an existing one and creates nothing where there is none
MAKES_A_HOME = frozenset({"init", "demo", "ingest"})
USES_NO_HOME = frozenset({"feeds", "datasets", "push"})


def needs_home(args: argparse.Namespace) -> bool:
    """Whether the command reads a home that must exist already."""
    if args.command == "airflow" and args.action == "pools":
        return False
    return args.command not in MAKES_A_HOME | USES_NO_HOME


def check_options(args: argparse.Namespace) -> None:
    """Refuse options given together where one would be silently ignored."""
    if args.command == "push" and args.wait is not None and not args.report:
        raise ContradictoryOptionsError("--wait applies only with --report (how long to wait for the verdict); "
                                        "add --report or leave --wait out")
    if args.command == "reports" and args.action == "rollup" and (args.tier or args.under):
        raise ContradictoryOptionsError("--tier and --under apply to `reports missing`; a rollup covers every hop")
    if args.command == "reports" and args.action == "missing" and args.deliver:
        raise ContradictoryOptionsError("--deliver applies to `reports rollup`; leave it out")
    if args.command == "sync" and args.district and args.workers != 1:
        raise ContradictoryOptionsError("--workers applies to a sync of every district; the districts named with "
                                        "--district are synced one after another: leave one of them out")


def one_line(err: BaseException) -> str:
    """An error as one line: its first (details such as a log's tail stay in the log it names)."""
    lines = str(err).strip().splitlines() or [type(err).__name__]
    return lines[0].rstrip(":")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `civicnet`: every error is one line on stderr and a non-zero exit."""
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env(getattr(args, "home", None))
        check_options(args)
        if needs_home(args):
            require_home(settings.home)
        settings.apply_file_modes()  # before anything is written: the home stays owner-only (or shared)
        if settings.landing_url or settings.releases_url:  # server mode: landing, releases in object storage
            from civicnet.pipeline.storage import use_settings

            use_settings(settings)
        return HANDLERS[args.command](args, settings)
    except CivicnetError as err:
        print(f"civicnet: {one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a permission, a path that is a file: the system's own words
        print(f"civicnet: {one_line(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("civicnet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
