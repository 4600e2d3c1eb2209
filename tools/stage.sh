#!/usr/bin/env bash
# tools/stage.sh NAME COMMAND...: run COMMAND, then print "stage NAME: <seconds> s" (and append
# that line to _build/stage-times.txt); exits with COMMAND's status.
name=$1
shift
start=$(date +%s)
"$@"
status=$?
line="stage $name: $(( $(date +%s) - start )) s"
[ "$status" -eq 0 ] || line="$line (exit status $status)"
mkdir -p _build
echo "$line" | tee -a _build/stage-times.txt
exit "$status"
