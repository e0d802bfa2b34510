"""`nemo-tui demo-data`: a synthetic patient cohort to try analysis mode on."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from nemo_tui.cli.output import note
from nemo_tui.core.analysis.demo_cohort import check_patients, write_cohort
from nemo_tui.core.text.text_file import TextNotSaved, would_replace
from nemo_tui.units import MB, bytes_to_mb, format_count, format_mb


def demo_data(args: argparse.Namespace) -> int:
    """`nemo-tui demo-data [--patients N] [--seed S] [-o FILE]`: the cohort as CSV.

    Without `-o` the CSV goes to stdout; with it, to the file (replacing one that is there), and
    one line on stderr says what was written.

    Raises:
        UsageError: `--patients` is out of range.
        TextNotSaved: the file cannot be written; the message says why.
    """
    check_patients(args.patients)
    if args.output is None:
        write_cohort(sys.stdout, args.patients, args.seed)
        return 0
    path = Path(args.output)
    written = _write_atomically(path, args.patients, args.seed)
    size = format_mb(bytes_to_mb(written)) if written >= MB else f"{format_count(written)} bytes"
    note(f"wrote {format_count(args.patients)} synthetic patients ({size}) to {path}")
    return 0


def _write_atomically(path: Path, patients: int, seed: int) -> int:
    """Write the cohort to a new file beside `path`, then rename it over `path`.

    A reader never sees half a cohort, and an interrupted or failed write leaves what was at
    `path` as it was.

    Returns:
        The bytes written.

    Raises:
        TextNotSaved: `path` is a folder, FIFO, device or socket, or the file cannot be written.
    """
    # Refuses what is not a regular file, before anything is written.
    would_replace(path)
    # Through a symlink, the file it points to is replaced and the link kept.
    target = Path(os.path.realpath(path))
    temporary = target.with_name(f".{target.name}.{os.urandom(4).hex()}.tmp")
    try:
        # 0o666 with O_CREAT: the user's umask decides the permissions, as for any new file.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with open(descriptor, "w", encoding="ascii", newline="") as stream:
                written = write_cohort(stream, patients, seed)
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
    except OSError as exc:
        raise TextNotSaved(
            f"cannot write {path}: {exc.strerror or exc}",
            fix="check that the folder exists and is writable, and that the disk has room",
        ) from exc
    return written
