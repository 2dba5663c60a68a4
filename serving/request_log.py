"""One JSON record per request (id, parameters, timings, outcome), and optional storage of the outputs.

Configured by environment, as containers are: `I2V_REQUEST_LOG` names a JSON-lines file (rotated at 10 MB,
5 kept), `I2V_OUTPUT_DIR` a folder where each video is kept with its metadata under a generated name.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import time
import uuid
from pathlib import Path

from i2v.video import save_video_with_metadata

ROTATE_BYTES = 10 * 1024 * 1024
ROTATE_KEEP = 5


class RequestLog:
    def __init__(self, log_file: str | Path | None = None, output_dir: str | Path | None = None):
        log_file = log_file or os.environ.get("I2V_REQUEST_LOG")
        output_dir = output_dir or os.environ.get("I2V_OUTPUT_DIR")
        self.output_dir = Path(output_dir) if output_dir else None
        self._logger: logging.Logger | None = None
        if log_file:
            Path(log_file).parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(log_file, maxBytes=ROTATE_BYTES, backupCount=ROTATE_KEEP)
            handler.setFormatter(logging.Formatter("%(message)s"))
            self._logger = logging.getLogger(f"i2v.requests.{uuid.uuid4().hex}")
            self._logger.propagate = False
            self._logger.setLevel(logging.INFO)
            self._logger.addHandler(handler)

    def record(self, request_id: str, outcome: str, **fields) -> str:
        """Write the request's record (if a log file is set) and return it as one JSON line."""
        line = json.dumps(
            {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "request_id": request_id, "outcome": outcome, **fields},
            default=str,
        )
        if self._logger is not None:
            self._logger.info(line)
        return line

    def store(self, video: bytes, metadata: dict) -> Path | None:
        """Keep the video and its metadata under a name made here, never from request content."""
        if self.output_dir is None:
            return None
        stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:12]}"
        return save_video_with_metadata(self.output_dir / f"{stem}.mp4", video, metadata)
