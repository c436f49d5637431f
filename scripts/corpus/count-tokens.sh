#!/usr/bin/env bash
# Counts the Mistral tokens of a built corpus exactly as train-reference will see them:
#   count-tokens.sh CORPUS_DIR [MOE_COMPRESS] > tokens.tsv
#
# For each CORPUS_DIR/<split>/<domain>.txt it runs `moe-compress train-reference` on that one file with a tiny model
# for one step (seconds) and reads the line the trainer prints after tokenizing it ("<domain>: N chunks, M tokens",
# 2,000-character chunks, one BOS each, Mistral v1 tokenizer). Output: split, domain, bytes, chunks, tokens.
# MOE_COMPRESS defaults to the Release build of src/Cli.
set -euo pipefail

die() { echo "count-tokens.sh: $*" >&2; exit 1; }

[[ $# -ge 1 && $# -le 2 ]] || die "usage: count-tokens.sh CORPUS_DIR [MOE_COMPRESS]"
corpus=$1
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cli=${2:-$repo/src/Cli/bin/Release/net10.0/moe-compress}
tokenizer=$repo/tests/data/tokenizers/mistral-v1/tokenizer.model
[[ -x $cli ]] || die "$cli not found (dotnet build src/Cli -c Release)"
[[ -d $corpus ]] || die "$corpus is not a folder"

export LC_ALL=C.UTF-8
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

printf 'split\tdomain\tbytes\tchunks\ttokens\n'
for split in train heldout calibration; do
    [[ -d $corpus/$split ]] || continue
    for file in "$corpus/$split"/*.txt; do
        domain=$(basename "$file" .txt)
        rm -rf "$work/data" "$work/model" "$work/model.training"
        mkdir -p "$work/data"
        ln -s "$(cd "$(dirname "$file")" && pwd)/$(basename "$file")" "$work/data/$domain.txt"
        "$cli" train-reference --train-data "$work/data" --tokenizer "$tokenizer" --output "$work/model" \
            --layers 1 --hidden 32 --intermediate 32 --experts 2 --top-k 1 --heads 2 --kv-heads 1 \
            --seq-len 16 --batch 1 --steps 1 --warmup 0 --checkpoint-minutes 0 > /dev/null 2> "$work/log" \
            || die "train-reference failed on $file: $(tail -n 1 "$work/log")"
        line=$(tr '\r' '\n' < "$work/log" | grep -m1 -E "$domain: [0-9,]+ chunks, [0-9,]+ tokens") \
            || die "no token count in the train-reference output for $file"
        chunks=$(sed -E 's/.*: ([0-9,]+) chunks.*/\1/' <<< "$line" | tr -d ,)
        tokens=$(sed -E 's/.* ([0-9,]+) tokens.*/\1/' <<< "$line" | tr -d ,)
        printf '%s\t%s\t%s\t%s\t%s\n' "$split" "$domain" "$(stat -c %s "$file")" "$chunks" "$tokens"
    done
done
