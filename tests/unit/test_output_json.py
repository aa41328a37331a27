"""JSON records: every one fits a CloudWatch event, long lines come in joinable fragments, nothing is lost."""

from __future__ import annotations

import io
import json
import random

import pytest

from runner.output import FRAGMENT_BYTES, MAX_EVENT_BYTES, JsonOutput, Stream, reassemble


def relay(feeds: list[tuple[Stream, bytes]], *, run_id: str = "run-1") -> list[bytes]:
    stdout = io.BytesIO()
    step = JsonOutput(stdout).for_step("pipe", "10_step", run_id, "10_step.sh")
    for stream, chunk in feeds:
        step.feed(stream, chunk)
    step.close()
    return stdout.getvalue().splitlines(keepends=True)


def records_of(lines: list[bytes]) -> list[dict[str, object]]:
    for line in lines:
        assert len(line) < MAX_EVENT_BYTES, "one record must fit one CloudWatch event, newline included"
    return [json.loads(line) for line in lines]


def test_a_long_line_of_control_characters_is_split_into_records_that_fit() -> None:
    # The worst case of escaping: every byte becomes \u00XX, six bytes of JSON.
    line = b"\x01" * (FRAGMENT_BYTES * 5 + 17)
    lines = relay([("stdout", line[:100_000]), ("stdout", line[100_000:] + b"\n")])
    records = records_of(lines)
    assert [(r["part"], r["last"]) for r in records] == [(n, n == 6) for n in range(1, 7)]
    assert all(len(str(r["line"])) <= FRAGMENT_BYTES for r in records)
    assert reassemble(records) == {"stdout": line + b"\n", "stderr": b""}


def test_a_fragment_never_ends_inside_a_utf8_sequence() -> None:
    line = ("ab" + "é✓日本語🙂" * 20_000).encode()
    records = records_of(
        relay([("stderr", line[i : i + 4093]) for i in range(0, len(line), 4093)] + [("stderr", b"\n")])
    )
    assert len(records) > 3
    assert all("line" in r for r in records), "every fragment decodes as UTF-8 text on its own"
    assert "".join(str(r["line"]) for r in records) == line.decode()


def test_a_short_line_is_one_record_without_parts() -> None:
    (record,) = records_of(relay([("stdout", b"x" * (FRAGMENT_BYTES - 1) + b"\n")]))
    assert "part" not in record and "last" not in record


def test_a_long_run_id_shrinks_the_fragments_so_records_still_fit() -> None:
    line = b"\x1f" * (FRAGMENT_BYTES * 3) + b"\n"
    records = records_of(relay([("stdout", line)], run_id="\x02" * 20_000))
    assert reassemble(records)["stdout"] == line


def test_reassemble_refuses_a_missing_fragment() -> None:
    records = records_of(relay([("stdout", b"y" * (FRAGMENT_BYTES * 3) + b"\n")]))
    with pytest.raises(ValueError, match="fragment 3 after part 1"):
        reassemble([records[0], records[2]])


def _random_stream(rng: random.Random) -> bytes:
    pieces = []
    for _ in range(rng.randrange(5, 40)):
        kind = rng.choice(["text", "bytes", "long", "cr", "utf8", "empty"])
        if kind == "text":
            pieces.append(rng.choice([b"plain log line", b'quote " and \\ backslash', b"tab\there"]))
        elif kind == "bytes":
            pieces.append(rng.randbytes(rng.randrange(1, 300)))  # invalid UTF-8, controls, stray \n and \r
        elif kind == "long":
            pieces.append(rng.randbytes(1) * rng.randrange(FRAGMENT_BYTES - 3, FRAGMENT_BYTES * 4))
        elif kind == "cr":
            pieces.append(b"progress 50%\r")
        elif kind == "utf8":
            pieces.append("Grüße ✓ 日本語 🙂".encode() * rng.randrange(1, 5000))
        pieces.append(b"\n")
    data = b"".join(pieces)
    return data if rng.random() < 0.5 else data + b"final line without newline \xc3"


@pytest.mark.parametrize("seed", range(12))
def test_random_output_round_trips_to_the_same_bytes(seed: int) -> None:
    rng = random.Random(seed)
    streams: dict[Stream, bytes] = {"stdout": _random_stream(rng), "stderr": _random_stream(rng)}
    feeds: list[tuple[Stream, bytes]] = []
    offsets: dict[Stream, int] = {"stdout": 0, "stderr": 0}
    while any(offsets[s] < len(streams[s]) for s in streams):
        stream = rng.choice([s for s in streams if offsets[s] < len(streams[s])])
        size = rng.choice([1, 2, 3, 7, 100, 4096, 65536, 300_000])
        start = offsets[stream]
        feeds.append((stream, streams[stream][start : start + size]))
        offsets[stream] = start + size
    assert reassemble(records_of(relay(feeds))) == streams


def test_names_that_are_not_utf8_still_give_records() -> None:
    # A --run-id from argv bytes that are not UTF-8 reaches Python as lone surrogates.
    (record,) = records_of(relay([("stdout", b"x\n")], run_id="run-\udcff"))
    assert (record["run_id"], record["line"]) == ("run-\udcff", "x")
