#!/bin/sh
# step.sh LABEL COMMAND...: run COMMAND (a slow first-time install) saying what it does, that
# it is still working every 15 s, and how long it took. Exits with COMMAND's status.
label=$1
shift
echo "==> $label"
start=$(date +%s)
(
	n=0
	while sleep 1; do
		n=$((n + 1))
		[ $((n % 15)) -eq 0 ] && echo "    ... still working ($n s)"
	done
) &
ticker=$!
"$@"
status=$?
kill "$ticker" 2>/dev/null
wait "$ticker" 2>/dev/null
took=$(($(date +%s) - start))
if [ "$status" -eq 0 ]; then
	echo "    done in $took s"
else
	echo "    FAILED after $took s (exit status $status)"
fi
exit "$status"
