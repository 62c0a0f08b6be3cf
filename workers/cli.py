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
    from workers.kafka.rollout import RolloutFollower, load_at_start, open_control
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

    def load(version: str | None) -> Any:
        return load_pipeline(settings.model_copy(update={"model_version": version}) if version else settings)

    # The rollout state on <pipeline>.control decides which version serves, before anything is consumed.
    reader, rollout = open_control(settings)
    refusals: list[tuple[str, str]] = []
    if rollout is not None and rollout.primary != pipeline.manifest.version:
        pipeline = load_at_start(settings, rollout, load, lambda version, why: refusals.append((version, why)))
    record_start(settings, pipeline)
    monitor = WorkerMonitor.from_settings(pipeline, settings)
    for version, why in refusals:
        monitor.model_refused(version, why)
    worker = InferenceWorker(settings, pipeline, monitor)
    if settings.live_quality:
        from workers.kafka.labels_follower import LabelFollower

        LabelFollower(settings, monitor.label_arrived).start()
    worker.context.switch.trial_listeners.append(monitor.trial_changed)
    worker.context.switch.decision_listeners.append(monitor.trial_decided)
    state.monitor = monitor
    if reader is not None:
        follower = RolloutFollower(settings, reader, rollout, pipeline, worker.context.switch, load,
                                   monitor.model_refused, refused_at_start=[version for version, _ in refusals],
                                   quality=monitor.quality_report if settings.live_quality else None)
        follower.begin(worker.context)  # a shadow or canary under way runs from the first batch
        follower.start()
    worker.run()
    return 0


def _check_run(args: argparse.Namespace) -> int:
    """``run --check``: what a worker checks before it starts (the model verified, the brokers, the
    credentials and the input topic), then one JSON line and exit 0, without consuming anything.

    The version reported is the one a worker would serve: a rollout's primary on
    ``<pipeline>.control`` wins over the configured version, as at start-up, and a version
    that does not verify is listed under ``refused`` (nothing is audited or consumed here)."""
    from workers.core.rollout import startup_versions
    from workers.kafka.clients import check_access
    from workers.kafka.rollout import open_control
    from workers.ops import logs
    from workers.pipelines import load_pipeline

    settings = _settings(args)
    logs.configure(settings.log_level, settings.log_format)  # warnings to stderr: stdout is the one JSON line
    pipeline = load_pipeline(settings)  # the configured version must verify, as at start-up
    events = pipeline.topics.events
    partitions = check_access(settings, [events])[events]
    reader, rollout = open_control(settings)
    if reader is not None:
        reader.close()
    refused: list[dict[str, str]] = []
    if rollout is not None and rollout.primary != pipeline.manifest.version:
        for version in startup_versions(rollout, settings.model_version):
            if version is None or version == pipeline.manifest.version:
                break  # the configured version, verified above
            try:
                pipeline = load_pipeline(settings.model_copy(update={"model_version": version}))
                break
            except WorkersError as exc:
                refused.append({"version": version, "error": str(exc)})
    print(json.dumps({"pipeline": pipeline.name, "model_version": pipeline.manifest.version,
                      "sha256": pipeline.manifest.artifact_sha256, "scoring": pipeline.scorer.path,
                      "input_topic": events, "partitions": partitions, "group": settings.group_id,
                      "rollout_primary": rollout.primary if rollout is not None else None,
                      "refused": refused}))
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
    # all serve it, even if a newer one appears meanwhile (a rollout's primary on <pipeline>.control still wins)
    base[f"{PREFIX}MODEL_VERSION"] = checked["model_version"]
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
        "engine", "batch_size", "batch_linger_s", "batch_min_bytes", "max_batches_in_flight", "model_threads",
        "lean_scoring", "columnar_codecs", "max_lateness_s", "delivery_timeout_s", "shutdown_timeout_s", "input_topic",
        "security_protocol")}
    audit_log.write(settings, audit.WORKER_STARTED, {"group": settings.group_id, **configuration},
                    settings.worker_id)


def _cmd_score(args: argparse.Namespace) -> int:
    from threadpoolctl import threadpool_limits

    from workers.batch.formats import OUTPUT_FORMATS, DeadLetterWriter, PredictionWriter, Reader, format_of
    from workers.batch.score import Progress, score_file, summary
    from workers.pipelines import load_pipeline

    settings = _settings(args)
    source, target = Path(args.input), Path(args.output)
    input_format = format_of(source, args.input_format, "input")
    output_format = format_of(target, args.output_format, "output")
    if output_format not in OUTPUT_FORMATS:
        raise ConfigError(f"predictions are written as {', '.join(OUTPUT_FORMATS)}, not {output_format}")
    dlq_path = Path(args.dead_letters) if args.dead_letters else target.with_name(target.stem + ".dlq.jsonl")
    if len({source.resolve(), target.resolve(), dlq_path.resolve()}) < 3:
        raise ConfigError("the input, the predictions and the dead letters must be three different files")
    reader = Reader(source, input_format)  # a missing input fails before the model is loaded
    pipeline = load_pipeline(settings)  # verified as the worker's: sha256, signature, model/schema agreement
    if args.clock:
        pipeline.policies = pipeline.policies.model_copy(update={"clock": args.clock})
    threadpool_limits(settings.model_threads)
    predictions = PredictionWriter(target, output_format, pipeline.model.prediction_schema)
    dead_letters = DeadLetterWriter(dlq_path)
    print(f"scoring {source} ({input_format}) with {pipeline.name} {pipeline.manifest.version} "
          f"({pipeline.scorer.path} scoring), batches of {args.batch_size}", flush=True)
    report = score_file(pipeline, reader, predictions, dead_letters, args.batch_size,
                        Progress(sys.stderr, f"{source.name}"))
    summary(report, source, predictions, dead_letters)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from threadpoolctl import threadpool_limits

    from workers.ops import logs
    from workers.ops.monitor import WorkerMonitor
    from workers.pipelines import load_pipeline
    from workers.serve.app import InferenceServer, serve

    extra = {"http_host": args.host, "serve_port": args.port, "serve_max_batch_rows": args.max_batch_rows,
             "serve_max_delay_ms": args.max_delay_ms}
    settings = _settings(args, **extra)
    logs.configure(settings.log_level, settings.log_format)
    pipeline = load_pipeline(settings)  # verified as the worker's: sha256, signature, model/schema agreement
    threadpool_limits(settings.model_threads)
    monitor = WorkerMonitor.from_settings(pipeline, settings)
    token = settings.http_token.get_secret_value() if settings.http_token else None
    server = InferenceServer(pipeline, monitor, max_rows=settings.serve_max_batch_rows,
                             max_delay_s=settings.serve_max_delay_ms / 1000, token=token,
                             model_threads=settings.model_threads)
    log = logs.get_logger("workers.serve")

    def started(port: int) -> None:
        print(f"serving {pipeline.name} {pipeline.manifest.version} ({pipeline.scorer.path} scoring) on "
              f"http://{settings.http_host}:{port}/v2/models/{pipeline.name}", flush=True)
        log.info("serving", pipeline=pipeline.name, model_version=pipeline.manifest.version, port=port,
                 max_batch_rows=settings.serve_max_batch_rows, max_delay_ms=settings.serve_max_delay_ms)

    try:
        asyncio.run(serve(server, settings.http_host, settings.serve_port, started))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {settings.http_host}:{settings.serve_port}: {exc.strerror}") from None
    return 0


def _cmd_labels(args: argparse.Namespace) -> int:
    from workers.kafka.quality import read_label_file, send_labels

    settings = _settings(args)
    sent = send_labels(settings, read_label_file(Path(args.source)))
    print(f"sent {sent} labels to {settings.topics.labels}")
    return 0


def _cmd_quality(args: argparse.Namespace) -> int:
    from workers.kafka.quality import describe, measure

    settings = _settings(args)
    if args.port is None:
        report = measure(settings, args.window_s, args.idle_timeout)
        print(json.dumps(report) if args.json else "\n".join(describe(report)))
        return 0
    import signal
    import threading

    from workers.ops.http import HttpState, serve
    from workers.ops.quality_monitor import QualityMonitor

    state, stop = HttpState(), threading.Event()
    state.monitor = monitor = QualityMonitor(settings.pipeline)
    token = settings.http_token.get_secret_value() if settings.http_token else None
    serve(state, args.port, settings.http_host, token)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(f"live quality of {settings.pipeline} on http://{settings.http_host}:{args.port}/ (/metrics, /status.json)",
          flush=True)
    measure(settings, args.window_s, None, on_report=monitor.update, stop=stop)
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    from workers.core.audit import describe
    from workers.kafka.audit import read

    for record in read(_settings(args), idle_timeout_s=args.idle_timeout):
        print(json.dumps(record) if args.json else describe(record), flush=True)
    return 0


def _cmd_rollout(args: argparse.Namespace) -> int:
    from workers.kafka import rollout_commands

    settings = _settings(args)
    if args.action == "status":
        lines = rollout_commands.status(settings)
    else:
        guards = {}
        for item in getattr(args, "guard", None) or ():
            name, _, value = item.partition("=")
            try:
                guards[name] = float(value)
            except ValueError:
                raise ConfigError(f"--guard expects NAME=NUMBER, got {item!r}") from None
        lines = rollout_commands.change(settings, args.action, getattr(args, "version", None),
                                        getattr(args, "fraction", 0.0), guards)
    print("\n".join(lines))
    return 0


def _cmd_produce(args: argparse.Namespace) -> int:
    settings = _settings(args)
    shift = {}
    for item in args.shift or ():
        name, _, factor = item.partition("=")
        try:
            shift[name] = float(factor)
        except ValueError:
            raise ConfigError(f"--shift expects FEATURE=FACTOR, got {item!r}") from None
    if args.source is None and settings.pipeline == "fraud":
        return _produce_fraud(args, settings, shift)
    if args.bad_fraction or args.old_schema_fraction:
        raise ConfigError("--bad-fraction and --old-schema-fraction apply to the reference pipeline 'fraud' only")
    return _produce_events(args, settings, shift)


def _produce_fraud(args: argparse.Namespace, settings: Settings, shift: dict[str, float]) -> int:
    from workers.dev.demo import produce_mix

    sent = produce_mix(settings, args.count, args.bad_fraction, args.old_schema_fraction,
                       seed=args.seed, rate=args.rate, shift=shift)
    kinds: dict[str, int] = {}
    for s in sent:
        kinds[s.kind] = kinds.get(s.kind, 0) + 1
    print(f"sent {len(sent)} events to {settings.topics.events}: "
          + ", ".join(f"{k}={v}" for k, v in sorted(kinds.items())))
    return 0


def _produce_events(args: argparse.Namespace, settings: Settings, shift: dict[str, float]) -> int:
    """Any pipeline: the records of a file, or events drawn from the manifest's reference profile."""
    import time

    from workers.kafka.producer import send_events
    from workers.pipelines import load_manifest

    manifest, store = load_manifest(settings)
    schema = store.get(manifest.input_schema)
    if args.source is not None:
        from workers.byom.records import events_from_file

        if shift:
            raise ConfigError("--shift applies to generated events, not to --from")
        found = events_from_file(Path(args.source), manifest, schema)
        if found.ignored_columns:
            print(f"note: columns not in {manifest.input_schema} are not sent: {', '.join(found.ignored_columns)}")
        events, origin = found.events, args.source
    else:
        from workers.dev.profile_events import generate

        events = generate(manifest, schema, args.count, args.seed, int(time.time() * 1000), shift)
        origin = f"the reference profile of {manifest.name} {manifest.version}"
    sent = send_events(settings, manifest, store, events, args.rate)
    print(f"sent {len(sent)} events to {settings.topics.events} (from {origin})")
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
    created = create_topics(settings, names, partitions=args.partitions, configs=settings.topics.configs())
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
        print(f"applied {count} ACLs (idempotent) as {settings.client_name or 'an unauthenticated client'}")
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
    events, predictions = value_subject(topics.events), value_subject(topics.predictions)
    if args.compatibility:  # a registry's default may be NONE (Apicurio's is): say what the subjects need
        for subject in (events, predictions):
            registry.set_compatibility(subject, args.compatibility)
    for definition in inputs:  # oldest first: each must pass the subject's rule against the one before
        print(f"{events}: id {registry.register(events, definition)} ({definition.get('name')})")
    print(f"{predictions}: id {registry.register(predictions, store.get(manifest.prediction_schema).definition)}")
    return 0


def _cmd_pipeline_new(args: argparse.Namespace) -> int:
    from workers.byom.new import NewPipeline, create, summary

    settings = _settings(args)
    request = NewPipeline(
        name=args.pipeline, version=args.model_version, model=Path(args.model), schema=Path(args.schema),
        reference=Path(args.reference), features=_names(args.features, "--features"),
        features_from_reference=args.features_from_reference, target=args.target,
        categories=dict(_categories(item) for item in args.categories or ()),
        sorted_categories=args.sorted_categories, bounds=not args.no_bounds, task=args.task,
        positive_class=args.positive_class, labels=_labels(args.labels), threshold=args.threshold,
        key_field=args.key_field, event_id_field=args.event_id_field, event_time_field=args.event_time_field,
        trusted_types=args.trusted_type or [], owner=args.owner, description=args.description,
        sign_key=Path(args.sign_key) if args.sign_key else None)
    if request.features is not None and request.features_from_reference:
        raise ConfigError("give the column order once: --features or --features-from-reference")
    print("\n".join(summary(create(request, settings))))
    return 0


def _names(text: str | None, option: str) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise ConfigError(f"{option} expects comma-separated names, got {text!r}")
    return names


def _categories(item: str) -> tuple[str, list[str]]:
    name, _, values = item.partition("=")
    if not name or not values:
        raise ConfigError(f"--categories expects FEATURE=a,b,c (in the model's code order), got {item!r}")
    return name, _names(values, "--categories") or []


def _labels(text: str | None) -> tuple[str, str] | None:
    labels = _names(text, "--labels")
    if labels is None:
        return None
    if len(labels) != 2:
        raise ConfigError(f"--labels expects two names, below and at/above the threshold, got {text!r}")
    return labels[0], labels[1]


def _cmd_pipeline_check(args: argparse.Namespace) -> int:
    from workers.byom.check import check, reference_of
    from workers.byom.tables import read_table
    from workers.pipelines import load_pipeline

    settings = _settings(args)
    pipeline = load_pipeline(settings)
    reference = Path(args.reference) if args.reference else reference_of(pipeline)
    if reference is None:
        raise ConfigError(f"no reference data recorded for {pipeline.name} {pipeline.manifest.version} "
                          "(or the file is gone): give --reference FILE")
    print(check(pipeline, read_table(reference), settings.batch_size).describe())
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import time

    from workers.dev.demo import run_demo

    settings = _settings(args)
    if not settings.topic_prefix:  # a fresh set of topics per run keeps the summary exact
        settings = settings.model_copy(update={"topic_prefix": f"demo-{time.strftime('%Y%m%d-%H%M%S')}-"})
    if args.rollout:
        from workers.dev.rollout_demo import run_rollout_demo

        return run_rollout_demo(settings)
    return run_demo(settings, args.count, args.bad_fraction, args.old_schema_fraction, args.rate)


def _cmd_drills(args: argparse.Namespace) -> int:
    from workers.dev.drills import run_report

    settings = _settings(args)
    results = run_report(settings, args.quick, args.broker_port, args.cluster_port)
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


def _cmd_bench_http(args: argparse.Namespace) -> int:
    from workers.dev import bench_http

    settings = _settings(args)
    levels = [int(c) for c in args.concurrency.split(",")]
    seconds, warmup = (2.0, 0.5) if args.quick else (args.seconds, 2.0)
    result = bench_http.run(settings, levels=levels, seconds=seconds, warmup_s=warmup,
                            mlserver=None if args.no_mlserver else Path(args.mlserver), out_dir=Path(args.out))
    print("\n" + bench_http.table(result))
    print(f"\nclient: {result['client']}\nwrote {Path(args.out) / 'bench-http.json'}")
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


def _pipeline_parsers(sub: Any) -> None:
    dirs = (f"writes under ${PREFIX}MODELS_DIR and ${PREFIX}SCHEMAS_DIR (default: models/ and schemas/ of the "
            "checkout, else of the current directory)")
    pipeline = sub.add_parser("pipeline", help="bring your own model: build a pipeline from it, check it")
    actions = pipeline.add_subparsers(dest="action", required=True, parser_class=_Parser)
    new = actions.add_parser(
        "new", help="a pipeline from a trained model, an Avro input schema and reference data",
        epilog=f"{dirs}. The model's column order is never guessed: a model fitted on a DataFrame gives it "
               "(feature_names_in_); for one fitted on an array, give --features or --features-from-reference, "
               "and --target if the reference data has labels (a model no better than a constant is refused).")
    new.add_argument("--pipeline", required=True, help="the new pipeline's name (models/<pipeline>/, topics)")
    new.add_argument("--model-version", default="1.0.0", help="its first version (default: 1.0.0); an existing "
                                                              "version directory is never overwritten")
    new.add_argument("--model", required=True, metavar="FILE", help="the trained model: .joblib (pickle: loading "
                                                                     "it runs code) or .skops")
    new.add_argument("--schema", required=True, metavar="FILE.avsc", help="the events' Avro schema "
                                                                          "(copied to schemas/<pipeline>/)")
    new.add_argument("--reference", required=True, metavar="FILE",
                     help="reference rows with named columns (.csv, .jsonl, .avro, .parquet), e.g. the training "
                          "data: bounds, categories, the drift profile and the check come from them")
    new.add_argument("--features", metavar="A,B,C", help="the model's columns in the order it was fitted with "
                                                          "(needed when it has no feature_names_in_)")
    new.add_argument("--features-from-reference", action="store_true",
                     help="the reference file's columns (less the target, event id, key and time) are in the "
                          "model's order")
    new.add_argument("--target", metavar="COLUMN", help="a label column of the reference data: the model must "
                                                        "beat a constant on it")
    new.add_argument("--categories", action="append", metavar="FEATURE=A,B,C",
                     help="a string feature's values in the model's code order (repeatable); an enum's default "
                          "is its symbols' order")
    new.add_argument("--sorted-categories", action="store_true",
                     help="string features without --categories: the sorted distinct reference values "
                          "(OrdinalEncoder's order)")
    new.add_argument("--no-bounds", action="store_true",
                     help="no min/max (default: the reference data's, values outside are dead-lettered)")
    new.add_argument("--task", choices=["binary_classification", "regression"],
                     help="default: from the model (a classifier with two classes, or a regressor)")
    new.add_argument("--positive-class", metavar="VALUE", help="classifiers: the class (one of classes_) whose "
                                                               "probability is the score; required")
    new.add_argument("--labels", metavar="BELOW,ABOVE", help="classifiers: label names below and at/above the "
                                                            "threshold (default: negative,positive)")
    new.add_argument("--threshold", type=_fraction, default=0.5, help="classifiers (default: 0.5)")
    new.add_argument("--key-field", help="the entity key field (default: a field named key)")
    new.add_argument("--event-id-field", help="the event id field (default: event_id)")
    new.add_argument("--event-time-field", help="the event time field, epoch millis (default: event_time)")
    new.add_argument("--trusted-type", action="append", metavar="TYPE",
                     help=".skops: a type to trust beyond skops' defaults (repeatable)")
    new.add_argument("--sign-key", metavar="KEY.pem", help="sign the manifest with this Ed25519 private key")
    new.add_argument("--owner", help="who answers for this model")
    new.add_argument("--description", help="free text")
    new.set_defaults(func=_cmd_pipeline_new)

    check = actions.add_parser(
        "check", parents=[_model_options()],
        help="score reference rows through the pipeline as a worker would, and compare with the model's own",
        epilog="exit 0 when every score equals the model's own predict_proba/predict (within 1e-9), 2 otherwise")
    check.add_argument("--pipeline", help=f"pipeline name (default: ${PREFIX}PIPELINE or fraud)")
    check.add_argument("--reference", metavar="FILE", help="rows to score (.csv, .jsonl, .avro, .parquet; "
                                                           "default: the file `pipeline new` was given)")
    check.set_defaults(func=_cmd_pipeline_check)


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

    score = sub.add_parser(
        "score", parents=[_model_options()],
        help="score a file of events (Avro container, JSON lines, Parquet) with the same core as the worker",
        epilog="Predictions follow the prediction schema (Avro container or Parquet; .jsonl for a look); dead "
               "letters are JSON lines with the same reasons and messages as the dead-letter topic. Reads "
               f"${PREFIX}PIPELINE, ${PREFIX}SCHEMAS_DIR, ${PREFIX}MODELS_DIR, ${PREFIX}TRUSTED_KEYS, "
               f"${PREFIX}MAX_LATENESS_S, ${PREFIX}MODEL_THREADS and ${PREFIX}PSEUDONYM_KEY. Exit 0 when every "
               "record was accounted for (dead letters included), 2 for an unreadable file or a bad setting.")
    score.add_argument("--pipeline", help=f"pipeline name: models/<pipeline>/ (default: ${PREFIX}PIPELINE or fraud)")
    score.add_argument("input", metavar="INPUT", help="events: .avro (container file), .jsonl or .parquet")
    score.add_argument("output", metavar="OUTPUT", help="predictions: .avro (container file) or .parquet")
    score.add_argument("--input-format", choices=["avro", "jsonl", "parquet"], help="default: from INPUT's suffix")
    score.add_argument("--output-format", choices=["avro", "parquet", "jsonl"], help="default: from OUTPUT's suffix")
    score.add_argument("--dead-letters", metavar="PATH", help="dead letters, JSON lines (default: OUTPUT's name "
                                                              "with .dlq.jsonl)")
    score.add_argument("--batch-size", type=_positive_int, default=2000,
                       help="rows per Pipeline.process call; bounds memory (default: 2000)")
    score.add_argument("--clock", choices=["wall", "stream"],
                       help="judge lateness against the clock (wall) or the file's latest event time so far "
                            "(stream, for a backfill of old events); default: the manifest's policy")
    score.set_defaults(func=_cmd_score)

    srv = sub.add_parser(
        "serve", parents=[_model_options()],
        help="answer the Open Inference Protocol (KServe v2 / MLServer) over HTTP with the same core",
        epilog="POST /v2/models/<pipeline>/infer with the input fields as named tensors; rejected rows are "
               "answered 422 with their dead-letter reasons. Reads "
               f"${PREFIX}PIPELINE, ${PREFIX}SCHEMAS_DIR, ${PREFIX}MODELS_DIR, ${PREFIX}TRUSTED_KEYS, "
               f"${PREFIX}HTTP_HOST, ${PREFIX}HTTP_TOKEN (bearer token of the model endpoints), ${PREFIX}SERVE_PORT, "
               f"${PREFIX}SERVE_MAX_BATCH_ROWS, ${PREFIX}SERVE_MAX_DELAY_MS, ${PREFIX}MODEL_THREADS, "
               f"${PREFIX}MAX_LATENESS_S and ${PREFIX}PSEUDONYM_KEY. Runs until SIGTERM.")
    srv.add_argument("--pipeline", help=f"pipeline name: models/<pipeline>/ (default: ${PREFIX}PIPELINE or fraud)")
    srv.add_argument("--host", help=f"address to listen on (default: ${PREFIX}HTTP_HOST or 127.0.0.1)")
    srv.add_argument("--port", type=_non_negative_int, help=f"default: ${PREFIX}SERVE_PORT or 8080 (0: any free port)")
    srv.add_argument("--max-batch-rows", type=_positive_int,
                     help=f"rows per micro-batch, at most (default: ${PREFIX}SERVE_MAX_BATCH_ROWS or 256)")
    srv.add_argument("--max-delay-ms", type=float,
                     help="how long a request waits for others to share its model call, at most "
                          f"(default: ${PREFIX}SERVE_MAX_DELAY_MS or 2)")
    srv.set_defaults(func=_cmd_serve)

    produce = sub.add_parser(
        "produce", parents=[_connection_options(), _mix_options(10_000, 0.0, 0.0)],
        help="emit events: realistic ones (fraud, bad inputs optionally mixed in), drawn from the manifest's "
             "reference profile (other pipelines), or the records of a file",
        epilog="--count applies to generated events; --from sends every record of the file, each fitted to the "
               "input schema (a record that does not fit stops the command, naming its line or row, before "
               "anything is sent)")
    produce.add_argument("--from", dest="source", metavar="FILE",
                         help="send the records of this file (.jsonl, .csv, .avro, .parquet); a missing event id "
                              "or event time is made up, the key and other fields must be there")
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

    labels = sub.add_parser("labels", help="ground truth for predictions (<pipeline>.labels)").add_subparsers(
        dest="action", required=True, parser_class=_Parser)
    send = labels.add_parser("send", parents=[_connection_options()],
                             help="send labels from a JSON-lines file: event_id, label (or value), label_time")
    send.add_argument("--from", dest="source", required=True, metavar="FILE", help="JSON lines, one label each")
    send.set_defaults(func=_cmd_labels)
    quality = sub.add_parser("quality", parents=[_connection_options()],
                             help="live quality per model version: labels joined to predictions")
    quality.add_argument("--window-s", type=_positive_float, default=7 * 24 * 3600.0,
                         help="how long a prediction waits for its label, and how far back to read (default: 7 days)")
    quality.add_argument("--idle-timeout", type=_positive_float, default=5.0,
                         help="report once the topics were idle this many seconds (default: 5)")
    quality.add_argument("--json", action="store_true", help="the report as one JSON object")
    quality.add_argument("--port", type=int, help="instead: keep joining, and serve /metrics, /status.json and a "
                                                  "status page on this port until SIGTERM")
    quality.set_defaults(func=_cmd_quality)

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

    rollouts = sub.add_parser("rollout", help="change the model version the workers serve, live "
                              "(<pipeline>.control)").add_subparsers(dest="action", required=True, parser_class=_Parser)
    for action, text in (("status", "the rollout state and what each worker reported"),
                         ("promote", "make VERSION (default: the candidate on trial) the primary: every worker "
                                     "verifies it and switches"),
                         ("rollback", "end the trial (shadow or canary); without one, back to the previous primary"),
                         ("shadow", "VERSION scores every event next to the primary, to <pipeline>.shadow only"),
                         ("canary", "VERSION scores a share of the keys, watched by guards that roll it back")):
        cmd = rollouts.add_parser(action, parents=[_connection_options()], help=text)
        if action in ("shadow", "canary"):
            cmd.add_argument("version", help="a model version under models/<pipeline>/")
        if action == "promote":
            cmd.add_argument("version", nargs="?", help="a model version under models/<pipeline>/")
        if action == "canary":
            cmd.add_argument("--fraction", type=_fraction, default=0.1, help="share of keys (default: 0.1)")
            cmd.add_argument("--guard", action="append", metavar="NAME=VALUE", default=[],
                             help="a guard's limit, e.g. max_score_psi=0.1 or soak_s=600 (repeatable; "
                                  "README, Rollouts, lists them)")
        cmd.set_defaults(func=_cmd_rollout)

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
    register.add_argument("--compatibility", type=str.upper, choices=[
        "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE", "NONE"],
        help="set both subjects' compatibility rule first (default: leave the registry's rule)")
    register.set_defaults(func=_cmd_schemas_register)

    _pipeline_parsers(sub)

    demo = sub.add_parser("demo", parents=[_connection_options(), _mix_options(20_000, 0.03, 0.05)],
                          help="the whole job end to end on fresh topics (dev tool)")
    demo.add_argument("--rollout", action="store_true",
                      help="instead: a shadow, a bad canary rolled back by its guards and a good one promoted, "
                           "on one live stream")
    demo.set_defaults(func=_cmd_demo)

    drills = sub.add_parser("drills", parents=[_connection_options()],
                            help="fault drills on real worker processes, as a table (dev tool)")
    drills.add_argument("--quick", action="store_true", help="smaller streams (CI-sized)")
    drills.add_argument("--broker-port", type=_positive_int,
                        help="port of a scripts/kafka-local broker to restart mid-stream (default: no restart drill)")
    drills.add_argument("--cluster-port", type=_positive_int,
                        help="base port of a `scripts/kafka-local start --brokers 3` cluster: its partition leader is "
                             "killed with kill -9 under load (default: no cluster drill)")
    drills.set_defaults(func=_cmd_drills)

    bench = sub.add_parser("bench", parents=[_connection_options()],
                           help="throughput and latency on the real broker (dev tool)")
    bench.add_argument("--quick", action="store_true", help="a small run (CI smoke)")
    bench.add_argument("--events", type=_positive_int, default=200_000, help="backlog size (default: 200000)")
    bench.add_argument("--partitions", type=_positive_int, help="backlog partitions (default: 4)")
    bench.add_argument("--out", default="bench-results",
                       help="directory for bench.json and bench.png (default: bench-results)")
    bench.set_defaults(func=_cmd_bench)

    bench_http = sub.add_parser(
        "bench-http", help="workers serve against MLServer's scikit-learn runtime, same model and machine (dev tool)",
        epilog="Each server runs alone, driven by aiohttp's asyncio client with one-row requests. MLServer runs "
               "from its own virtualenv (--mlserver); without it only workers serve is measured.")
    bench_http.add_argument("--pipeline", help=f"default: ${PREFIX}PIPELINE or fraud")
    bench_http.add_argument("--quick", action="store_true", help="2 s per level (CI smoke)")
    bench_http.add_argument("--seconds", type=_positive_float, default=10.0, help="per level (default: 10)")
    bench_http.add_argument("--concurrency", default="1,8,64", help="concurrent clients (default: 1,8,64)")
    bench_http.add_argument("--mlserver", default=str(Path("~/.cache/mlserver-bench/venv/bin/mlserver").expanduser()),
                            help="the mlserver executable (default: ~/.cache/mlserver-bench/venv/bin/mlserver)")
    bench_http.add_argument("--no-mlserver", action="store_true", help="measure workers serve alone")
    bench_http.add_argument("--out", default="bench-results", help="directory for bench-http.json")
    bench_http.set_defaults(func=_cmd_bench_http)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from workers.ops import logs

    logs.until_configured()  # our log lines to stderr: stdout is the command's output
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
