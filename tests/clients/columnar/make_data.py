"""Columnar data for tests/serve_clients.rs, made with the real libraries.

    python make_data.py SOURCE.jsonl OUT

writes, from SOURCE's rows:
- OUT/planets.parquet (every row; pyarrow's defaults, Snappy, row groups
  of 7 so a reader crosses them) and OUT/planets_train.parquet (the first
  four rows);
- OUT/hf/datasets: a Hugging Face datasets cache holding the dataset
  `infer-eval/planets` (config `default`, splits test and train), as
  `datasets.load_dataset("infer-eval/planets")` leaves it after a download.
  The Hub is out of reach here, so datasets' own Parquet builder prepares
  the Arrow files from the Parquet ones (test in five shards), and they are
  moved to where a Hub download's are: <cache>/infer-eval___planets/default/
  0.0.0/<hash>/. lm-eval (datasets, offline) then loads them by name.
"""

import hashlib
import json
import pathlib
import shutil
import sys

import pyarrow as pa
import pyarrow.parquet as pq
from datasets.data_files import DataFilesDict
from datasets.packaged_modules.parquet.parquet import Parquet

src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
rows = [json.loads(l) for l in src.read_text().splitlines() if l.strip()]
test, train = out / "planets.parquet", out / "planets_train.parquet"
pq.write_table(pa.Table.from_pylist(rows), test, row_group_size=7)
pq.write_table(pa.Table.from_pylist(rows[:4]), train)

build = out / "build"
files = DataFilesDict.from_local_or_remote(
    {"test": [str(test)], "train": [str(train)]}, base_path=str(out)
)
b = Parquet(cache_dir=str(build), dataset_name="planets", data_files=files, config_name="default")
b.download_and_prepare(max_shard_size=800)
digest = hashlib.sha256(test.read_bytes() + train.read_bytes()).hexdigest()[:16]
dest = out / "hf" / "datasets" / "infer-eval___planets" / "default" / "0.0.0" / digest
dest.parent.mkdir(parents=True)
shutil.move(b.cache_dir, dest)
shutil.rmtree(build)
for p in dest.glob("*.lock"):
    p.unlink()
print(dest)
