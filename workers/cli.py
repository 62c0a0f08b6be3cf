"""``workers`` command line: one subcommand per job, all reading the same Settings."""
from __future__ import annotations

import argparse
import sys

from workers import __version__
from workers.errors import WorkersError
from workers.settings import Settings
from workers.topics import PipelineTopics, create_topics


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        bootstrap_servers=getattr(args, "bootstrap_servers", None),
        pipeline=getattr(args, "pipeline", None),
        topic_prefix=getattr(args, "topic_prefix", None),
    )


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
