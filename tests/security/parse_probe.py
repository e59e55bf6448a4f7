"""`egress-collector serve` with every filing parse marked in a file, for tests that must know a parse is in
flight (not guess it from timing): the real service and the real parse, `documents.parse_filing` wrapped to
append `start N` when it is entered and `end N` when it returns or raises (before the route sees the result).

    python -m tests.security.parse_probe MARKS CONFIG
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path
from typing import Any


def main(marks: Path, config: Path) -> None:
    from collector import cli_service, documents

    real, numbers = documents.parse_filing, itertools.count(1)

    def mark(line: str) -> None:
        fd = os.open(marks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)    # one write: whole lines
        try:
            os.write(fd, f"{line}\n".encode())
        finally:
            os.close(fd)

    def parse_filing(*args: Any, **kwargs: Any) -> Any:
        n = next(numbers)
        mark(f"start {n}")
        try:
            return real(*args, **kwargs)
        finally:
            mark(f"end {n}")

    documents.parse_filing = parse_filing     # the route looks it up on the module at each request
    cli_service.serve(config)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
