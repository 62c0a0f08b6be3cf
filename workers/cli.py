"""``workers`` command line: one subcommand per job, all reading the same Settings."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from workers import __version__
from workers.errors import WorkersError
from workers.settings import Settings
from workers.topics import PipelineTopics, create_topics


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        bootstrap_servers=getattr(args, "bootstrap_servers", None),
        pipeline=getattr(args, "pipeline", None),
        topic_prefix=getattr(args, "topic_prefix", None),
        model_version=getattr(args, "model_version", None),
        partitions=getattr(args, "partitions", None),
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from workers import logs
    from workers.core.pipeline import Pipeline
    from workers.http import HttpState, serve
    from workers.worker import InferenceWorker

    settings = _settings(args)
    logs.configure(settings.log_level, settings.log_format)
    state = HttpState()
    if settings.metrics_port:
        serve(state, settings.metrics_port)  # /healthz now; /readyz 503 until verified and assigned
    # Load, verify and check the model before touching Kafka: a bad artifact fails here.
    pipeline = Pipeline.load(
        settings.pipeline, settings.schemas_dir, settings.models_dir, version=settings.model_version,
        topic_prefix=settings.topic_prefix, worker_id=settings.worker_id, max_lateness_s=settings.max_lateness_s,
        input_topic=settings.input_topic, lean_scoring=settings.lean_scoring,
    )
    worker = InferenceWorker(settings, pipeline)
    state.metrics = worker.metrics
    worker.run()
    return 0


def _cmd_produce(args: argparse.Namespace) -> int:
    from workers.demo import produce_mix
    from workers.topics import PipelineTopics

    settings = _settings(args)
    if settings.pipeline != "fraud":
        raise WorkersError("the CLI generates events for the reference pipeline 'fraud' only; "
                           "use workers.producer.EventProducer for other pipelines")
    topics = PipelineTopics.for_pipeline(settings.pipeline, settings.topic_prefix)
    shift = {}
    for item in args.shift or ():
        name, _, factor = item.partition("=")
        try:
            shift[name] = float(factor)
        except ValueError:
            raise WorkersError(f"--shift expects FEATURE=FACTOR, got {item!r}") from None
    sent = produce_mix(settings, topics, args.count, args.bad_fraction, args.old_schema_fraction,
                       seed=args.seed, rate=args.rate, shift=shift)
    kinds: dict[str, int] = {}
    for s in sent:
        kinds[s.kind] = kinds.get(s.kind, 0) + 1
    print(f"sent {len(sent)} events to {topics.events}: " + ", ".join(f"{k}={v}" for k, v in sorted(kinds.items())))
    return 0


def _cmd_tail(args: argparse.Namespace) -> int:
    from workers.tail import consume, describe, human, prediction_codec, to_json
    from workers.topics import PipelineTopics

    settings = _settings(args)
    topics = PipelineTopics.for_pipeline(settings.pipeline, settings.topic_prefix)
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
    moment = datetime.fromisoformat(text)
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


def _cmd_replay(args: argparse.Namespace) -> int:
    from workers.core.replay import ReplaySelection
    from workers.replay import replay
    from workers.topics import PipelineTopics

    settings = _settings(args)
    topics = PipelineTopics.for_pipeline(settings.pipeline, settings.topic_prefix)
    selection = ReplaySelection(
        reasons=frozenset(args.reason or ()),
        since_ms=_parse_time(args.since),
        until_ms=_parse_time(args.until),
        from_offset=args.from_offset,
        to_offset=args.to_offset,
    )

    def show(origin: str, headers: dict[str, str]) -> None:
        if args.dry_run:
            print(f"{origin} reason={headers.get('dlq.reason')} -> {headers['target']} "
                  f"(failed at {headers.get('dlq.failed.at')}: {headers.get('dlq.error.message', '')[:80]})")

    report = replay(settings, topics.dlq, topics.events, selection, dry_run=args.dry_run, rate=args.rate,
                    limit=args.limit, on_record=show)
    reasons = ", ".join(f"{k}={v}" for k, v in sorted(report.by_reason.items())) or "none"
    verb = "would replay" if args.dry_run else "replayed"
    print(f"scanned {report.scanned} dead letters in {topics.dlq}; {verb} {report.selected} ({reasons})")
    return 0


def _cmd_drills(args: argparse.Namespace) -> int:
    from workers.drills import run_report

    settings = _settings(args)
    results = run_report(settings.bootstrap_servers, args.quick, args.broker_port)
    failed = [r.name for r in results if r.lost or "!" in r.notes]
    print(f"\n{len(results)} drills; lost events in: {failed or 'none'}")
    return 1 if failed else 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from workers import bench

    settings = _settings(args)
    sizes: dict[str, Any]
    if args.quick:
        sizes = {"events": 20_000, "naive_events": 1_500, "latency_seconds": 3.0, "load_fractions": [0.25, 0.5]}
    else:
        sizes = {"events": args.events, "naive_events": 10_000, "latency_seconds": 10.0,
                 "load_fractions": [0.1, 0.25, 0.5, 0.75]}
    result = bench.run(settings.bootstrap_servers, partitions=args.partitions or 4, out_dir=Path(args.out), **sizes)
    print("\n" + bench.table(result))
    print(f"\nwrote {Path(args.out) / 'bench.json'} and {Path(args.out) / 'bench.png'}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import dataclasses
    import time

    from workers.demo import run_demo

    settings = _settings(args)
    if not settings.topic_prefix:  # a fresh set of topics per run keeps the summary exact
        settings = dataclasses.replace(settings, topic_prefix=f"demo-{time.strftime('%Y%m%d-%H%M%S')}-")
    return run_demo(settings, args.count, args.bad_fraction, args.old_schema_fraction, args.rate)


def _cmd_topics_create(args: argparse.Namespace) -> int:
    settings = _settings(args)
    topics = PipelineTopics.for_pipeline(settings.pipeline, settings.topic_prefix)
    created = create_topics(settings, topics.all(), partitions=args.partitions)
    for name in topics.all():
        print(f"{name}: {'created' if name in created else 'exists'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workers", description="Kafka inference workers")
    parser.add_argument("--version", action="version", version=f"workers {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--bootstrap-servers", help="default: $WORKERS_BOOTSTRAP_SERVERS or 127.0.0.1:19092")
    common.add_argument("--pipeline", help="pipeline name (default: $WORKERS_PIPELINE or fraud)")
    common.add_argument("--topic-prefix", help="prefix for every topic name")
    sub = parser.add_subparsers(dest="command", required=True)

    topics = sub.add_parser("topics", help="manage a pipeline's topics").add_subparsers(dest="action", required=True)
    create = topics.add_parser("create", parents=[common], help="create the pipeline's topics (idempotent)")
    create.add_argument("--partitions", type=int, help="default: $WORKERS_PARTITIONS or 4")
    create.set_defaults(func=_cmd_topics_create)

    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--model-version", help="default: the newest under models/<pipeline>/")

    run = sub.add_parser("run", parents=[common, model], help="run an inference worker (until SIGTERM)")
    run.set_defaults(func=_cmd_run)

    mix = argparse.ArgumentParser(add_help=False)
    mix.add_argument("--count", type=int, default=10_000)
    mix.add_argument("--rate", type=float, help="events per second (default: as fast as possible)")
    mix.add_argument("--bad-fraction", type=float, default=0.0,
                     help="share of bad inputs, cycling through every kind (corrupt, missing, late, ...)")
    mix.add_argument("--old-schema-fraction", type=float, default=0.0,
                     help="share of events written with the previous schema version")

    produce = sub.add_parser("produce", parents=[common, mix], help="emit realistic events")
    produce.add_argument("--seed", type=int, default=1)
    produce.add_argument("--shift", action="append", metavar="FEATURE=FACTOR",
                         help="multiply a numeric feature to simulate drift (repeatable), e.g. amount=5")
    produce.set_defaults(func=_cmd_produce)

    tail = sub.add_parser("tail", parents=[common, model], help="watch predictions and/or dead letters")
    tail.add_argument("what", nargs="?", choices=["predictions", "dlq", "both"], default="both")
    tail.add_argument("--json", action="store_true", help="JSON lines instead of human-readable lines")
    tail.add_argument("--latest", action="store_true", help="only records that arrive from now on")
    tail.add_argument("--max", type=int, help="stop after this many records")
    tail.add_argument("--idle-timeout", type=float, help="stop after this many seconds without a record")
    tail.set_defaults(func=_cmd_tail)

    rp = sub.add_parser("replay", parents=[common], help="re-publish dead letters to the input topic")
    rp.add_argument("--reason", action="append", help="only this reason (repeatable); default: all")
    rp.add_argument("--since", help="failed at or after (ISO 8601 or epoch millis)")
    rp.add_argument("--until", help="failed at or before (ISO 8601 or epoch millis)")
    rp.add_argument("--from-offset", type=int, help="first dead-letter offset (every partition)")
    rp.add_argument("--to-offset", type=int, help="last dead-letter offset (every partition)")
    rp.add_argument("--rate", type=float, help="records per second (default: as fast as possible)")
    rp.add_argument("--limit", type=int, help="at most this many records")
    rp.add_argument("--dry-run", action="store_true", help="list what would be replayed; publish nothing")
    rp.set_defaults(func=_cmd_replay)

    drills = sub.add_parser("drills", parents=[common], help="fault drills on real worker processes, as a table")
    drills.add_argument("--quick", action="store_true", help="smaller streams (CI-sized)")
    drills.add_argument("--broker-port", help="port of a scripts/kafka-local broker to restart mid-stream")
    drills.set_defaults(func=_cmd_drills)

    bench = sub.add_parser("bench", parents=[common], help="throughput and latency on the real broker")
    bench.add_argument("--quick", action="store_true", help="a small run (CI smoke)")
    bench.add_argument("--events", type=int, default=200_000, help="backlog size (default 200000)")
    bench.add_argument("--partitions", type=int, help="backlog partitions (default 4)")
    bench.add_argument("--out", default="bench-results", help="directory for bench.json and bench.png")
    bench.set_defaults(func=_cmd_bench)

    demo = sub.add_parser("demo", parents=[common, mix], help="the whole job end to end on fresh topics")
    demo.set_defaults(func=_cmd_demo, count=20_000, bad_fraction=0.03, old_schema_fraction=0.05)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except WorkersError as exc:
        print(f"workers: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
