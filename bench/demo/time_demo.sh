#!/bin/bash
# Seconds from `make demo` to a serving interface (http://127.0.0.1:7860 answers), in CHECKOUT.
# Usage: bench/demo/time_demo.sh CHECKOUT LOGFILE
# For the clean-clone figure: git clone . /tmp/clone && bench/demo/time_demo.sh /tmp/clone log
set -u
cd "$1" || exit 1
start=$(date +%s.%N)
setsid make demo >"$2" 2>&1 &
pid=$!
until curl -sf -o /dev/null http://127.0.0.1:7860/; do
  sleep 1
  kill -0 "$pid" 2>/dev/null || { echo "demo exited before serving; see $2"; exit 1; }
done
echo "serving after $(echo "$(date +%s.%N) - $start" | bc) s"
kill -- "-$pid" 2>/dev/null
