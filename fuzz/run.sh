#!/bin/bash
# fuzz/run.sh SECONDS TARGET...
#
# Runs each libFuzzer target (build/fuzz/<target>) for SECONDS at the
# lowest priority, one at a time, on a corpus in build/fuzz/corpus/<target>
# seeded from t/fuzz/<target>/.  A crash, leak or timeout is copied into
# t/fuzz/<target>/ as a regression input (commit it with the fix) and the
# run fails.  Prints a table: target, seconds, executions, exec/s, corpus
# size, new regression inputs; appends it to build/fuzz/results.txt.

set -u

secs=$1
shift

top=$(cd "$(dirname "$0")/.." && pwd)
out=$top/build/fuzz
failed=0
table=""

for t in "$@"; do
    corpus=$out/corpus/$t
    art=$out/artifacts/$t
    mkdir -p "$corpus" "$art" "$top/t/fuzz/$t"
    log=$out/$t.log

    # -rss_limit_mb: the targets allocate no more than their input;
    # -timeout: one input taking a second is a bug (a loop)
    nice -n 19 "$out/$t" -max_total_time="$secs" -print_final_stats=1 \
        -timeout=2 -rss_limit_mb=1024 -max_len=70000 \
        -artifact_prefix="$art/" "$corpus" "$top/t/fuzz/$t" \
        > "$log" 2>&1
    rc=$?

    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    ncorpus=$(ls "$corpus" | wc -l)
    new=0

    for f in "$art"/*; do
        [ -f "$f" ] || continue
        cp "$f" "$top/t/fuzz/$t/$(basename "$f")"
        new=$((new + 1))
    done

    if [ $rc -ne 0 ] || [ $new -ne 0 ]; then
        failed=1
        echo "fuzz $t: FAILED (exit $rc), see $log" >&2
        grep -m5 -E 'ERROR|SUMMARY|runtime error|deadly' "$log" >&2
    fi

    table+=$(printf '%-10s %8s %14s %10s %8s %6s' "$t" "$secs" \
             "${execs:-?}" "${rate:-?}" "$ncorpus" "$new")$'\n'
done

hdr=$(printf '%-10s %8s %14s %10s %8s %6s' target seconds executions \
      'exec/s' corpus crashes)
printf '%s\n%s' "$hdr" "$table"
{ date -u '+%F %T UTC'; printf '%s\n%s' "$hdr" "$table"; } \
    >> "$out/results.txt"

exit $failed
