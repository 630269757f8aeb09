#!/usr/bin/env python
"""Compare the aws and gcp primary buckets, in both directions, and optionally repair what differs.

    python scripts/check_replicas.py [--prefix files/] [--repair] [--journal PATH] [--resume] [--report FILE]

Every key under the prefixes (default: all of blobs/, files/, bundles/, collections/) is classified as
`missing` (on one replica; both directions are checked), `differs` (a blob copy whose native checksum does not
match its key, or metadata whose contents differ), `orphaned` (metadata whose blob, files or links are absent from
its own replica) or `unreadable`. The walk merges the two sorted listings page by page, so memory stays constant.

Findings are written as JSON lines to stdout (or --report FILE); the summary goes to stderr. A dry run is the
default: nothing is written to either replica without --repair. With --repair:
  - missing: replicated from the replica that has it (dependencies first when the copy is not ready);
  - differs, blob: the copy whose native checksum matches its key replaces the bad one;
  - differs, metadata: reported only (metadata is immutable: a difference is corruption), unless
    --repair-metadata-from aws|gcp says which side is right;
  - orphaned: the absent dependency is replicated from the other replica, if that has it.
Prefixes are walked blobs, then files, then bundles, then collections, so dependencies are repaired first.

Replication is eventual: use --min-age SECONDS to skip divergent keys written more recently than that.

Resume: the last key fully processed, the running summary and the report's length are checkpointed to the
journal (--journal, default check_replicas.journal.json) every --checkpoint-every keys and when the run stops.
After an interruption (Ctrl-C, a kill, --max-keys), run the same command with --resume: the walk continues after
that key, a --report file is cut back to the checkpoint and appended to, and the final summary covers the whole
run. A kill between checkpoints re-checks (and re-reports on stdout) the keys after the last checkpoint.

Exit status: 0 when the replicas are consistent (or everything found was repaired), 1 when divergences remain,
3 when the walk stopped early (--max-keys or an interruption; resume it), 130 on Ctrl-C.
Settings (buckets, endpoints) come from the environment, as for the API: `source .local/env` locally.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import sys

from tqdm import tqdm

from dss.config import Settings
from dss.replica_check import ReplicaChecker, Summary, plan_prefixes
from dss.storage.replicas import Replicas

logger = logging.getLogger("check_replicas")

INCOMPLETE = 3


class Journal:
    """The checkpoint: what was walked, up to which key, with what results so far. Written atomically."""

    def __init__(self, path: pathlib.Path):
        self.path = path

    def load(self) -> dict:
        return json.loads(self.path.read_text())

    def save(self, plan: list[str], last_key: str | None, summary: Summary, report_offset: int | None,
             finished: bool) -> None:
        state = {"prefixes": plan, "last_key": last_key, "summary": summary.__dict__,
                 "report_offset": report_offset, "finished": finished}
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps(state, indent=1))
        os.replace(temporary, self.path)


def open_report(path: pathlib.Path | None, offset: int | None):
    if path is None:
        return sys.stdout
    if offset is None:
        return path.open("w")
    report = path.open("r+")
    report.truncate(offset)  # findings written after the checkpoint are found (and written) again
    report.seek(offset)
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefix", action="append", dest="prefixes",
                        help="key prefix to check, e.g. files/ or bundles/1a; repeatable (default: everything)")
    parser.add_argument("--repair", action="store_true", help="repair what can be repaired (default: dry run)")
    parser.add_argument("--repair-metadata-from", choices=["aws", "gcp"],
                        help="with --repair: overwrite metadata that differs with this replica's copy")
    parser.add_argument("--min-age", type=float, default=0.0, metavar="SECONDS",
                        help="skip divergent keys written less than this long ago (replication in flight)")
    parser.add_argument("--journal", type=pathlib.Path, default=pathlib.Path("check_replicas.journal.json"))
    parser.add_argument("--resume", action="store_true", help="continue after the journal's checkpoint")
    parser.add_argument("--checkpoint-every", type=int, default=1000, metavar="KEYS")
    parser.add_argument("--max-keys", type=int, help="stop after this many keys (resume later with --resume)")
    parser.add_argument("--report", type=pathlib.Path, help="write the findings here instead of to stdout")
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.repair_metadata_from and not args.repair:
        parser.error("--repair-metadata-from needs --repair")

    plan = plan_prefixes(args.prefixes if args.prefixes is not None else [""])
    if not plan:
        parser.error(f"the prefixes {args.prefixes} cover none of blobs/, files/, bundles/, collections/")
    journal = Journal(args.journal)
    summary, last_key, offset = Summary(), None, None
    if args.resume:
        if not args.journal.exists():
            parser.error(f"--resume: there is no journal {args.journal}")
        state = journal.load()
        if state["prefixes"] != plan:
            parser.error(f"--resume: the journal {args.journal} is of a walk of {state['prefixes']}, not {plan}")
        summary, last_key, offset = Summary(**state["summary"]), state["last_key"], state["report_offset"]
        if state["finished"]:
            print("\n".join(summary.lines() + [f"(finished earlier; journal {args.journal})"]), file=sys.stderr)
            return 0 if not summary.remaining else 1

    deps = None
    if args.repair:
        from dss.events.runtime import Deps
        deps = Deps.from_env()
        replicas = deps.replicas
    else:
        replicas = Replicas(Settings.from_env())
    checker = ReplicaChecker(replicas, page_size=args.page_size, workers=args.workers, min_age=args.min_age,
                             repair=args.repair, repair_metadata_from=args.repair_metadata_from, deps=deps)
    report = open_report(args.report, offset)

    def checkpoint(finished: bool = False) -> None:
        report.flush()
        journal.save(plan, last_key, summary, offset, finished)

    walked = since_checkpoint = 0
    try:
        with tqdm(unit="key", desc="keys compared", disable=args.no_progress, file=sys.stderr) as bar:
            for result in checker.walk(plan, after=last_key, limit=args.max_keys):
                report.write("".join(json.dumps(f.as_json()) + "\n" for f in result.findings))
                # The checkpoint names only keys whose findings are all written.
                summary.add(result)
                last_key, offset = result.key, report.tell() if args.report else None
                bar.update()
                walked += 1
                since_checkpoint += 1
                if since_checkpoint >= args.checkpoint_every:
                    checkpoint()
                    since_checkpoint = 0
        # A walk limited to --max-keys that got fewer keys reached the end.
        finished = args.max_keys is None or walked < args.max_keys
        checkpoint(finished)
    except KeyboardInterrupt:
        checkpoint()
        print(f"\nInterrupted after {last_key!r}; run the same command with --resume to continue "
              f"(journal {args.journal}).", file=sys.stderr)
        return 130
    finally:
        if report is not sys.stdout:
            report.close()
    print("\n".join(summary.lines()), file=sys.stderr)
    if not finished:
        print(f"stopped after {args.max_keys} keys, at {last_key!r}: run again with --resume to continue "
              f"(journal {args.journal})", file=sys.stderr)
        return INCOMPLETE
    return 0 if not summary.remaining else 1


if __name__ == "__main__":
    sys.exit(main())
