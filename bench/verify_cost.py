"""What verify-on-read costs: ``query.connect`` (which reads every manifest-listed Parquet file)
with each file hashed against its manifest, and with the hash skipped, on an existing output.

    .venv/bin/python bench/verify_cost.py file:///path/to/out [--repeat 5]

Prints the bytes read, the best time of each variant of one ``presence`` query end to end
(connect + query: what an investigator waits for), and the time of the added work alone (SHA-256
over the same bytes), which on a shared machine is steadier than the difference of two timings.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import time
from unittest import mock


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from vigil.review import query
    from vigil.store.storage import storage_for
    from vigil.store.verified import listed_files
    from vigil.store.schema import ALL_TABLES

    storage = storage_for(args.out)
    listed = query.manifests(args.out)
    size = sum(storage.stat(uri).size for m in listed for t in ALL_TABLES for uri, _ in listed_files(m, args.out, t))

    def presence():
        query.presence(query.connect(args.out))

    plain = mock.patch.object(query, "read_verified", lambda storage, uri, sha256: storage.read_bytes(uri))
    presence()  # warm imports and the page cache before timing either variant
    times = {"verified": [], "unverified": []}
    for _ in range(args.repeat):  # interleaved, so drift in the machine's speed hits both alike
        for name in times:
            with plain if name == "unverified" else contextlib.nullcontext():
                began = time.perf_counter()
                presence()
                times[name].append(time.perf_counter() - began)
    verified, unverified = min(times["verified"]), min(times["unverified"])
    blobs = [storage.read_bytes(uri) for m in listed for t in ALL_TABLES for uri, _ in listed_files(m, args.out, t)]
    hashing = []
    for _ in range(args.repeat):
        began = time.perf_counter()
        for blob in blobs:
            hashlib.sha256(blob).hexdigest()
        hashing.append(time.perf_counter() - began)
    print(f"{len(listed)} recording(s), {size / 1e6:.1f} MB of Parquet read per query")
    print(f"connect + presence query, verified:   {verified * 1000:.0f} ms (best of {args.repeat})")
    print(f"connect + presence query, unverified: {unverified * 1000:.0f} ms")
    print(f"difference: {(verified - unverified) * 1000:+.0f} ms ({(verified / unverified - 1) * 100:+.1f} %)")
    print(f"the added work alone, SHA-256 of those bytes: {min(hashing) * 1000:.1f} ms "
          f"({size / min(hashing) / 1e9:.2f} GB/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
