#!/usr/bin/env bash
# Runs every fuzz target of tests/fuzz/ (docs/reliability.md): each replays its whole corpus
# (tests/fuzz/corpus/NAME/, seeds and regressions) once, then fuzzes for SECONDS seconds under
# ASan/UBSan. Two targets run at a time (one per core). Exits non-zero if any target crashes;
# the input that caused it is saved in BUILD/fuzz/artifacts/ and its log is printed.
#
#   tests/fuzz/run_fuzzers.sh [BUILD [SECONDS]]     defaults: build-sanitize 30
#
# New inputs the fuzzers discover go to BUILD/fuzz/work/NAME/, never into the checked-in corpus.
# A crash becomes a regression case: copy its artifact to tests/fuzz/corpus/NAME/regression-WHAT
# and add a doctest to tests/test_reliability.cpp.
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build-sanitize}
seconds=${2:-30}
bin="$build/fuzz"
if ! ls "$bin"/fuzz_* > /dev/null 2>&1; then
  echo "run_fuzzers.sh: no fuzz targets in $bin; build them with:" >&2
  echo "  cmake --preset sanitize && cmake --build --preset sanitize" >&2
  exit 2
fi

# The largest input each target is given: a few times its largest seed, small enough that an
# execution takes well under a millisecond.
max_len() {
  case $1 in
    tokens) echo 256 ;;
    decoders|index|npy) echo 2048 ;;
    golden_manifest|tokenizer) echo 8192 ;;
    *) echo 4096 ;;
  esac
}

run_one() {
  local name=$1
  mkdir -p "$bin/work/$name"
  # abort_on_error / halt_on_error: the first sanitizer report ends the run as a crash.
  ASAN_OPTIONS=abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "$bin/fuzz_$name" -max_total_time="$seconds" -max_len="$(max_len "$name")" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$bin/artifacts/$name-" \
    "$bin/work/$name" "tests/fuzz/corpus/$name" > "$bin/logs/$name.log" 2>&1
}

rm -rf "$bin/logs" && mkdir -p "$bin/artifacts" "$bin/logs"
targets=()
for f in "$bin"/fuzz_*; do targets+=("${f##*/fuzz_}"); done
declare -A pid_of=()
running=0
for name in "${targets[@]}"; do
  if [ "$running" -ge 2 ]; then wait -n; running=$((running - 1)); fi
  run_one "$name" & pid_of[$name]=$!
  running=$((running + 1))
done

failed=0
printf '%-16s %12s %10s %12s  %s\n' target executions "exec/s" "corpus" result
for name in "${targets[@]}"; do
  if wait "${pid_of[$name]}"; then result=ok; else result=CRASH; failed=1; fi
  log="$bin/logs/$name.log"
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  files=$(find "$bin/work/$name" "tests/fuzz/corpus/$name" -type f | wc -l)
  printf '%-16s %12s %10s %12s  %s\n' "$name" "${runs:-?}" "${speed:-?}" "$files files" "$result"
  if [ "$result" = CRASH ]; then
    echo "---- $log (last 60 lines)"; tail -60 "$log"; echo "----"
  fi
done
exit $failed
