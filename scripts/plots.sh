#!/usr/bin/env bash
# Draws the comparison's PNG plots with gnuplot from a results directory's plots/data/*.tsv.
# Usage: scripts/plots.sh DIR   (DIR from scripts/compare.sh; runs summarize.py if the data
# files are missing). Writes DIR/plots/{throughput,p99,rss_per_conn,vsz_per_conn,
# ctx_per_request,cpu_bound}.png. Each plot is its own gnuplot run, so one without data does
# not stop the others; the exit status is 1 if any failed.
# shellcheck disable=SC2016 # single-quoted $N are gnuplot column references
set -uo pipefail

[[ $# -eq 1 && -d $1 ]] || { echo "usage: scripts/plots.sh RESULTS_DIR" >&2; exit 2; }
dir=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
data=$dir/plots/data
if [[ ! -f $data/meta.txt ]]; then
    python3 "$here/summarize.py" "$dir" || exit 1
fi
command -v gnuplot >/dev/null || { echo "plots: gnuplot not found" >&2; exit 1; }

# meta.txt: key=value lines written by summarize.py.
meta() { sed -n "s/^$1=//p" "$data/meta.txt"; }
bound=$(meta p99_bound_ms)
work_us=$(meta work_us)
fixed_rate=$(meta fixed_rate)
fixed_conns=$(meta fixed_connections)
quick=""
if grep -q '"quick": true' "$dir/plan.json" 2>/dev/null; then
    quick=" (quick run)"
fi

if gnuplot -e 'set terminal pngcairo' 2>/dev/null; then
    term='set terminal pngcairo size 960,600 enhanced font "sans,11"'
else
    term='set terminal png size 960,600'
fi

# The models: label and legend title per line of models.tsv (written by summarize.py), line
# styles 1.. in that order.
common="$term
set datafile separator '\t'
set datafile missing 'NaN'
set key tmargin center horizontal maxrows 3
set grid xtics ytics mxtics mytics lc rgb '#dddddd'
set offsets 0, 0, graph 0.08, 0
set linetype 1 lc rgb '#d95f02' lw 2 pt 7 ps 1.2
set linetype 2 lc rgb '#7570b3' lw 2 pt 5 ps 1.2
set linetype 3 lc rgb '#1b9e77' lw 2 pt 9 ps 1.4
set linetype 4 lc rgb '#e7298a' lw 2 pt 11 ps 1.2
set linetype 5 lc rgb '#66a61e' lw 2 pt 13 ps 1.2
set linetype 6 lc rgb '#a6761d' lw 2 pt 15 ps 1.2
set logscale x 10
set format x '%.0s%c'
D = '$data'
"
labels=() titles=()
while IFS=$'\t' read -r label title; do
    labels+=("$label") titles+=("$title")
done <"$data/models.tsv"
nmodels=${#labels[@]}
(( nmodels > 0 )) || { echo "plots: no models in $data/models.tsv" >&2; exit 1; }
rounds=$(meta rounds)
spread_note=""
[[ ${rounds:-1} -gt 1 ]] && spread_note=", bars: min-max over $rounds rounds"

# lines FILE_PREFIX USING STYLE: one plot clause per model, joined with commas. USING holds
# gnuplot's $N column references, so the callers quote it in single quotes (SC2016 is off for
# this file, at the top).
lines() {
    local prefix=$1 using=$2 style=$3 i out=""
    for ((i = 0; i < nmodels; i++)); do
        out+="${out:+, }D.'/$prefix-${labels[$i]}.tsv' using $using with $style lt $((i + 1)) title '${titles[$i]}'"
    done
    echo "$out"
}
failed_marks() {    # red circles on the steps that failed in some round (column 9 == 0)
    local y=$1
    echo "for [f in '${labels[*]}'] D.'/echo-'.f.'.tsv' using 1:(\$9 == 0 ? $y : NaN) \
         with points pt 6 ps 2.6 lw 2 lc rgb '#e41a1c' notitle, \\
     keyentry with points pt 6 ps 2.6 lw 2 lc rgb '#e41a1c' title 'step failed in a round: timeouts, errors or p99.9 over the bound'"
}
xr="set xrange [-0.6:$((nmodels - 1)).6]"

failed=0
plot() {
    local name=$1 body=$2
    if ! gnuplot <<<"$common
set output '$dir/plots/$name.png'
$body" 2>"$data/$name.gnuplot.log"; then
        echo "plots: $name.png failed: $(tr '\n' ' ' <"$data/$name.gnuplot.log")" >&2
        rm -f "$dir/plots/$name.png"
        failed=1
    fi
}

plot throughput "
set title 'Echo throughput vs concurrent connections (closed loop, 64-byte messages$spread_note)$quick'
set xlabel 'concurrent connections (log scale)'
set ylabel 'requests per second (req/s)'
set yrange [0:*]
set format y '%.0s%c'
plot $(lines echo 1:2:3:4 yerrorlines), \
     $(failed_marks '$2')"

plot p99 "
set title 'p99 latency vs concurrent connections (closed loop$spread_note)$quick'
set xlabel 'concurrent connections (log scale)'
set ylabel 'p99 latency (ms, log scale)'
set logscale y 10
set arrow from graph 0, first $bound to graph 1, first $bound nohead dt 2 lc rgb '#888888' lw 1.5
set label 'bound $bound ms (applies to p99.9)' at graph 0.02, first $bound offset 0,0.7 tc rgb '#666666'
plot $(lines echo 1:5:6:7 yerrorlines), \
     $(failed_marks '$5')"

plot rss_per_conn "
set title 'Resident memory (RSS) per held connection (hold scenario$spread_note)$quick'
set xlabel 'connections held (log scale)'
set ylabel 'RSS per connection (KiB, log scale)'
set label 'a step with no growth (0) cannot be drawn on a log scale' at graph 0.98, graph 0.04 right font ',9' tc rgb '#888888'
set logscale y 10
plot $(lines hold '1:($2 > 0 ? $2 : NaN):($3 > 0 ? $3 : $2):4' yerrorlines)"

plot vsz_per_conn "
set title 'Virtual memory (VSZ) per held connection (hold scenario$spread_note)$quick'
set xlabel 'connections held (log scale)'
set ylabel 'VSZ per connection (KiB, log scale)'
set label 'a step with no growth (0) cannot be drawn on a log scale' at graph 0.98, graph 0.04 right font ',9' tc rgb '#888888'
set logscale y 10
set arrow from graph 0, first 8192 to graph 1, first 8192 nohead dt 2 lc rgb '#888888' lw 1.5
set label '8 MiB (default thread stack)' at graph 0.98, first 8192 right offset 0,0.7 tc rgb '#666666'
plot $(lines hold '1:($5 > 0 ? $5 : NaN):($6 > 0 ? $6 : $5):7' yerrorlines)"

plot ctx_per_request "
set multiplot layout 1,2
set title 'Context switches per request, closed-loop ramp$quick'
set xlabel 'concurrent connections (log scale)'
set ylabel 'context switches per request (log scale)'
set logscale y 10
plot $(lines echo '1:($8 > 0 ? $8 : NaN)' linespoints)
unset logscale
set title 'At a fixed load: $fixed_conns conns, $fixed_rate req/s offered'
set xlabel ''
set ylabel 'context switches per request${spread_note:+ (bars: min-max)}'
set yrange [0:*]
set style fill solid 0.8 border -1
set boxwidth 0.6
set offsets 0, 0, graph 0.2, 0
$xr
unset key
plot D.'/fixed.tsv' using 0:2:(\$0 + 1):xtic(stringcolumn(1)) with boxes lc variable, \
     '' using 0:2:3:4 with yerrorbars lc rgb '#333333' pt 0, \
     '' using 0:4:(sprintf(\"%.2f/req\\n%.0f/s\", \$2, \$5)) with labels offset 0,1.6
unset multiplot"

plot cpu_bound "
set title 'CPU-bound echo: --work-us $work_us per message, server on both cores$spread_note$quick'
set ylabel 'requests per second (req/s)'
set xlabel 'server model'
unset logscale
set yrange [0:*]
$xr
set style fill solid 0.8 border -1
set boxwidth 0.6
set offsets 0, 0, graph 0.2, 0
unset key
one_core = 1e6 / $work_us
set arrow from graph 0, first one_core to graph 1, first one_core nohead dt 2 lc rgb '#888888' lw 1.5
set label sprintf('one core fully busy: 1e6 / %d µs = %.0f req/s', $work_us, one_core) at graph 0.98, first one_core right offset 0,0.7 tc rgb '#666666'
plot D.'/cpu.tsv' using 0:2:(\$0 + 1):xtic(stringcolumn(1)) with boxes lc variable, \
     '' using 0:2:3:4 with yerrorbars lc rgb '#333333' pt 0, \
     '' using 0:4:(sprintf(\"%.0f req/s\\np99 %.1f ms\\n%.2f cores\", \$2, \$5, \$6)) with labels offset 0,2.8"

exit $failed
