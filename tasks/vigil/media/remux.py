"""Build long recordings from short ones without re-encoding (for the demo, tests and benchmark)."""

from __future__ import annotations

from pathlib import Path


def concat_copies(source: str | Path, target: str | Path, copies: int) -> Path:
    """Write ``copies`` back-to-back copies of ``source``'s video stream to ``target`` (MP4).

    Packets are copied as they are (no decoding), their timestamps shifted by the length of the
    copies before them, so keyframes keep their rhythm and every frame stays bit-exact.
    """
    import av

    if copies < 1:
        raise ValueError(f"copies must be at least 1, got {copies}")
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    with av.open(str(source)) as first:
        template = first.streams.video[0]
        with av.open(str(tmp), "w", format="mp4") as output:
            out_stream = output.add_stream_from_template(template)
            offset = 0
            for _ in range(copies):
                with av.open(str(source)) as container:
                    stream = container.streams.video[0]
                    end = offset
                    for packet in container.demux(stream):
                        if packet.dts is None:
                            continue
                        packet.pts += offset
                        packet.dts += offset
                        end = max(end, packet.pts + (packet.duration or 0))
                        packet.stream = out_stream
                        output.mux(packet)
                    offset = end
    tmp.replace(target)
    return target
