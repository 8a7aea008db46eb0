#!/usr/bin/env bash
# The data-file probes of issue 28, each a fresh process under /usr/bin/time -v: exit status,
# peak resident memory ("Maximum resident set size") and the last line of stderr, as a
# Markdown table. Huge files are sparse (holes take no disk). tests/test_hostile_files.py
# asserts the same outcomes and a 256 MB bound.
# Run from the repository root: bash benchmarks/hostile_files.sh
set -euo pipefail
export PYTHONPATH=${PYTHONPATH:-$PWD}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
python - <<'PY'
import gzip, os, struct
import numpy as np
import scratchgd as sg

def npy_header(shape, descr="<f8"):
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    text += " " * (-(10 + len(text) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode()

def idx(code, shape):
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)

def sparse(name, head, size):
    with open(name, "wb") as fh:
        fh.write(head)
        fh.truncate(size)

rng = np.random.default_rng(0)
np.savetxt("t.csv", np.column_stack([rng.normal(size=(20, 2)), np.arange(20) % 2]), delimiter=",")
sg.MLP([2, 2], seed=0).save("m.npz")
open("bom.csv", "wb").write(b"\xef\xbb\xbf0.5,1.5\n-1,2\n3,-0.25\n")
os.mkfifo("pipe.csv"); os.symlink("/dev/zero", "zero.csv"); os.mkdir("dir.csv")
sparse("line.csv", b"1,2,", 2**30)
open("bomb.csv.gz", "wb").write(gzip.compress(b"0,0,1\n" * (2**20 // 6), 9) * 2000)
rows = b"1.25,2.5,0\n" * 200_000
open("bytes.csv", "wb").write(rows + b"1,\xff,0\n" + rows[:1000])
open("inf.csv", "w").write("x,y,label\n1,2,0\n3,4,1\n5,1e999,0\n")
open("w.csv", "w").write("".join(f"{i},{i % 2}\n" for i in range(9)) + "9,4999999\n")
open("neg.npy", "wb").write(npy_header((20, -3)) + bytes(480))
np.save("y20.npy", np.zeros(20, int)); np.save("y10.npy", np.zeros(10, int))
open("forged.npy", "wb").write(npy_header((10**9, 10**6)) + bytes(80))
sparse("huge.npy", npy_header((2**33, 1)), len(npy_header((2**33, 1))) + 2**36)
np.save("cplx.npy", np.zeros((10, 2), complex))
X = np.ones((30, 3)); X[17, 2] = np.nan; np.save("nan.npy", X); np.save("y30.npy", np.arange(30) % 2)
open("big-ubyte.gz", "wb").write(gzip.compress(idx(8, (2**32 - 1, 4096, 4096)) + bytes(1000)))
open("lab10-ubyte", "wb").write(idx(8, (10,)) + bytes(10))
open("bomb-ubyte.gz", "wb").write(gzip.compress(idx(8, (10**6, 28, 28)))
                                  + gzip.compress(bytes(2**20), 9) * 800)
open("lab-ubyte", "wb").write(idx(8, (10**6,)) + bytes(10**6))
open("type-ubyte", "wb").write(idx(0x0A, (10, 2, 2)) + bytes(40))
open("afile", "w").write("a regular file")
np.save("Xmm.npy", rng.normal(size=(4000, 8))); np.save("ymm.npy", np.arange(4000) % 3)
open("shrink.py", "w").write(
    "import os, scratchgd as sg\nfrom scratchgd.hooks import Hook\n"
    "class Shrink(Hook):\n    def span_steps(self, history, at): return 5\n"
    "    def end_of_span(self, history, at): os.truncate('Xmm.npy', 50_000)\n"
    "sg.fit(sg.MLP([8, 3]), sg.Dataset.from_npy('Xmm.npy', 'ymm.npy'),\n"
    "       sg.MiniBatchSGD(0.1, batch_size=32), epochs=2, progress=False, hooks=[Shrink()])\n")
open("nommap.py", "w").write(
    "import sys, scratchgd as sg\nsg.Dataset.from_npy(sys.argv[1], 'y10.npy', mmap=False)\n")
PY
T="-m scratchgd train --epochs 1 --hidden 4 --no-progress"
probe() {
  local name=$1 status rss line
  shift
  status=0
  timeout 60 /usr/bin/time -v -o time.txt python "$@" > out.txt 2> err.txt || status=$?
  rss=$(awk '/Maximum resident/ {print int($6 / 1024)}' time.txt)
  line=$(grep -v '^\s*$' err.txt | tail -1 | sed "s#$dir/##g" | cut -c1-110 || true)
  [ -n "$line" ] || line="(stdout: $(wc -l < out.txt) lines)"
  printf '| %s | %s | %s MB | %s |\n' "$name" "$status" "$rss" "$line"
}
echo "| probe | exit | peak RSS | last line of stderr |"
echo "|---|---|---|---|"
# shellcheck disable=SC2086  # $T is several words
{
probe "train on a 20-row CSV (the command alone)" $T --data t.csv
probe "predict, 3-row CSV with a BOM" -m scratchgd predict --model m.npz --data bom.csv
probe "the same, --no-header" -m scratchgd predict --model m.npz --data bom.csv --no-header
probe "a FIFO as --data" $T --data pipe.csv
probe "/dev/zero as --data (a link zero.csv)" $T --data zero.csv
probe "a folder as --data" $T --data dir.csv
probe "a 1 GiB single line" $T --data line.csv
probe "a gzip table of 3.1 MB inflating to 2 GiB" $T --data bomb.csv.gz
probe "a byte 0xff at line 200,001" $T --data bytes.csv
probe "1e999 in a table" $T --data inf.csv
probe "a label of 4,999,999 (5e6 outputs)" $T --data w.csv --loss cross_entropy --test-data w.csv
probe ".npy of shape (20, -3)" $T --data neg.npy --labels y20.npy
probe ".npy forged (1e9, 1e6), mmap=False" nommap.py forged.npy
probe ".npy of 64 GiB (sparse), mmap=False" nommap.py huge.npy
probe ".npy of complex128" $T --data cplx.npy --labels y10.npy
probe ".npy with NaN at row 17" $T --data nan.npy --labels y30.npy
probe "IDX .gz declaring 2^32 x 4096 x 4096" $T --data big-ubyte.gz --labels lab10-ubyte
probe "IDX .gz of zero members (a bomb)" $T --data bomb-ubyte.gz --labels lab-ubyte
probe "IDX of type code 0x0a" $T --data type-ubyte --labels lab10-ubyte
probe "a memory map truncated during fit" shrink.py
probe "--save into a missing folder" $T --data t.csv --save missing/m.npz
probe "--checkpoint under a regular file" $T --data t.csv --checkpoint afile/c.npz
}
