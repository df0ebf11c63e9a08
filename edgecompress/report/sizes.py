"""What "size" means, in one place: the file's bytes (what a device holds) or its gzip bytes (the download).

A phone keeps a `.tflite` uncompressed so it can memory-map it (the demo app's `noCompress += "tflite"`), a
Raspberry Pi reads the file, and a microcontroller keeps it in flash: every device holds the file's bytes, so
that is what a build chooses by unless told otherwise (`--size gzip` for the download). The RAM a
microcontroller needs is TensorFlow Lite Micro's arena (`lite.micro`), a measure of its own.

Example:

>>> size("file").of({"size_bytes": 110_000, "gzip_bytes": 44_000})
110000
"""

from __future__ import annotations

import dataclasses

from edgecompress.errors import EdgeCompressError


@dataclasses.dataclass(frozen=True)
class Size:
    """One size measure.

    Args:
        name: Its `--size` name.
        key: The artifact field that holds it (report.json).
        words: How the report says it ("file bytes").
        holds: What it is the size of.
    """

    name: str
    key: str
    words: str
    holds: str

    def of(self, artifact) -> int:
        """The measure of an artifact: a report.json dict or a `results.Artifact`."""
        return int(artifact[self.key] if isinstance(artifact, dict) else getattr(artifact, self.key))


SIZES = {s.name: s for s in (
    Size("file", "size_bytes", "file bytes", "what flash, a memory-mapped file and an APK's uncompressed asset hold"),
    Size("gzip", "gzip_bytes", "gzip bytes", "the download"),
)}
DEFAULT_SIZE = "file"  # what every device holds


def size(name: str) -> Size:
    """The size measure `name`; an unknown name is refused with the known ones."""
    if name not in SIZES:
        raise EdgeCompressError(f"Received an invalid value for `size`, expected one of {sorted(SIZES)} (file: what "
                                f"a device holds; gzip: the download). Received: size={name!r}")
    return SIZES[name]


def tflm_cell(artifact) -> str:
    """A table's TFLM cell: the arena in KB; "refuses OP" where TensorFlow Lite Micro cannot run the file, with
    the planned arena of its runtime tensors (`lite.arena`) in brackets, "~N planned"; "-" where neither was
    measured."""
    get = artifact.get if isinstance(artifact, dict) else (lambda k: getattr(artifact, k, None))
    fit, planned = get("tflm"), get("planned_arena_bytes")
    if fit and fit.get("runs"):
        return f"{fit['arena_bytes'] / 1024:,.1f}"
    said = "refuses " + (fit.get("refused") or "it").split(" ", 1)[0] if fit else "-"
    return said + (f" (~{planned / 1024:,.1f} planned)" if planned is not None else "")


def both(artifact) -> str:
    """"110.2 KB file, 44.1 KB gzipped": both sizes, as a sentence says them."""
    return f"{artifact['size_bytes'] / 1024:.1f} KB file, {artifact['gzip_bytes'] / 1024:.1f} KB gzipped"


def of_report(report: dict) -> Size:
    """The measure a report's build chose by: its `size_measure`, or gzip for a report from before the key."""
    return size(report.get("size_measure") or "gzip")
