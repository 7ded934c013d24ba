"""elasticsearch.yml edits: esremote.esyml against a ruamel.yaml round trip, over real files.

A (esyml): parse, apply the migration's settings (the remote cluster server's and the local
client's, as the plan writes them), render the edited text. B (ruamel.yaml, typ "rt"): load, set
the same settings as top-level keys, dump. Both read the same texts from memory, once per round,
every file of the shared test data that esremote can edit (the ones it refuses are left out of both
and named). Goal: esyml at least as fast as the round trip (A/B <= 1), although it re-reads the
file after each edit to check that the result says exactly what was intended.

    .venv/bin/python benchmarks/yml_edit.py [--rounds N]
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import _timing
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from esremote.errors import EsRemoteError
from esremote.esyml import EsYml
from esremote.node_settings import local_client_settings, remote_server_settings

# Beside the clone, as the tests find it (tests/conftest.py).
TESTDATA = Path(__file__).resolve().parents[1].parent / "shared" / "testdata" / "elasticsearch-yml"
SETTINGS = {**remote_server_settings("10.0.0.7", 9443), **local_client_settings()}


def esyml_edit(texts: dict[str, str]) -> None:
    for name, text in texts.items():
        yml = EsYml(text, name)
        yml.update(SETTINGS)
        yml.text()


def ruamel_round_trip(texts: dict[str, str]) -> None:
    yaml = YAML()  # round trip: comments and order kept
    for text in texts.values():
        data = yaml.load(text)
        if data is None:  # a file of comments only
            data = CommentedMap()
        for key, value in SETTINGS.items():
            data[key] = value
        yaml.dump(data, io.StringIO())


def editable_files() -> dict[str, str]:
    if not TESTDATA.is_dir():
        sys.exit(f"the test data is missing: expected {TESTDATA} (the shared directory beside the clone)")
    texts, refused = {}, []
    for path in sorted(TESTDATA.glob("*.yml")):
        text = path.read_text(encoding="utf-8")
        try:
            esyml_edit({path.name: text})
        except EsRemoteError:
            refused.append(path.name)
            continue
        texts[path.name] = text
    print(f"{len(texts)} files of {TESTDATA.name}/; left out (esremote refuses them): {', '.join(refused) or 'none'}")
    return texts


def main() -> None:
    args = _timing.arguments(__doc__, rounds=7).parse_args()
    texts = editable_files()
    a = _timing.Variant(f"esyml parse+edit+render ({len(texts)} files)", lambda: esyml_edit(texts))
    b = _timing.Variant(f"ruamel.yaml load+set+dump ({len(texts)} files)", lambda: ruamel_round_trip(texts))
    _timing.alternate(a, b, rounds=args.rounds, warmup=args.warmup)
    ratio = _timing.report(a, b, goal="esyml at least as fast as a ruamel.yaml round trip (A/B <= 1)",
                           met=a.median <= b.median)
    print(f"per file: esyml {_timing.seconds(a.median / len(texts))}, "
          f"ruamel.yaml {_timing.seconds(b.median / len(texts))} (A/B = {ratio:.2f})")


if __name__ == "__main__":
    _timing.run(main)
