"""``workers`` command line: one subcommand per job, all reading the same Settings.

Every failure ends as one line on stderr, ``workers: error: ...``, with exit code 2 for
configuration and usage errors and 70 for runtime failures (``workers.errors``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

from workers import __version__
from workers.errors import EXIT_CONFIG, EXIT_RUNTIME, ConfigError, WorkersError
from workers.settings import DEFAULT_BOOTSTRAP, PREFIX, Settings

INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """Usage errors as the same one line as every other error (exit 2)."""

    def error(self, message: str) -> NoReturn:
        print(f"workers: error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_CONFIG)


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    return Settings.from_env(
        bootstrap_servers=getattr(args, "bootstrap_servers", None),
        pipeline=getattr(args, "pipeline", None),
        topic_prefix=getattr(args, "topic_prefix", None),
        model_version=getattr(args, "model_version", None),
        partitions=getattr(args, "partitions", None),
        schema_registry_url=getattr(args, "schema_registry_url", None),
        **extra,
    )


# ---------------------------------------------------------------- commands


def _cmd_run(args: argparse.Namespace) -> int:
    if args.check:
        return _check_run(args)
    if args.processes > 1:
        return _run_processes(args)
    from workers.kafka.clients import check_access
    from workers.kafka.worker import InferenceWorker
    from workers.ops import logs
    from workers.ops.http import HttpState, serve
    from workers.ops.monitor import WorkerMonitor
    from workers.pipelines import load_pipeline

    settings = _settings(args)
    logs.configure(settings.log_level, settings.log_format)
    state = HttpState()
    if settings.metrics_port:
        token = settings.http_token.get_secret_value() if settings.http_token else None
        serve(state, settings.metrics_port, settings.http_host, token)  # /readyz 503 until verified and assigned
    # Load, verify and check the model before touching Kafka: a bad artifact fails here.
    pipeline = load_pipeline(settings)
    check_access(settings, [pipeline.topics.events])  # brokers, credentials, the input topic: one clear line
    record_start(settings, pipeline)
    monitor = WorkerMonitor.from_settings(pipeline, settings)
    worker = InferenceWorker(settings, pipeline, monitor)
    state.monitor = monitor
    worker.run()
    return 0


def _check_run(args: argparse.Namespace) -> int:
    """``run --check``: what a worker checks before it starts (the model verified, the brokers, the
    credentials and the input topic), then one JSON line and exit 0, without consuming anything."""
    from workers.kafka.clients import check_access
    from workers.pipelines import load_pipeline

    settings = _settings(args)
    pipeline = load_pipeline(settings)
    events = pipeline.topics.events
    partitions = check_access(settings, [events])[events]
    print(json.dumps({"pipeline": pipeline.name, "model_version": pipeline.manifest.version,
                      "sha256": pipeline.manifest.artifact_sha256, "scoring": pipeline.scorer.path,
                      "input_topic": events, "partitions": partitions, "group": settings.group_id}))
    return 0


STOP_MARGIN_S = 15.0  # beyond the shutdown timeout: leaving the group, closing clients, interpreter exit


def _run_processes(args: argparse.Namespace) -> int:
    """``--processes N``: ``run --check`` once, in a short-lived process (a configuration error is its
    one line, before any worker starts, and the supervisor keeps no model in memory); then N ordinary
    workers under a supervisor (workers/ops/supervisor.py), all serving the version checked."""
    import os
    import subprocess

    from workers.ops import logs
    from workers.ops.supervisor import ChildSpec, Supervisor, child_environments

    settings = _settings(args)
    logs.configure(settings.log_level, settings.log_format)
    log = logs.get_logger("workers.supervisor")
    last_port = settings.metrics_port + args.processes - 1
    if settings.metrics_port and last_port > 65535:
        raise ConfigError(f"{PREFIX}METRICS_PORT={settings.metrics_port} with --processes {args.processes} needs "
                          f"ports up to {last_port} (one per process: port + i); the last is above 65535")
    # Children read what this process resolved (command-line options included).
    base = {**os.environ, f"{PREFIX}BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            f"{PREFIX}PIPELINE": settings.pipeline, f"{PREFIX}TOPIC_PREFIX": settings.topic_prefix}
    for name, value in (("MODEL_VERSION", settings.model_version),
                        ("SCHEMA_REGISTRY_URL", settings.schema_registry_url)):
        if value:
            base[PREFIX + name] = value
    argv = [sys.executable, "-m", "workers.cli", "run"]
    check = subprocess.run([*argv, "--check"], env=base, stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    if check.returncode != 0:
        return check.returncode  # its one error line is already on stderr
    checked = json.loads(check.stdout.strip().splitlines()[-1])
    log.info("pipeline checked", **checked)
    if args.processes > checked["partitions"]:
        log.warning("more worker processes than input partitions: some will stay idle", processes=args.processes,
                    partitions=checked["partitions"], topic=checked["input_topic"])
    base[f"{PREFIX}MODEL_VERSION"] = checked["model_version"]  # all serve it, even if a newer one appears meanwhile
    children = [ChildSpec(f"worker-{i}", argv, env) for i, env in enumerate(
        child_environments(base, args.processes, settings.worker_id, settings.metrics_port))]
    return Supervisor(children, settings.shutdown_timeout_s + STOP_MARGIN_S).run()


def record_start(settings: Settings, pipeline: Any) -> None:
    """The audit trail: which model this worker serves, and with which configuration."""
    from workers.core import audit
    from workers.kafka import audit as audit_log

    manifest = pipeline.manifest
    audit_log.write(settings, audit.MODEL_LOADED, {
        "version": manifest.version, "sha256": manifest.artifact_sha256, "artifact": manifest.artifact,
        "signer": pipeline.model.signer or "none (no trusted keys)", "scoring": pipeline.scorer.path,
    }, settings.worker_id)
    configuration = {name: settings.masked()[name] for name in (
        "engine", "batch_size", "batch_linger_s", "max_batches_in_flight", "model_threads", "lean_scoring",
        "max_lateness_s", "delivery_timeout_s", "shutdown_timeout_s", "input_topic", "security_protocol")}
    audit_log.write(settings, audit.WORKER_STARTED, {"group": settings.group_id, **configuration},
                    settings.worker_id)


def _cmd_audit(args: argparse.Namespace) -> int:
    from workers.core.audit import describe
    from workers.kafka.audit import read

    for record in read(_settings(args), idle_timeout_s=args.idle_timeout):
        print(json.dumps(record) if args.json else describe(record), flush=True)
    return 0


def _cmd_produce(args: argparse.Namespace) -> int:
    from workers.dev.demo import produce_mix

    settings = _settings(args)
    if settings.pipeline != "fraud":
        raise ConfigError("`workers produce` generates events for the reference pipeline 'fraud' only; "
                          "use workers.kafka.producer.EventProducer for other pipelines")
    shift = {}
    for item in args.shift or ():
        name, _, factor = item.partition("=")
        try:
            shift[name] = float(factor)
        except ValueError:
            raise ConfigError(f"--shift expects FEATURE=FACTOR, got {item!r}") from None
    sent = produce_mix(settings, args.count, args.bad_fraction, args.old_schema_fraction,
                       seed=args.seed, rate=args.rate, shift=shift)
    kinds: dict[str, int] = {}
    for s in sent:
        kinds[s.kind] = kinds.get(s.kind, 0) + 1
    print(f"sent {len(sent)} events to {settings.topics.events}: "
          + ", ".join(f"{k}={v}" for k, v in sorted(kinds.items())))
    return 0


def _cmd_tail(args: argparse.Namespace) -> int:
    from workers.kafka.consumer import consume
    from workers.tail import describe, human, prediction_codec, to_json

    settings = _settings(args)
    topics = settings.topics
    names = {"predictions": [topics.predictions], "dlq": [topics.dlq],
             "both": [topics.predictions, topics.dlq]}[args.what]
    codec = prediction_codec(settings)
    for record in consume(settings, names, from_beginning=not args.latest, idle_timeout_s=args.idle_timeout,
                          max_records=args.max):
        d = describe(record, codec)
        print(to_json(d) if args.json else human(d), flush=True)
    return 0


def _parse_time(text: str | None) -> int | None:
    from datetime import UTC, datetime

    if text is None:
        return None
    if text.isdigit():
        return int(text)  # epoch millis
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{text!r} is neither ISO 8601 (2026-11-25T10:00) nor epoch millis") from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


def _cmd_replay(args: argparse.Namespace) -> int:
    from workers.core.deadletter import ERROR_MESSAGE, FAILED_AT, REASON
    from workers.core.replay import ReplaySelection
    from workers.kafka.replay import replay
    from workers.pipelines import replay_key

    settings = _settings(args)
    topics = settings.topics
    selection = ReplaySelection(
        reasons=frozenset(args.reason or ()),
        since_ms=_parse_time(args.since),
        until_ms=_parse_time(args.until),
        from_offset=args.from_offset,
        to_offset=args.to_offset,
    )

    def show(origin: str, headers: dict[str, str]) -> None:
        if args.dry_run:
            print(f"{origin} reason={headers.get(REASON)} -> {headers['target']} "
                  f"(failed at {headers.get(FAILED_AT)}: {headers.get(ERROR_MESSAGE, '')[:80]})")

    report = replay(settings, topics.dlq, topics.events, selection, dry_run=args.dry_run, rate=args.rate,
                    limit=args.limit, from_beginning=args.from_beginning, max_replays=args.max_replays,
                    allowed_targets=frozenset(args.allow_target or ()), replay_key=replay_key(settings),
                    on_record=show)
    reasons = ", ".join(f"{k}={v}" for k, v in sorted(report.by_reason.items())) or "none"
    verb = "would replay" if args.dry_run else "replayed"
    print(f"scanned {report.scanned} dead letters in {topics.dlq} (progress: consumer group {report.group}); "
          f"{verb} {report.selected} ({reasons})")
    if report.over_limit:
        print(f"skipped {report.over_limit} already replayed {args.max_replays} times (--max-replays)")
    for target, count in sorted(report.refused.items()):
        print(f"refused {count} whose original topic {target!r} is not the input topic (--allow-target to allow)")
    if report.unavailable:
        print(f"skipped {report.unavailable} truncated dead letters whose original is no longer in its source topic")
    if not args.dry_run:
        from workers.core import audit
        from workers.kafka import audit as audit_log

        audit_log.write(settings, audit.REPLAY_RUN, {
            "selection": selection, "from_beginning": args.from_beginning, "group": report.group,
            "scanned": report.scanned, "replayed": report.published, "over_limit": report.over_limit,
            "refused": sum(report.refused.values()), "unavailable": report.unavailable,
            "by_reason": dict(report.by_reason)})
    if settings.replay_key is None and not args.dry_run and report.selected:
        print("note: WORKERS_REPLAY_KEY is not set, so workers will not flag these predictions as replayed")
    return 0


def _cmd_topics_create(args: argparse.Namespace) -> int:
    from workers.kafka.admin import create_topics

    settings = _settings(args)
    names = settings.topics.all()
    created = create_topics(settings, names, partitions=args.partitions)
    for name in names:
        print(f"{name}: {'created' if name in created else 'exists'}")
    return 0


def _cmd_acl(args: argparse.Namespace) -> int:
    from workers.kafka.acls import ROLES, apply, pipeline_grants

    settings = _settings(args)
    principals = {role: getattr(args, role) or f"User:{role}" for role in ROLES}
    grants = pipeline_grants(settings, principals)
    for grant in grants:
        print(grant.describe())
    if args.action == "apply":
        count = apply(settings, grants)
        print(f"applied {count} ACLs (idempotent) as {settings.sasl_username or 'an unauthenticated client'}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from workers.core.codec import SchemaStore
    from workers.core.signing import (
        SIGNATURE_FILE,
        generate_key_pair,
        key_id,
        load_private_key,
        load_public_key,
        sign,
    )
    from workers.pipelines import registry

    if args.action == "keygen":
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        private_pem, public_pem = generate_key_pair()
        private, public = out / f"{args.name}.key.pem", out / f"{args.name}.pub.pem"
        if private.exists():
            raise ConfigError(f"{private} exists: not overwriting a key")
        private.touch(mode=0o600)
        private.write_bytes(private_pem)
        public.write_bytes(public_pem)
        print(f"key {key_id(load_public_key(public_pem))}: private {private} (keep it secret), public {public}")
        return 0
    settings = _settings(args, **({"trusted_keys": ",".join(args.key)} if args.action == "verify" and args.key
                                  else {}))
    store = SchemaStore(settings.schemas_dir)
    models = registry(settings, store)
    directory = models.directory(settings.pipeline, settings.model_version)
    if args.action == "sign":
        key = load_private_key(Path(args.key).read_bytes(), args.key)
        (directory / SIGNATURE_FILE).write_bytes(sign((directory / "manifest.json").read_bytes(), key))
        print(f"signed {directory / 'manifest.json'} with key {key_id(key.public_key())}")
        return 0
    if not models.trusted_keys:
        raise ConfigError("no trusted keys: give --key PUBLIC.pem or set WORKERS_TRUSTED_KEYS")
    loaded = models.load(settings.pipeline, directory.name)
    print(f"ok: {loaded.manifest.name} {loaded.manifest.version} signed by {loaded.signer}; artifact "
          f"{loaded.manifest.artifact} sha256 {loaded.manifest.artifact_sha256[:16]}... verified and loaded")
    return 0


def _cmd_schemas_check(args: argparse.Namespace) -> int:
    from workers.pipelines import load_manifest
    from workers.schema_compat import check_both_ways

    settings = _settings(args)
    if args.against:
        deployed = Path(args.against)
    else:
        manifest, store = load_manifest(settings)
        deployed = store.root / manifest.input_schema
    reads_new, new_reads_old = check_both_ways(deployed, Path(args.schema))
    print(f"deployed model's input schema reads the new version's events: {reads_new.describe()}")
    print(f"the new version reads events written with the deployed schema: {new_reads_old.describe()}")
    # What a running worker needs: its reader schema must read what producers will write.
    accepted = True
    if settings.schema_registry_url:  # and what the registry's rule for the events subject says
        from workers.kafka.schema_registry import SchemaRegistry, value_subject

        registry = SchemaRegistry.from_settings(settings)
        subject = value_subject(settings.topics.events)
        verdict = registry.check(subject, _read_schema_file(Path(args.schema)))
        accepted = verdict.compatible
        why = "" if accepted else ": " + "; ".join(verdict.messages)
        print(f"the registry accepts it under {subject} ({registry.compatibility_level(subject)}): "
              f"{'yes' if accepted else 'NO'}{why}")
    return 0 if reads_new.compatible and accepted else 1


def _read_schema_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read Avro schema {path}: {exc}") from None


def _cmd_schemas_register(args: argparse.Namespace) -> int:
    from workers.kafka.schema_registry import SchemaRegistry, value_subject
    from workers.pipelines import load_manifest

    settings = _settings(args)
    manifest, store = load_manifest(settings)
    registry = SchemaRegistry.from_settings(settings)
    topics = settings.topics
    inputs = [_read_schema_file(Path(p)) for p in args.schema] if args.schema else \
        [store.get(manifest.input_schema).definition]
    for definition in inputs:  # oldest first: each must pass the subject's rule against the one before
        subject = value_subject(topics.events)
        print(f"{subject}: id {registry.register(subject, definition)} ({definition.get('name')})")
    subject = value_subject(topics.predictions)
    print(f"{subject}: id {registry.register(subject, store.get(manifest.prediction_schema).definition)}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import time

    from workers.dev.demo import run_demo

    settings = _settings(args)
    if not settings.topic_prefix:  # a fresh set of topics per run keeps the summary exact
        settings = settings.model_copy(update={"topic_prefix": f"demo-{time.strftime('%Y%m%d-%H%M%S')}-"})
    return run_demo(settings, args.count, args.bad_fraction, args.old_schema_fraction, args.rate)


def _cmd_drills(args: argparse.Namespace) -> int:
    from workers.dev.drills import run_report

    settings = _settings(args)
    results = run_report(settings, args.quick, args.broker_port)
    failed = [r.name for r in results if not r.passed]
    print(f"\n{len(results)} drills; failed: {failed or 'none'}")
    return 1 if failed else 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from workers.dev import bench

    settings = _settings(args)
    sizes: dict[str, Any]
    if args.quick:
        sizes = {"events": 20_000, "naive_events": 1_500, "latency_seconds": 3.0, "load_fractions": [0.25, 0.5]}
    else:
        sizes = {"events": args.events, "naive_events": 10_000, "latency_seconds": 10.0,
                 "load_fractions": [0.1, 0.25, 0.5, 0.75]}
    result = bench.run(settings, partitions=args.partitions or 4, out_dir=Path(args.out), **sizes)
    print("\n" + bench.table(result))
    print(f"\nwrote {Path(args.out) / 'bench.json'} and {Path(args.out) / 'bench.png'}")
    return 0


# ---------------------------------------------------------------- arguments


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def _connection_options() -> _Parser:
    """A fresh parent parser per subcommand: argparse shares parents' actions, so one
    subcommand's ``set_defaults`` would otherwise change another's defaults."""
    common = _Parser(add_help=False)
    common.add_argument("--bootstrap-servers", metavar="HOST:PORT[,...]",
                        help=f"Kafka brokers (default: ${PREFIX}BOOTSTRAP_SERVERS, $KAFKA_BOOTSTRAP_SERVERS "
                             f"or {DEFAULT_BOOTSTRAP}, where scripts/kafka-local listens)")
    common.add_argument("--pipeline", help=f"pipeline name: models/<pipeline>/ (default: ${PREFIX}PIPELINE or fraud)")
    common.add_argument("--topic-prefix", metavar="PREFIX",
                        help=f"prepended to every topic name (default: ${PREFIX}TOPIC_PREFIX or none)")
    common.add_argument("--schema-registry-url", metavar="URL",
                        help=f"a Confluent-compatible schema registry (default: ${PREFIX}SCHEMA_REGISTRY_URL or none)")
    return common


def _model_options() -> _Parser:
    model = _Parser(add_help=False)
    model.add_argument("--model-version",
                       help=f"default: ${PREFIX}MODEL_VERSION or the newest under models/<pipeline>/")
    return model


def _mix_options(count: int, bad: float, old: float) -> _Parser:
    mix = _Parser(add_help=False)
    mix.add_argument("--count", type=_non_negative_int, default=count, help=f"events to send (default: {count})")
    mix.add_argument("--rate", type=_positive_float, help="events per second (default: as fast as possible)")
    mix.add_argument("--bad-fraction", type=_fraction, default=bad,
                     help=f"share of bad inputs, cycling through every kind (corrupt, missing, late, ...) "
                          f"(default: {bad})")
    mix.add_argument("--old-schema-fraction", type=_fraction, default=old,
                     help=f"share of events written with the previous schema version (default: {old})")
    return mix


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="workers", description="Kafka inference workers for scikit-learn models",
        epilog=f"Every setting is also read from {PREFIX}* environment variables (README, Configuration); "
               "options given here take precedence. Errors end as one line, exit code 2 (configuration) or "
               "70 (runtime).")
    parser.add_argument("--version", action="version", version=f"workers {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    topics = sub.add_parser("topics", help="manage a pipeline's topics").add_subparsers(
        dest="action", required=True, parser_class=_Parser)
    create = topics.add_parser("create", parents=[_connection_options()],
                               help="create <prefix><pipeline>.events, .predictions and .dlq (idempotent)")
    create.add_argument("--partitions", type=_positive_int, help=f"default: ${PREFIX}PARTITIONS or 4")
    create.set_defaults(func=_cmd_topics_create)

    run = sub.add_parser("run", parents=[_connection_options(), _model_options()],
                         help="run an inference worker (until SIGTERM)",
                         epilog=f"HTTP endpoints (/metrics, /healthz, /readyz, /status) on ${PREFIX}METRICS_PORT "
                                "(default: none); engine, batch size and the rest: README, Configuration.")
    run.add_argument("--check", action="store_true",
                     help="load and verify the model, check the brokers, credentials and input topic, print one "
                          "JSON line and exit (0: a worker would start)")
    run.add_argument("--processes", type=_positive_int, default=1,
                     help="run N worker processes in one consumer group under a supervisor that forwards "
                          f"SIGTERM/SIGINT and exits with the worst exit code; process i serves HTTP on "
                          f"${PREFIX}METRICS_PORT + i (default: 1, no supervisor)")
    run.set_defaults(func=_cmd_run)

    produce = sub.add_parser("produce", parents=[_connection_options(), _mix_options(10_000, 0.0, 0.0)],
                             help="emit realistic events (reference pipeline), bad inputs optionally mixed in")
    produce.add_argument("--seed", type=int, default=1, help="seed of the synthetic events (default: 1)")
    produce.add_argument("--shift", action="append", metavar="FEATURE=FACTOR",
                         help="multiply a numeric feature to simulate drift (repeatable), e.g. amount=5")
    produce.set_defaults(func=_cmd_produce)

    tail = sub.add_parser("tail", parents=[_connection_options(), _model_options()],
                          help="watch predictions and/or dead letters")
    tail.add_argument("what", nargs="?", choices=["predictions", "dlq", "both"], default="both")
    tail.add_argument("--json", action="store_true", help="JSON lines instead of human-readable lines")
    tail.add_argument("--latest", action="store_true", help="only records that arrive from now on")
    tail.add_argument("--max", type=_positive_int, help="stop after this many records")
    tail.add_argument("--idle-timeout", type=_positive_float, help="stop after this many seconds without a record")
    tail.set_defaults(func=_cmd_tail)

    rp = sub.add_parser("replay", parents=[_connection_options()], help="re-publish dead letters to the input topic")
    rp.add_argument("--reason", action="append", help="only this reason (repeatable); default: all")
    rp.add_argument("--since", help="failed at or after (ISO 8601 or epoch millis)")
    rp.add_argument("--until", help="failed at or before (ISO 8601 or epoch millis)")
    rp.add_argument("--from-offset", type=_non_negative_int, help="first dead-letter offset (every partition)")
    rp.add_argument("--to-offset", type=_non_negative_int, help="last dead-letter offset (every partition)")
    rp.add_argument("--rate", type=_positive_float, help="records per second (default: as fast as possible)")
    rp.add_argument("--limit", type=_positive_int, help="at most this many records")
    rp.add_argument("--dry-run", action="store_true", help="list what would be replayed; publish nothing, "
                                                          "keep no progress")
    rp.add_argument("--from-beginning", action="store_true",
                    help="read the dead-letter topic from its start, not from where this selection's last run ended")
    rp.add_argument("--max-replays", type=_positive_int, default=3,
                    help="skip records already replayed this many times (default: 3)")
    rp.add_argument("--allow-target", action="append", metavar="TOPIC",
                    help="also re-publish dead letters whose original topic is TOPIC (repeatable); "
                         "default: only the pipeline's input topic")
    rp.set_defaults(func=_cmd_replay)

    audit = sub.add_parser("audit", parents=[_connection_options()],
                           help="show the audit trail: model loads, worker starts, replay runs")
    audit.add_argument("--json", action="store_true", help="JSON lines")
    audit.add_argument("--idle-timeout", type=_positive_float, default=3.0,
                       help="stop after this many seconds without a record (default: 3)")
    audit.set_defaults(func=_cmd_audit)

    acl = sub.add_parser("acl", help="least-privilege ACLs of a pipeline's principals").add_subparsers(
        dest="action", required=True, parser_class=_Parser)
    for action, text in (("print", "print the ACLs"), ("apply", "create them on the broker (as an admin; idempotent)")):
        cmd = acl.add_parser(action, parents=[_connection_options()], help=text)
        for role in ("worker", "producer", "consumer", "replayer"):
            cmd.add_argument(f"--{role}", metavar="PRINCIPAL", help=f"the {role}'s principal (default: User:{role})")
        cmd.set_defaults(func=_cmd_acl)

    models = sub.add_parser("models", help="sign and verify model versions (Ed25519)").add_subparsers(
        dest="action", required=True, parser_class=_Parser)
    keygen = models.add_parser("keygen", help="make an Ed25519 key pair for signing manifests")
    keygen.add_argument("--out", required=True, help="directory for NAME.key.pem (mode 600) and NAME.pub.pem")
    keygen.add_argument("--name", default="models", help="file name stem (default: models)")
    keygen.set_defaults(func=_cmd_models)
    sign = models.add_parser("sign", parents=[_connection_options(), _model_options()],
                             help="sign a version's manifest.json (writes manifest.json.sig)")
    sign.add_argument("--key", required=True, help="the Ed25519 private key (PEM)")
    sign.set_defaults(func=_cmd_models)
    verify = models.add_parser("verify", parents=[_connection_options(), _model_options()],
                               help="check signature, sha256 and model/schema agreement, as a worker would")
    verify.add_argument("--key", action="append", help="a trusted public key (PEM; repeatable; default: "
                                                       f"${PREFIX}TRUSTED_KEYS)")
    verify.set_defaults(func=_cmd_models)

    schemas = sub.add_parser("schemas", help="schema evolution checks and the schema registry").add_subparsers(
        dest="action", required=True, parser_class=_Parser)
    check = schemas.add_parser(
        "check", parents=[_connection_options(), _model_options()],
        help="can the deployed model read events written with a new schema version (and the other way)?",
        epilog="exit 0 when the deployed input schema reads the new version's events (and, with "
               f"${PREFIX}SCHEMA_REGISTRY_URL set, the registry's rule for the events subject accepts it), else 1")
    check.add_argument("schema", help="the new schema version (.avsc)")
    check.add_argument("--against", help="compare with this .avsc instead of the deployed model's input schema")
    check.set_defaults(func=_cmd_schemas_check)
    register = schemas.add_parser(
        "register", parents=[_connection_options(), _model_options()],
        help=f"register the pipeline's schemas in the schema registry (${PREFIX}SCHEMA_REGISTRY_URL) under "
             "<events topic>-value and <predictions topic>-value")
    register.add_argument("--schema", action="append", metavar="AVSC",
                          help="input schema versions to register, oldest first (default: the model's input schema)")
    register.set_defaults(func=_cmd_schemas_register)

    demo = sub.add_parser("demo", parents=[_connection_options(), _mix_options(20_000, 0.03, 0.05)],
                          help="the whole job end to end on fresh topics (dev tool)")
    demo.set_defaults(func=_cmd_demo)

    drills = sub.add_parser("drills", parents=[_connection_options()],
                            help="fault drills on real worker processes, as a table (dev tool)")
    drills.add_argument("--quick", action="store_true", help="smaller streams (CI-sized)")
    drills.add_argument("--broker-port", type=_positive_int,
                        help="port of a scripts/kafka-local broker to restart mid-stream (default: no restart drill)")
    drills.set_defaults(func=_cmd_drills)

    bench = sub.add_parser("bench", parents=[_connection_options()],
                           help="throughput and latency on the real broker (dev tool)")
    bench.add_argument("--quick", action="store_true", help="a small run (CI smoke)")
    bench.add_argument("--events", type=_positive_int, default=200_000, help="backlog size (default: 200000)")
    bench.add_argument("--partitions", type=_positive_int, help="backlog partitions (default: 4)")
    bench.add_argument("--out", default="bench-results",
                       help="directory for bench.json and bench.png (default: bench-results)")
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except WorkersError as exc:
        print(f"workers: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return INTERRUPTED
    except Exception as exc:  # a client library's error, or a bug: one line, never a traceback
        from workers.kafka.clients import describe_client_error

        print(f"workers: error: {describe_client_error(exc)}", file=sys.stderr)
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
