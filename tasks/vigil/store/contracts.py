"""The typed values the steps hand each other: plan -> detect_shard -> finalize.

    RecordingPlan   one recording as planned: its exact source version, timing, parameters, output
    ShardTask       one shard of a plan, with only its own keyframes (what ``detect_shard`` gets)
    ShardResult     what one shard published (what ``finalize`` gets)

Each is frozen and has ``to_dict``/``from_dict``: Airflow passes the dicts through XCom (small
descriptors, never frames or rows) and the CLI passes the values themselves. The manifest,
the last contract, lives in ``store/manifest.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from vigil.config import ProcessParams, parse_start
from vigil.media.probe import Keyframe, RecordingProbe
from vigil.media.sharding import ShardRange
from vigil.store import layout
from vigil.store.schema import DETECTIONS, FRAMES
from vigil.store.storage import ObjectInfo


@dataclass(frozen=True)
class SourceVersion:
    """The exact version of a recording that was hashed at planning, and its SHA-256."""

    uri: str
    size: int
    sha256: str
    etag: str | None = None
    last_modified: str | None = None
    version_id: str | None = None

    @classmethod
    def of(cls, info: ObjectInfo, sha256: str) -> "SourceVersion":
        return cls(info.uri, info.size, sha256, info.etag, info.last_modified, info.version_id)

    def to_dict(self) -> dict:
        return {"uri": self.uri, "size": self.size, "etag": self.etag, "last_modified": self.last_modified,
                "version_id": self.version_id, "sha256": self.sha256}  # fmt: skip

    @classmethod
    def from_dict(cls, values: dict) -> "SourceVersion":
        return cls(values["uri"], int(values["size"]), values["sha256"], values.get("etag"),
                   values.get("last_modified"), values.get("version_id"))  # fmt: skip


@dataclass(frozen=True)
class RecordingPlan:
    """One recording, planned: everything its shards and its finalize step share."""

    recording_id: str
    source: SourceVersion
    probe: RecordingProbe  # the stream's timing; keyframes travel with each shard instead
    shard_count: int
    params: ProcessParams
    out: str
    source_conn_id: str | None = None
    out_conn_id: str | None = None
    recording_start: str | None = None
    blur_faces: bool = False
    clips: bool = False  # cut a clip for every presence interval and posture event at finalize
    generation: str | None = None  # set when forced: new output keys beside those of earlier runs

    @property
    def start_time(self) -> datetime | None:
        return parse_start(self.recording_start) if self.recording_start else None

    @property
    def run_key(self) -> str:
        return layout.run_key(self.params.fingerprint(), self.recording_start, self.blur_faces, self.generation)

    def to_dict(self) -> dict:
        return {
            "recording_id": self.recording_id, "source": self.source.to_dict(), "probe": self.probe.to_dict(),
            "shard_count": self.shard_count, "params": self.params.to_dict(), "out": self.out,
            "source_conn_id": self.source_conn_id, "out_conn_id": self.out_conn_id,
            "recording_start": self.recording_start, "blur_faces": self.blur_faces, "clips": self.clips,
            "generation": self.generation,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, values: dict) -> "RecordingPlan":
        return cls(
            recording_id=values["recording_id"],
            source=SourceVersion.from_dict(values["source"]),
            probe=RecordingProbe.from_dict(values["probe"]),
            shard_count=int(values["shard_count"]),
            params=ProcessParams.from_dict(values["params"]),
            out=values["out"],
            source_conn_id=values.get("source_conn_id"),
            out_conn_id=values.get("out_conn_id"),
            recording_start=values.get("recording_start"),
            blur_faces=bool(values.get("blur_faces")),
            clips=bool(values.get("clips")),
            generation=values.get("generation"),
        )


@dataclass(frozen=True)
class ShardTask:
    """One shard to analyse: its plan, its half-open time range and the keyframes inside it."""

    plan: RecordingPlan
    shard: ShardRange
    keyframes: tuple[Keyframe, ...] = ()

    @property
    def recording_id(self) -> str:
        return self.plan.recording_id

    @property
    def label(self) -> str:
        return f"{self.plan.recording_id} #{self.shard.index} [{float(self.shard.start):.0f}s, {float(self.shard.end):.0f}s)"

    def to_dict(self) -> dict:
        return {"plan": self.plan.to_dict(), "shard": self.shard.to_dict(),
                "keyframes": [[k.pts, k.frame_index] for k in self.keyframes]}  # fmt: skip

    @classmethod
    def from_dict(cls, values: dict) -> "ShardTask":
        keyframes = tuple(Keyframe(int(pts), int(index)) for pts, index in values.get("keyframes", []))
        return cls(RecordingPlan.from_dict(values["plan"]), ShardRange.from_dict(values["shard"]), keyframes)


@dataclass(frozen=True)
class FileEntry:
    """A published file as a manifest records it."""

    uri: str
    sha256: str
    rows: int
    bytes: int

    def to_dict(self) -> dict:
        return {"uri": self.uri, "sha256": self.sha256, "rows": self.rows, "bytes": self.bytes}

    @classmethod
    def from_dict(cls, values: dict) -> "FileEntry":
        return cls(values["uri"], values["sha256"], int(values["rows"]), int(values["bytes"]))


@dataclass(frozen=True)
class ShardResult:
    """What one shard published: its files, what they cover, and what computed them."""

    plan: RecordingPlan
    shard: ShardRange
    files: dict[str, FileEntry]  # table name -> file
    coverage: tuple[tuple[float, float, str], ...]  # [start_s, end_s, status] ranges tiling the shard
    model: dict  # {"name", "sha256"} of the weights
    runtime: str
    source_bytes_read: int | None = None

    def rows(self, table: str) -> int:
        return self.files[table].rows

    @property
    def recording_id(self) -> str:
        return self.plan.recording_id

    @property
    def frames(self) -> int:
        """Sampled frames (rows of the frames table) the shard published."""
        return self.rows(FRAMES)

    @property
    def detections(self) -> int:
        return self.rows(DETECTIONS)

    def to_dict(self) -> dict:
        return {
            "plan": self.plan.to_dict(), "shard": self.shard.to_dict(),
            "files": {name: entry.to_dict() for name, entry in self.files.items()},
            "coverage": [list(c) for c in self.coverage], "model": self.model, "runtime": self.runtime,
            "source_bytes_read": self.source_bytes_read,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, values: dict) -> "ShardResult":
        return cls(
            plan=RecordingPlan.from_dict(values["plan"]),
            shard=ShardRange.from_dict(values["shard"]),
            files={name: FileEntry.from_dict(entry) for name, entry in values["files"].items()},
            coverage=tuple((float(lo), float(hi), status) for lo, hi, status in values["coverage"]),
            model=dict(values["model"]),
            runtime=values["runtime"],
            source_bytes_read=values.get("source_bytes_read"),
        )

