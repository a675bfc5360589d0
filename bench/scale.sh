#!/usr/bin/env bash
# The whole gstore chain on one generated graph, stage by stage, each measured by
# bench/scale_measure.py (wall time, peak RSS, peak anonymous memory, bytes written, du delta),
# then one table: WORK/scale.json and WORK/scale.md (bench/scale_table.py). docs/scale.md has the
# 10^9-edge run and how to read every column.
#
#   bench/scale.sh --work /work/data/scale --lock /tmp/gstore-heavy.lock          # the 10^9 run
#   bench/scale.sh --work /tmp/s --nodes 3000 --parts 8 --clusters-per-batch 2 --batches 3 --degree 8
#
# Stages (--stages, comma-separated, in this order): generate ingest partition reorder loader sage
# cluster-gcn propagate history (--history-variant gas|scalable-gcn, --history-dtype float16|float32).
# --lock FILE holds `flock FILE` around every stage (one heavy job at
# a time on a shared machine). --drop-raw deletes the generated inputs once ingest has succeeded.
# The chain's graph is an SBM (labels = communities, a train/val/test split, float16 features),
# stored undirected; every stage runs with --memory-budget BUDGET.
set -euo pipefail

NODES=33554432
COMMUNITIES=64
DEGREE=64            # average degree: NODES * DEGREE / 2 edge lines, stored as NODES * DEGREE entries
FEATURES=64
PARTS=1024
BATCHES=200          # training batches per method (--max-batches; 0 = one whole epoch)
CPB=20               # --clusters-per-batch of cluster-gcn and history (gas)
BUDGET=4GiB
HISTORY_VARIANT=gas  # --method history --variant (scalable-gcn keeps a gradient store per layer too)
HISTORY_DTYPE=float16
WORK=""
LOCK=""
STAGES="generate,ingest,partition,reorder,loader,sage,cluster-gcn,propagate,history"
DROP_RAW=0
PYTHON="${PYTHON:-python}"

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --nodes) NODES="$2"; shift 2 ;;
        --communities) COMMUNITIES="$2"; shift 2 ;;
        --degree) DEGREE="$2"; shift 2 ;;
        --features) FEATURES="$2"; shift 2 ;;
        --parts) PARTS="$2"; shift 2 ;;
        --batches) BATCHES="$2"; shift 2 ;;
        --clusters-per-batch) CPB="$2"; shift 2 ;;
        --budget) BUDGET="$2"; shift 2 ;;
        --history-variant) HISTORY_VARIANT="$2"; shift 2 ;;
        --history-dtype) HISTORY_DTYPE="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        --lock) LOCK="$2"; shift 2 ;;
        --stages) STAGES="$2"; shift 2 ;;
        --drop-raw) DROP_RAW=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "scale.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ -n "$WORK" ] || { echo "scale.sh: --work DIR is required (see --help)" >&2; exit 2; }

HERE="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$WORK/logs" "$WORK/runs"
RAW="$WORK/raw"
STORE="$WORK/g.gstore"
OUT="$WORK/stages.jsonl"
GSTORE=("$PYTHON" -m gstore)

want() { case ",$STAGES," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

stage() {   # stage NAME CMD...: one measured stage (under --lock); its stdout -> logs/NAME.json
    local name="$1"; shift
    local lock=()
    [ -n "$LOCK" ] && lock=(flock "$LOCK")
    echo "== $name: $*" >&2
    "${lock[@]}" "$PYTHON" "$HERE/scale_measure.py" --stage "$name" --out "$OUT" --watch "$WORK" \
        --stdout "$WORK/logs/$name.json" --pty-log "$WORK/logs/$name.log" -- "$@"
}

TRAIN=(--epochs 1 --max-batches "$BATCHES" --memory-budget "$BUDGET" --inference-dtype float16
       --num-workers 2 --device cpu --json -q)

if want generate; then
    stage generate "${GSTORE[@]}" generate sbm -n "$NODES" --communities "$COMMUNITIES" -d "$DEGREE" \
        -f "$FEATURES" --format npy --edge-dtype auto --feature-dtype float16 --seed 0 -o "$RAW" \
        --force --json -q
fi
if want ingest; then
    stage ingest "${GSTORE[@]}" ingest "$RAW/edges.npy" --undirected --nodes "$RAW/nodes.csv" \
        --features "$RAW/features.npy" --feature-dtype float16 --memory-budget "$BUDGET" -o "$STORE" \
        --force --json -q
    if [ "$DROP_RAW" = 1 ]; then rm -rf "$RAW"; fi
fi
if want partition; then
    stage partition "${GSTORE[@]}" partition "$STORE" -k "$PARTS" --method multilevel \
        --memory-budget "$BUDGET" --force --json -q
fi
if want reorder; then
    stage reorder "${GSTORE[@]}" partition "$STORE" -k "$PARTS" --reorder --memory-budget "$BUDGET" --json -q
fi
if want loader; then
    stage loader "$PYTHON" "$HERE/scale_loader.py" "$STORE" --clusters-per-batch "$CPB"
fi
if want sage; then
    stage sage "${GSTORE[@]}" train "$STORE" --method sage -o "$WORK/runs/sage" --force "${TRAIN[@]}"
fi
if want cluster-gcn; then
    stage cluster-gcn "${GSTORE[@]}" train "$STORE" --method cluster-gcn -k "$PARTS" \
        --clusters-per-batch "$CPB" -o "$WORK/runs/cgcn" --force "${TRAIN[@]}"
fi
if want propagate; then
    stage propagate "${GSTORE[@]}" propagate "$STORE" --hops 2 --dtype float16 --memory-budget "$BUDGET" \
        --force --json -q
fi
if want history; then
    stage history "${GSTORE[@]}" train "$STORE" --method history --variant "$HISTORY_VARIANT" -k "$PARTS" \
        --clusters-per-batch "$CPB" --history-dtype "$HISTORY_DTYPE" -o "$WORK/runs/history" --force "${TRAIN[@]}"
fi
"$PYTHON" "$HERE/scale_table.py" "$OUT" --json "$WORK/scale.json" --md "$WORK/scale.md"
