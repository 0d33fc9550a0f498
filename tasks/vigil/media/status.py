"""What became of each sampling bin of a recording: the frame-accounting vocabulary.

Defined here, at the bottom of the media layer, because decoding decides it; the Parquet schema
re-exports it.
"""

STATUS_OK = "ok"  # the frame was decoded and analysed
STATUS_UNDECODABLE = "undecodable"  # the recording has frames in this bin, none could be decoded
STATUS_NO_FRAME = "no_frame"  # the recording has no frame in this bin (a gap in the recording)
STATUS_STATIC = "static"  # decoded, unchanged since an analysed frame: its detections are inherited
STATUSES = (STATUS_OK, STATUS_UNDECODABLE, STATUS_NO_FRAME, STATUS_STATIC)
