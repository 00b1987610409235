#!/usr/bin/env bash
# Draws the comparison's PNG plots with gnuplot from a results directory's plots/data/*.tsv.
# Usage: scripts/plots.sh DIR   (DIR from scripts/compare.sh; runs summarize.py if the data
# files are missing). Writes DIR/plots/{throughput,p99,rss_per_conn,vsz_per_conn,
# ctx_per_request,cpu_bound}.png. Each plot is its own gnuplot run, so one without data does
# not stop the others; the exit status is 1 if any failed.
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

# The three models: file suffix, legend title, line style.
common="$term
set datafile separator '\t'
set datafile missing 'NaN'
set key tmargin center horizontal maxrows 2
set grid xtics ytics mxtics mytics lc rgb '#dddddd'
set offsets 0, 0, graph 0.08, 0
set linetype 1 lc rgb '#d95f02' lw 2 pt 7 ps 1.2
set linetype 2 lc rgb '#7570b3' lw 2 pt 5 ps 1.2
set linetype 3 lc rgb '#1b9e77' lw 2 pt 9 ps 1.4
set logscale x 10
set format x '%.0s%c'
T1 = 'threaded --pool 50'
T2 = 'threaded, 1 thread/conn (8 MiB stacks)'
T3 = 'async (1 thread, libevent)'
D = '$data'
"

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
set title 'Echo throughput vs concurrent connections (closed loop, 64-byte messages)$quick'
set xlabel 'concurrent connections (log scale)'
set ylabel 'requests per second (req/s)'
set yrange [0:*]
set format y '%.0s%c'
plot D.'/echo-threaded-pool50.tsv' using 1:2 with linespoints lt 1 title T1, \
     D.'/echo-threaded-tpc.tsv' using 1:2 with linespoints lt 2 title T2, \
     D.'/echo-async.tsv' using 1:2 with linespoints lt 3 title T3, \
     for [f in 'threaded-pool50 threaded-tpc async'] D.'/echo-'.f.'.tsv' using 1:(\$5 == 0 ? \$2 : NaN) \
         with points pt 6 ps 2.6 lw 2 lc rgb '#e41a1c' notitle, \\
     keyentry with points pt 6 ps 2.6 lw 2 lc rgb '#e41a1c' title 'step failed: timeouts, errors or p99 over the bound'"

plot p99 "
set title 'p99 latency vs concurrent connections (closed loop)$quick'
set xlabel 'concurrent connections (log scale)'
set ylabel 'p99 latency (ms, log scale)'
set logscale y 10
set arrow from graph 0, first $bound to graph 1, first $bound nohead dt 2 lc rgb '#888888' lw 1.5
set label 'p99 bound $bound ms' at graph 0.02, first $bound offset 0,0.7 tc rgb '#666666'
plot D.'/echo-threaded-pool50.tsv' using 1:3 with linespoints lt 1 title T1, \
     D.'/echo-threaded-tpc.tsv' using 1:3 with linespoints lt 2 title T2, \
     D.'/echo-async.tsv' using 1:3 with linespoints lt 3 title T3, \
     for [f in 'threaded-pool50 threaded-tpc async'] D.'/echo-'.f.'.tsv' using 1:(\$5 == 0 ? \$3 : NaN) \
         with points pt 6 ps 2.6 lw 2 lc rgb '#e41a1c' notitle, \\
     keyentry with points pt 6 ps 2.6 lw 2 lc rgb '#e41a1c' title 'step failed: timeouts, errors or p99 over the bound'"

plot rss_per_conn "
set title 'Resident memory (RSS) per held connection (hold scenario)$quick'
set xlabel 'connections held (log scale)'
set ylabel 'RSS per connection (KiB, log scale)'
set label 'a step with no growth (0) cannot be drawn on a log scale' at graph 0.98, graph 0.04 right font ',9' tc rgb '#888888'
set logscale y 10
plot D.'/hold-threaded-pool50.tsv' using 1:(\$2 > 0 ? \$2 : NaN) with linespoints lt 1 title T1, \
     D.'/hold-threaded-tpc.tsv' using 1:(\$2 > 0 ? \$2 : NaN) with linespoints lt 2 title T2, \
     D.'/hold-async.tsv' using 1:(\$2 > 0 ? \$2 : NaN) with linespoints lt 3 title T3"

plot vsz_per_conn "
set title 'Virtual memory (VSZ) per held connection (hold scenario)$quick'
set xlabel 'connections held (log scale)'
set ylabel 'VSZ per connection (KiB, log scale)'
set label 'a step with no growth (0) cannot be drawn on a log scale' at graph 0.98, graph 0.04 right font ',9' tc rgb '#888888'
set logscale y 10
set arrow from graph 0, first 8192 to graph 1, first 8192 nohead dt 2 lc rgb '#888888' lw 1.5
set label '8 MiB (default thread stack)' at graph 0.98, first 8192 right offset 0,0.7 tc rgb '#666666'
plot D.'/hold-threaded-pool50.tsv' using 1:(\$3 > 0 ? \$3 : NaN) with linespoints lt 1 title T1, \
     D.'/hold-threaded-tpc.tsv' using 1:(\$3 > 0 ? \$3 : NaN) with linespoints lt 2 title T2, \
     D.'/hold-async.tsv' using 1:(\$3 > 0 ? \$3 : NaN) with linespoints lt 3 title T3"

plot ctx_per_request "
set multiplot layout 1,2
set title 'Context switches per request, closed-loop ramp$quick'
set xlabel 'concurrent connections (log scale)'
set ylabel 'context switches per request (log scale)'
set logscale y 10
plot D.'/echo-threaded-pool50.tsv' using 1:(\$4 > 0 ? \$4 : NaN) with linespoints lt 1 title T1, \
     D.'/echo-threaded-tpc.tsv' using 1:(\$4 > 0 ? \$4 : NaN) with linespoints lt 2 title T2, \
     D.'/echo-async.tsv' using 1:(\$4 > 0 ? \$4 : NaN) with linespoints lt 3 title T3
unset logscale
set title 'At a fixed load: $fixed_conns conns, $fixed_rate req/s offered'
set xlabel ''
set ylabel 'context switches per request'
set yrange [0:*]
set style fill solid 0.8 border -1
set boxwidth 0.6
set offsets 0, 0, graph 0.2, 0
set xrange [-0.6:2.6]
unset key
plot D.'/fixed.tsv' using 0:2:(\$0 + 1):xtic(stringcolumn(1)) with boxes lc variable, \
     '' using 0:2:(sprintf(\"%.2f/req\\n%.0f/s\", \$2, \$3)) with labels offset 0,1.6
unset multiplot"

plot cpu_bound "
set title 'CPU-bound echo: --work-us $work_us per message, server on both cores$quick'
set ylabel 'requests per second (req/s)'
set xlabel 'server model'
unset logscale
set yrange [0:*]
set xrange [-0.6:2.6]
set style fill solid 0.8 border -1
set boxwidth 0.6
set offsets 0, 0, graph 0.2, 0
unset key
one_core = 1e6 / $work_us
set arrow from graph 0, first one_core to graph 1, first one_core nohead dt 2 lc rgb '#888888' lw 1.5
set label sprintf('one core fully busy: 1e6 / %d µs = %.0f req/s', $work_us, one_core) at graph 0.98, first one_core right offset 0,0.7 tc rgb '#666666'
plot D.'/cpu.tsv' using 0:2:(\$0 + 1):xtic(stringcolumn(1)) with boxes lc variable, \
     '' using 0:2:(sprintf(\"%.0f req/s\\np99 %.1f ms\\n%.2f cores\", \$2, \$3, \$4)) with labels offset 0,2.8"

exit $failed
